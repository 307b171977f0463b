"""Nothing lost: the tasks setting both sides read, the Redis Streams task queue, the sweep
for what pub/sub dropped, and the archive of every game. Real workers (threads and
processes), real servers, real Redis; waits are bounded and event-driven."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import Tap, server_thread
from simlib.game import STATUS
from simlib.keys import LOBBY_CHANNEL, TASKS_GROUP, WORKER_LOGGER, Keyspace
from simlib.launch import start_players, start_worker
from simlib.logs import flush_logs
from simlib.player import Recorder
from simlib.worker import CLEAN_MESSAGE
from test_cli import ROOT, clean_env

KEYS = Keyspace()


def no_expiry(r) -> list[str]:
    return [k for k in r.scan_iter("games:*", count=1000) if r.ttl(k) == -1]


def finished_games(recorder) -> set[str]:
    return {row["game"] for row in recorder.games if row["outcome"] in ("COMPLETE", "TIMED OUT")}


def play(url: str, settings, players: int = 6, games: int = 3, **kw) -> Recorder:
    recorder = Recorder()
    bots = start_players(url, players, games, recorder=recorder, settings=settings, seed=5, **kw)
    assert bots.join(120) and bots.error is None and recorder.errors == []
    return recorder


def records_of(tap: Tap, message: str) -> list[dict]:
    return [m["data"] for m in tap.messages if isinstance(m["data"], dict) and m["data"].get("log_message") == message]


def through(tap: Tap, channel: str) -> None:
    """Read ``tap`` up to a marker published now on ``channel``: everything published on it
    before has been collected (one connection, in order)."""
    tap.client.publish(channel, "marker")
    tap.collect(lambda ms: any(m["data"] == "marker" and m["channel"] == channel for m in ms))


@pytest.fixture
def streams(settings):
    return settings.replace(task_transport="streams")


def test_worker_channel_names_where_tasks_go_for_both_sides(settings, r, pubsub_logging, redis_server):
    """With WORKER_CHANNEL set to another name, servers publish the clean-up tasks there and the worker hears them: every game is cleaned."""
    own = settings.replace(worker_channel="my.cleanup")
    tap = Tap(redis_server.url, "my.cleanup", LOBBY_CHANNEL)
    try:
        with server_thread(own) as server, start_worker(own) as worker:
            recorder = play(server.url, own)
            flush_logs()
            worker.part.stop()
            assert worker.join(30)
        through(tap, "my.cleanup")
    finally:
        tap.close()
    tasks = [m for m in tap.messages if isinstance(m["data"], dict) and m["data"].get("log_message") == CLEAN_MESSAGE]
    assert tasks and {m["channel"] for m in tasks} == {"my.cleanup"}
    assert worker.part.handled == len(tasks) == sum(1 for row in recorder.games)
    assert no_expiry(r) == []


def test_two_streams_workers_handle_every_task_once_in_all(streams, r, pubsub_logging, redis_server):
    """With TASK_TRANSPORT=streams, two workers share the tasks: each task is handled by one of them, once, acknowledged, and the stream is trimmed."""
    tap = Tap(redis_server.url, WORKER_LOGGER)
    try:
        with server_thread(streams) as server:
            a, b = start_worker(streams), start_worker(streams)
            recorder = play(server.url, streams, players=8, games=4)
            for w in (a, b):
                w.part.stop()
            assert a.join(30) and b.join(30)
        flush_logs()
        through(tap, WORKER_LOGGER)
    finally:
        tap.close()
    members = len(recorder.games)  # one task per member of every game
    assert a.part.handled + b.part.handled == members
    done = [d["task"]["id"] for d in records_of(tap, "Task Done")]
    assert len(done) == len(set(done)) == members
    group = {g["name"]: g for g in r.xinfo_groups(KEYS.tasks)}[TASKS_GROUP]
    assert group["pending"] == 0 and group["lag"] == 0
    assert r.xlen(KEYS.tasks) <= 1  # acknowledged entries are trimmed
    assert no_expiry(r) == []


def test_streams_worker_sigkilled_mid_run_and_restarted_loses_nothing(streams, r, redis_server):
    """A streams worker SIGKILLed mid-run: its tasks wait in the stream; a worker started after claims the ones left pending: no game without expiry, no task handled twice, none pending."""
    tap = Tap(redis_server.url, WORKER_LOGGER, LOBBY_CHANNEL)
    quick = streams.replace(lobby_timeout=1.0)
    try:
        with server_thread(quick) as server:
            first = start_worker(quick, mode="process", claim_idle=1.0)
            recorder = Recorder()
            bots = start_players(server.url, 8, 6, recorder=recorder, settings=quick, seed=3)
            tap.collect(lambda ms: len(records_of(tap, "Task Done")) >= 3, timeout=60)
            os.kill(first.pid, signal.SIGKILL)
            first.join(10)
            assert bots.join(120) and bots.error is None and recorder.errors == []
            second = start_worker(quick, mode="process", claim_idle=1.0)
            second.stop()  # drain: it ends when nothing is left for it (pending ones claimed after 1 s)
            assert second.join(60)
        through(tap, WORKER_LOGGER)
    finally:
        tap.close()
    done = collections.Counter(d["task"]["id"] for d in records_of(tap, "Task Done"))
    assert [i for i, n in done.items() if n > 1] == []  # handled twice: none
    group = {g["name"]: g for g in r.xinfo_groups(KEYS.tasks)}[TASKS_GROUP]
    assert group["pending"] == 0 and group["lag"] == 0
    assert no_expiry(r) == []
    assert len(finished_games(recorder)) > 0


def test_pubsub_tasks_lost_while_no_worker_listens_are_swept(settings, r, pubsub_logging):
    """With pub/sub and no worker, finished games keep their keys; one `simlib sweep` cleans them all (archived once), and a second sweep finds nothing."""
    with server_thread(settings) as server:
        recorder = play(server.url, settings, players=6, games=2)
    games = finished_games(recorder)
    assert no_expiry(r) != []

    def sweep() -> str:
        proc = subprocess.run([sys.executable, "-m", "simlib", "sweep"], cwd=ROOT, capture_output=True, text=True,
                              env=clean_env(REDIS_URL=settings.redis_url), timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    assert sweep() == f"swept {len(games)} finished game(s) that had no expiry"
    assert no_expiry(r) == []
    assert sweep() == "swept 0 finished game(s) that had no expiry"
    archived = [fields["game_token"] for _id, fields in r.xrange(KEYS.archive)]
    assert sorted(archived) == sorted(games)


def test_every_game_is_archived_once_with_its_record(settings, r, pubsub_logging):
    """Two pub/sub workers both handle every task, yet each finished game reaches archive:games exactly once, with its members, heroes, status, winner and log."""
    with server_thread(settings) as server, start_worker(settings) as one, start_worker(settings) as two:
        recorder = play(server.url, settings, players=6, games=3)
        flush_logs()
        for w in (one, two):
            w.part.stop()
        assert one.join(30) and two.join(30)
    entries = [fields for _id, fields in r.xrange(KEYS.archive)]
    assert sorted(e["game_token"] for e in entries) == sorted(finished_games(recorder))
    assert one.part.archived + two.part.archived == len(entries)
    rows = collections.defaultdict(list)
    for row in recorder.games:
        rows[row["game"]].append(row)
    for e in entries:
        members = json.loads(e["members"])
        assert members == sorted(row["user"] for row in rows[e["game_token"]])
        heroes = json.loads(e["heroes"])
        assert {u: h["id"] for u, h in heroes.items()} == {row["user"]: row["hero_id"] for row in rows[e["game_token"]]}
        log = json.loads(e["logs"])
        assert len([rec for rec in log if rec["STATUS"]["ACTION"] == "ATTACK"]) == sum(
            row["attacks"] for row in rows[e["game_token"]])
        if e["status"] == STATUS.COMPLETED:
            assert e["winner"] in members and heroes[e["winner"]]["health"] > 0
            assert all(heroes[u]["health"] == 0 for u in members if u != e["winner"])
        else:
            assert e["status"] == STATUS.TIMED_OUT and e["winner"] == ""


def test_archive_writes_the_tables_a_run_writes(tmp_path, r, redis_server):
    """`simlib archive --out` writes the archived games in the shape of `simlib run --out`: the same games, outcomes, winners, attacks and forfeits, the same columns and types."""
    import pandas as pd

    env = clean_env(REDIS_URL=redis_server.url, LOBBY_TIMEOUT="1", TURN_TIMEOUT="1")

    def simlib(*args):
        proc = subprocess.run([sys.executable, "-m", "simlib", *args], cwd=ROOT, capture_output=True, text=True,
                              env=env, timeout=240)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    summary = json.loads(simlib("run", "--players", "6", "--games", "3", "--drop-rate", "0.3", "--seed", "4",
                                "--json", "--no-progress", "--out", str(tmp_path / "run")))
    assert simlib("archive", "--out", str(tmp_path / "archive")).strip() == f"{summary['games']} archived game(s)"
    for name in ("games", "players", "attacks", "forfeits"):
        ran, kept = (pd.read_parquet(tmp_path / d / f"{name}.parquet") for d in ("run", "archive"))
        assert list(kept.columns) == list(ran.columns) and kept.dtypes.to_dict() == ran.dtypes.to_dict(), name
    ran, kept = (pd.read_parquet(tmp_path / d / "games.parquet").set_index("game").sort_index() for d in ("run", "archive"))
    assert kept.index.tolist() == ran.index.tolist()
    for column in ("participants", "outcome", "turns", "damage", "forfeits", "winner", "winner_hero"):
        assert kept[column].tolist() == ran[column].tolist(), column
    ran_attacks, kept_attacks = (pd.read_parquet(tmp_path / d / "attacks.parquet") for d in ("run", "archive"))
    assert sorted(map(tuple, kept_attacks.drop(columns=["time"]).values.tolist())) == sorted(
        map(tuple, ran_attacks.drop(columns=["time"]).values.tolist()))
