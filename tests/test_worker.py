"""The clean-up worker: what a task expires, idempotence, robustness, the pub/sub facts
the tutorial teaches as counts (every worker hears every task; unheard tasks are lost),
burst mode, the CLI, and a whole run through the runner leaving no game key behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from conftest import Tap, snapshot
from simlib.keys import LOBBY_CHANNEL, WORKER_LOGGER
from simlib.launch import start_players, start_worker
from simlib.logs import RedisPubSubHandler, flush_logs
from simlib.runner import simulate
from simlib.worker import CLEAN_MESSAGE, DRAIN_MESSAGE, PubSubSource, Worker


# -- helpers ---------------------------------------------------------------------------

def play(url: str, players: int, games: int, *, seed: int = 1, two_share: float = 1.0):
    """Play to the end and return the bots' handle (asserting nothing went wrong)."""
    handle = start_players(url, players=players, games=games, seed=seed, two_share=two_share)
    assert handle.join(30), "players did not finish"
    assert handle.error is None and not handle.failures and not handle.recorder.errors
    return handle


def game_tokens(handle) -> list[str]:
    return sorted({row["game"] for row in handle.recorder.games})


def play_two_sizes(url: str) -> list:
    """One 2-player and one 3-player game (lobbies that always fill: no time-outs)."""
    return [play(url, players=2, games=1, two_share=1.0), play(url, players=3, games=1, two_share=0.0)]


def tasks_of(r: redis.Redis, keys, games: list[str]) -> list[dict]:
    """The clean-up tasks of finished games, host last (as a server could order them)."""
    tasks = []
    for g in games:
        host = r.get(keys.host(g))
        members = sorted(r.smembers(keys.game(g)), key=lambda u: u == host)
        tasks.extend({"game_token": g, "user_token": u} for u in members)
    return tasks


def task_message(task: dict, text: str = CLEAN_MESSAGE) -> str:
    return json.dumps({"level": "INFO", "timestamp": "2024-01-01T00:00:00.000Z", "name": LOBBY_CHANNEL,
                       "log_message": text, "task": task})


def publish(r: redis.Redis, messages) -> list[int]:
    """Publish on the worker channel; returns the receiver count of each message."""
    return [r.publish(LOBBY_CHANNEL, m if isinstance(m, (str, bytes)) else task_message(m)) for m in messages]


def drain(*handles) -> None:
    """Stop workers after they handled everything published so far; they must end cleanly."""
    for h in handles:
        h.stop()
    for h in handles:
        assert h.join(10), f"{h.name} did not stop"
        assert h.error is None, f"{h.name} died: {h.error!r}"


def state(r: redis.Redis) -> dict:
    """Every key's value, and whether it has an expiry (TTL seconds tick, so not the value)."""
    return {k.decode(): ((kind, value), ttl > 0 if ttl != -1 else -1)
            for k, (kind, value, ttl) in snapshot(r).items()}


def game_keys(r: redis.Redis) -> list[str]:
    return sorted(r.scan_iter("games:*", count=1000))


def no_expiry(r: redis.Redis) -> list[str]:
    return [k for k in game_keys(r) if r.ttl(k) == -1]


@pytest.fixture
def expired(redis_server, r):
    """``expired.wait_gone(pattern)``: wait, driven by ``__keyevent@<db>__:expired``
    notifications, until no key matches ``pattern``; returns what is left (bounded)."""
    db = r.connection_pool.connection_kwargs.get("db", 0)
    old = r.config_get("notify-keyspace-events")["notify-keyspace-events"]
    r.config_set("notify-keyspace-events", "Ex")
    tap = Tap(redis_server.url, f"__keyevent@{db}__:expired")

    class Waiter:
        @staticmethod
        def wait_gone(pattern: str = "games:*", timeout: float = 15.0) -> list[str]:
            deadline = time.monotonic() + timeout
            while True:
                left = sorted(r.scan_iter(pattern, count=1000))
                if not left:
                    return left
                never = [k for k in left if r.ttl(k) == -1]
                assert not never, f"keys without expiry never go: {never}"
                if time.monotonic() >= deadline:
                    return left
                seen = len(tap.messages)
                tap.collect(lambda ms: len(ms) > seen, timeout=min(1.0, max(deadline - time.monotonic(), 0.01)))

    yield Waiter()
    tap.close()
    r.config_set("notify-keyspace-events", old)


# -- what a task does ----------------------------------------------------------------------

def test_worker_leaves_no_game_key_without_expiry(pubsub_logging, settings, game_server, r, keys):
    """After played games and a drained worker, every games:* key has a TTL and no finished game stays listed."""
    worker = start_worker(settings)
    tap = Tap(settings.redis_url, LOBBY_CHANNEL)
    try:
        players = play(game_server.url, players=4, games=2)
        flush_logs()  # every clean-up task is published before the drain marker
        drain(worker)
        tap.collect(lambda ms: any(isinstance(m["data"], dict) and m["data"].get("log_message") == DRAIN_MESSAGE
                                   for m in ms))
    finally:
        tap.close()
    games = game_tokens(players)
    assert len(games) == 4
    tasks = [m["data"]["task"] for m in tap.messages
             if isinstance(m["data"], dict) and m["data"].get("log_message") == CLEAN_MESSAGE]
    assert worker.part.handled == len(tasks) == 8
    assert no_expiry(r) == []
    assert all(r.ttl(k) > 0 for k in game_keys(r))
    assert r.exists(keys.participants, keys.players(2)) == 0
    for g in games:
        members = sorted(r.smembers(keys.game(g)))
        assert len(members) == 2
        # kept for analysis until the expiry: every key of the game is still there, with a TTL
        assert all(r.ttl(k) > 0 for k in keys.game_keys(g, members))


def test_non_host_task_expires_only_that_members_hero(settings, game_server, r, keys):
    """A non-host member's task puts an expiry on that member's hero hash and changes nothing else."""
    (g,) = game_tokens(play(game_server.url, players=2, games=1))
    host = r.get(keys.host(g))
    (other,) = r.smembers(keys.game(g)) - {host}
    before = state(r)
    assert no_expiry(r) == game_keys(r)

    worker = start_worker(settings)
    assert publish(r, [{"game_token": g, "user_token": other}]) == [1]
    drain(worker)

    after = state(r)
    assert worker.part.handled == 1
    assert r.ttl(keys.hero(g, other)) > 0
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {keys.hero(g, other)}
    assert after[keys.hero(g, other)][0] == before[keys.hero(g, other)][0]  # value kept, expiry added
    assert r.zscore(keys.participants, g) is not None
    assert g in r.lrange(keys.players(2), 0, -1)


def test_host_task_expires_the_game_and_unlists_it(settings, game_server, r, keys):
    """The host's task expires the game's keys and removes it from games:participants and games:players:<n>."""
    games = game_tokens(play(game_server.url, players=4, games=1))
    assert len(games) == 2
    g, kept = games
    host = r.get(keys.host(g))
    (other,) = r.smembers(keys.game(g)) - {host}
    before = state(r)

    worker = start_worker(settings)
    assert publish(r, [{"game_token": g, "user_token": host}]) == [1]
    drain(worker)

    after = state(r)
    assert worker.part.handled == 1
    for k in (keys.order(g), keys.status(g), keys.game_participants(g), keys.host(g), keys.hero(g, host),
              keys.game(g), keys.heroes_taken(g), keys.logs(g)):
        assert r.ttl(k) > 0, k
    assert r.ttl(keys.hero(g, other)) == -1  # the other member's own task expires that one
    assert r.zscore(keys.participants, g) is None
    assert r.lrange(keys.players(2), 0, -1) == [kept]
    assert r.zscore(keys.participants, kept) is not None
    # the other game is untouched
    assert {k: v for k, v in after.items() if kept in k} == {k: v for k, v in before.items() if kept in k}


def test_same_task_twice_gives_the_same_state(settings, game_server, r, keys):
    """The worker is idempotent: handling every task of a game a second time changes nothing."""
    (g,) = game_tokens(play(game_server.url, players=2, games=1))
    tasks = tasks_of(r, keys, [g])

    first = start_worker(settings)
    publish(r, tasks)
    drain(first)
    once = state(r)

    second = start_worker(settings)
    publish(r, tasks + tasks)
    drain(second)
    assert first.part.handled == 2 and second.part.handled == 4
    assert state(r) == once
    assert no_expiry(r) == []


def test_malformed_messages_are_ignored_and_the_worker_lives(settings, game_server, r, keys):
    """Garbage on the channel (bad bytes, bad JSON, bad tasks) is read and ignored; the next good task is applied."""
    (g,) = game_tokens(play(game_server.url, players=2, games=1))
    host = r.get(keys.host(g))
    (other,) = r.smembers(keys.game(g)) - {host}
    before = state(r)
    garbage = [
        b"\xff\xfe not UTF-8",
        "not json",
        "[1, 2, 3]",
        '"a string"',
        "null",
        "[" * 100_000,  # nested too deep for the JSON decoder
        json.dumps({"log_message": CLEAN_MESSAGE}),
        json.dumps({"log_message": CLEAN_MESSAGE, "task": f"{g} {host}"}),
        json.dumps({"log_message": CLEAN_MESSAGE, "task": None}),
        task_message({"game_token": 1, "user_token": None}),
        task_message({"game_token": [g], "user_token": {"u": host}}),
        task_message({"game_token": g}),
        task_message({"user_token": host}),
        task_message({"game_token": g, "user_token": host}, text="Game Finished: Completed"),
    ]
    worker = start_worker(settings)
    assert publish(r, garbage) == [1] * len(garbage)
    assert worker.alive
    assert publish(r, [{"game_token": g, "user_token": other}]) == [1]
    drain(worker)

    assert worker.part.received == len(garbage) + 1
    assert worker.part.handled == 1
    after = state(r)
    assert {k for k in after if after[k] != before.get(k)} == {keys.hero(g, other)}
    assert r.ttl(keys.hero(g, other)) > 0


def test_a_task_whose_script_fails_is_logged_and_the_worker_lives(settings, game_server, r, keys):
    """A task the clean-up script refuses (its game's host key holds a list: WRONGTYPE) is a warning, not the
    worker's end: the next good task is still applied."""
    (g,) = game_tokens(play(game_server.url, players=2, games=1))
    host = r.get(keys.host(g))
    (other,) = r.smembers(keys.game(g)) - {host}
    broken = str(uuid.uuid4())
    r.rpush(keys.host(broken), "not a host")
    worker = start_worker(settings)
    assert publish(r, [{"game_token": broken, "user_token": host}]) == [1]
    assert publish(r, [{"game_token": g, "user_token": other}]) == [1]
    drain(worker)

    assert worker.error is None
    assert worker.part.received == 2
    assert r.ttl(keys.hero(g, other)) > 0


def test_expiry_of_one_second_leaves_no_game_key(pubsub_logging, settings, game_server, r, expired):
    """With REDIS_EXPIRY=1 and a worker, every games:* key expires after the run (waited for via expired events)."""
    worker = start_worker(settings.replace(redis_expiry=1))
    play_two_sizes(game_server.url)
    flush_logs()
    drain(worker)
    assert worker.part.handled == 2 + 3  # one task per member of each game
    assert expired.wait_gone("games:*") == []


# -- pub/sub facts, as counts ---------------------------------------------------------------

def test_two_workers_each_handle_every_task_with_the_same_end_state(redis_server, settings, game_server, r, keys):
    """Pub/sub gives every task to every worker: two workers each receive and handle all N, ending as one worker does."""
    games = [g for h in play_two_sizes(game_server.url) for g in game_tokens(h)]
    tasks = tasks_of(r, keys, games)
    n = len(tasks)
    assert n == 2 + 3
    raw = redis.Redis.from_url(redis_server.url)
    dumps = {k: raw.dump(k) for k in raw.scan_iter(count=1000)}

    def restore():
        raw.flushdb()
        for k, v in dumps.items():
            raw.restore(k, 0, v)

    def run(workers: int) -> dict:
        restore()
        handles = [start_worker(settings) for _ in range(workers)]
        assert publish(r, tasks) == [workers] * n
        drain(*handles)
        for h in handles:
            assert h.part.received == n
            assert h.part.handled == n
        return state(r)

    try:
        one = run(1)
        two = run(2)
    finally:
        raw.close()
    assert two == one
    assert no_expiry(r) == []


def test_tasks_published_with_no_worker_listening_are_lost(settings, game_server, r, keys):
    """Tasks published while no worker listens reach 0 receivers; a worker started after handles 0 and the keys keep no TTL."""
    games = game_tokens(play(game_server.url, players=4, games=1))
    tasks = tasks_of(r, keys, games)
    assert r.pubsub_numsub(LOBBY_CHANNEL) == [(LOBBY_CHANNEL, 0)]
    assert publish(r, tasks) == [0] * len(tasks)

    worker = start_worker(settings)
    drain(worker)
    assert worker.part.received == 0
    assert worker.part.handled == 0
    assert len(game_keys(r)) > 0
    assert no_expiry(r) == game_keys(r)
    assert {r.zscore(keys.participants, g) is not None for g in games} == {True}


# -- burst mode and the CLI -----------------------------------------------------------------

def burst(worker: Worker, idle: float) -> int:
    """``worker.run(burst=True, idle=idle)``, bounded: a run that never goes quiet fails the test."""
    handled: list[int] = []
    runner = threading.Thread(target=lambda: handled.append(worker.run(burst=True, idle=idle)), daemon=True)
    runner.start()
    runner.join(30)
    assert handled, "the burst run did not return"
    return handled[0]


def test_burst_run_handles_what_is_queued_then_returns_when_quiet(settings, r):
    """run(burst=True) handles every task already on the channel, then returns once it is quiet."""
    tasks = [{"game_token": str(uuid.uuid4()), "user_token": str(uuid.uuid4())} for _ in range(5)]
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        source = PubSubSource(settings.redis_url, settings.worker_channel)  # listening from here on
        assert publish(r, tasks) == [1] * len(tasks)
        # Each PUBLISH answered 1: the task was in the subscriber's output, which Redis writes out
        # before it reads another command. So Redis holds nothing more for it: every task is on the
        # source's socket, and the run reads them all whatever its quiet period (idle) is.
        (subscriber,) = r.client_list(_type="pubsub")
        assert (subscriber["obl"], subscriber["oll"]) == ("0", "0")
        worker = Worker(settings, source=source)
        assert burst(worker, idle=0.2) == 5
        assert worker.received == worker.handled == 5
        assert not worker.ready.is_set()
        assert r.pubsub_numsub(settings.worker_channel) == [(settings.worker_channel, 0)]
    finally:
        client.close()
    assert burst(Worker(settings), idle=0.2) == 0


def _cli_args(env: dict[str, str], cwd: Path, *args: str) -> dict:
    """What runs ``simlib ARGS`` as a user would, with ``env`` for its REDIS_* variables."""
    exe = Path(sys.executable).with_name("simlib")
    command = [str(exe)] if exe.exists() else [sys.executable, "-c", "import sys; from simlib.cli import main; "
                                                                     "sys.exit(main())"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
    return {"args": [*command, *args], "env": {**base, **env}, "cwd": cwd, "text": True,
            "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(**_cli_args(env, cwd, *args), timeout=60)


def _listening(messages) -> bool:
    return any(isinstance(m["data"], dict) and " listening on " in str(m["data"].get("log_message"))
               for m in messages)


def test_cli_worker_burst_handles_what_comes_then_exits_zero(redis_server, game_server, r, keys, tmp_path):
    """'simlib worker --burst' handles every task published while it listens, then exits 0 once the channel is quiet."""
    games = [g for h in play_two_sizes(game_server.url) for g in game_tokens(h)]
    tasks = tasks_of(r, keys, games)
    assert len(tasks) == 2 + 3 and no_expiry(r) == game_keys(r)
    tap = Tap(redis_server.url, WORKER_LOGGER)  # the worker says on pub/sub when it listens
    worker = subprocess.Popen(**_cli_args({"REDIS_URL": redis_server.url, "LOGGER_MODULE": "redis"}, tmp_path,
                                          "worker", "--burst"))
    try:
        assert _listening(tap.collect(_listening, timeout=60)), "the worker never said it listens"
        assert publish(r, tasks) == [1] * len(tasks)
        out, err = worker.communicate(timeout=60)
    finally:
        tap.close()
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    assert "Traceback" not in err
    assert f"worker handled {len(tasks)} clean-up tasks" in err
    assert no_expiry(r) == []


def test_cli_worker_without_redis_is_one_error_line(tmp_path):
    """'simlib worker' with no REDIS_* variable prints one 'simlib: error:' line, exits 2, no traceback."""
    done = _cli({}, tmp_path, "worker", "--burst")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("simlib: error:"), done.stderr


# -- the whole runner ----------------------------------------------------------------------

def test_runner_with_workers_leaves_no_game_key(settings, r, expired, lib_logging):
    """simulate(REDIS_EXPIRY=1, 6 players × 2 games, 2 workers, thread servers) ends with 0 errors and no games:* key left."""
    for h in [h for h in lib_logging.handlers if isinstance(h, RedisPubSubHandler)]:
        lib_logging.removeHandler(h)  # start as a fresh process (a notebook) does; put back after
    result = simulate(settings.replace(redis_expiry=1), players=6, games=2, workers=2, server_mode="thread",
                      progress=False, seed=3)
    assert result.summary()["errors"] == 0
    assert not result.recorder.errors
    assert len(result.recorder.games) == 12
    assert expired.wait_gone("games:*") == []
