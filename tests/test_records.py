"""Data a pipeline can be tested against: numbered records, the run's records file, the
answer key, `simlib check`, replay, and the original's message format. Real servers
(processes), real pub/sub; every wait is bounded and driven by messages."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
import redis

from simlib.answers import ANSWER_FILE
from simlib.game import STATUS, replay
from simlib.keys import Keyspace
from simlib.runner import simulate
from simlib.stream import decode, read_records
from test_cli import ROOT, clean_env

KEYS = Keyspace()


@pytest.fixture
def lib_tap(redis_server):
    """A subscriber to lib.* from now on (the test's own, beside the run's)."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    pubsub = client.pubsub()
    pubsub.psubscribe("lib.*")
    assert pubsub.get_message(timeout=5)["type"] == "psubscribe"
    yield pubsub
    pubsub.close()
    client.close()


def collect_all(pubsub, until, timeout: float = 30.0) -> list[dict]:
    """Read the pattern's messages until ``until(messages)`` holds, or the time is up."""
    got: list[dict] = []
    deadline = threading.Event()
    timer = threading.Timer(timeout, deadline.set)
    timer.start()
    try:
        while not until(got) and not deadline.is_set():
            try:
                m = pubsub.get_message(timeout=0.2)
            except redis.TimeoutError:  # a message only partly arrived: the next read completes it
                continue
            if m and m["type"] == "pmessage":
                got.append({"channel": m["channel"], "data": m["data"]})
    finally:
        timer.cancel()
    return got


def test_seq_is_contiguous_and_unique_across_two_servers(settings, r, tmp_path, lib_tap):
    """Every record of a run on two server processes and a worker carries the run id and a seq: 1..N, no gap, no repeat, as an independent subscriber sees them; records.jsonl holds them in seq order."""
    result = simulate(settings, players=8, games=3, workers=1, servers=2, progress=False, out=tmp_path, seed=3)
    last = int(r.get(KEYS.seq(result.settings.run_id)))
    seen = collect_all(lib_tap, lambda got: len(got) >= last)
    records = [decode(m["data"]) for m in seen]
    mine = [rec for rec in records if rec and rec.get("run") == result.settings.run_id]
    assert sorted(rec["seq"] for rec in mine) == list(range(1, last + 1))
    assert {rec["name"] for rec in mine} >= {"lib.server.lobby", "lib.server.game", "lib.pubsub.worker"}
    stopping = [rec["task"]["server"] for rec in mine if str(rec["log_message"]).endswith("stopping")]
    assert len(stopping) == 2  # both servers' records are in the one numbering
    rows = list(read_records(tmp_path))
    assert [rec["seq"] for _, _, rec in rows] == list(range(1, last + 1))
    assert [(c, d) for c, d, _ in rows] == sorted(((m["channel"], m["data"]) for m in seen
                                                   if decode(m["data"])["run"] == result.settings.run_id),
                                                  key=lambda cd: decode(cd[1])["seq"])


def test_answer_key_agrees_with_a_replay_of_every_game_in_redis(settings, r, tmp_path):
    """The answer key (made from the records alone) gives each game the winner, attacks and damage a replay of its log in Redis gives; its invariants hold."""
    result = simulate(settings.replace(turn_timeout=1.0), players=8, games=3, workers=0, progress=False,
                      out=tmp_path, seed=5, drop_rate=0.2)
    result.write(tmp_path)
    key = json.loads((tmp_path / ANSWER_FILE).read_text())
    assert all(key["invariants"][k] for k in ("every game replays by the rules", "damage dealt equals health lost",
                                              "one survivor in each completed game"))
    by_game = {g["game"]: g for g in key["games"]}
    in_redis = [g for n in (2, 3) for g in r.lrange(KEYS.players(n), 0, -1)]
    assert sorted(by_game) == sorted(in_redis)
    for g in in_redis:
        status = r.get(KEYS.status(g))
        assert by_game[g]["outcome"] == status
        log = [json.loads(x) for x in r.lrange(KEYS.logs(g), 0, -1)]
        assert by_game[g]["attacks"] == sum(rec["STATUS"]["ACTION"] == "ATTACK" for rec in log)
        if status != STATUS.COMPLETED:
            assert by_game[g]["winner"] is None
            continue
        start = {}
        for u in r.smembers(KEYS.game(g)):
            hero = r.hgetall(KEYS.hero(g, u))
            base = json.loads(r.hget(KEYS.superheros, hero["id"]))["powerstats"]
            start[u] = {"attack": base["attack"], "health": base["health"]}
        end = replay(start, log)
        assert by_game[g]["winner"] == end["winner"]
        assert by_game[g]["winner_hero"] == int(r.hget(KEYS.hero(g, end["winner"]), "id"))
        dealt = {}
        for rec in log:
            if rec["STATUS"]["ACTION"] == "ATTACK":
                u = rec["PAYLOAD"]["USER_TOKEN"]
                dealt[u] = dealt.get(u, 0) + rec["STATUS"]["DETAILS"]["ENEMY_DAMAGE"]
        assert {u: d for u, d in by_game[g]["damage_dealt"].items() if d} == dealt
    assert key["totals"]["attacks"] == sum(r.llen(KEYS.logs(g)) for g in in_redis) - key["totals"]["forfeits"]
    assert sum(h["wins"] for h in key["heroes"].values()) == key["totals"]["completed"]


def simlib(*args: str, url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simlib", *args], cwd=ROOT, capture_output=True, text=True,
                          env=clean_env(REDIS_URL=url), timeout=120)


def test_check_finds_a_planted_wrong_winner(settings, r, tmp_path):
    """`simlib check` accepts results equal to the key (exit 0) and names the one game whose winner was planted wrong (exit 1)."""
    result = simulate(settings, players=6, games=2, workers=0, progress=False, out=tmp_path, seed=2)
    result.write(tmp_path)
    key = json.loads((tmp_path / ANSWER_FILE).read_text())
    winners = {g["game"]: g["winner"] for g in key["games"]}
    good = tmp_path / "mine.json"
    good.write_text(json.dumps(winners))
    ok = simlib("check", str(tmp_path), str(good), url=settings.redis_url)
    assert ok.returncode == 0 and ok.stdout.strip() == f"the results agree with the answer key ({len(winners)} games)"
    planted = next(g for g, w in winners.items() if w)
    wrong = dict(winners, **{planted: "00000000-0000-4000-8000-000000000000"})
    bad = tmp_path / "bad.csv"
    bad.write_text("game,winner\n" + "".join(f"{g},{w or ''}\n" for g, w in wrong.items()))
    found = simlib("check", str(tmp_path), str(bad), url=settings.redis_url)
    assert found.returncode == 1
    assert found.stdout.splitlines() == [
        f"game {planted}: winner 00000000-0000-4000-8000-000000000000, the key says {winners[planted]}",
        "1 difference(s) from the answer key"]


def test_replay_republishes_a_recorded_run_byte_for_byte(settings, r, tmp_path, lib_tap):
    """`simlib replay --max` publishes every line of records.jsonl again, on its channel, byte for byte, in seq order."""
    result = simulate(settings, players=4, games=2, workers=1, progress=False, out=tmp_path, seed=8)
    rows = [(c, d) for c, d, _ in read_records(tmp_path)]
    assert len(rows) == int(r.get(KEYS.seq(result.settings.run_id)))
    collect_all(lib_tap, lambda got: len(got) >= len(rows))  # what the run itself published: read past it
    done = simlib("replay", str(tmp_path), "--max", url=settings.redis_url)
    assert done.returncode == 0 and done.stdout.startswith(f"replayed {len(rows)} records on pub/sub")
    again = collect_all(lib_tap, lambda got: len(got) >= len(rows))
    assert [(m["channel"], m["data"]) for m in again] == rows
    streamed = simlib("replay", str(tmp_path), "--rate", "2000", "--to-stream", "copy", url=settings.redis_url)
    assert streamed.returncode == 0
    assert [(f["channel"], f["data"]) for _, f in r.xrange("copy")] == rows


def test_article_format_is_the_originals_double_encoding(settings, r, lib_tap, pubsub_logging):
    """With LOG_FORMAT=article a consumer written for the original (decode the message twice, then the task) reads every attack record; the lobby channel carries Starting Match and Game Timed Out per member; the worker still cleans every game."""
    article = settings.replace(log_format="article")
    result = simulate(article, players=6, games=2, workers=1, progress=False, seed=4, server_mode="thread")
    last = int(r.get(KEYS.seq(result.settings.run_id)))
    seen = collect_all(lib_tap, lambda got: len(got) >= last)
    attacks, starts, timeouts = [], 0, 0
    for m in seen:
        envelope = json.loads(json.loads(m["data"]))  # as the original's worker.py does
        assert envelope["name"].startswith("redis.lib.")
        assert "T" in envelope["timestamp"] and not envelope["timestamp"].endswith("Z")
        if envelope["log_message"] == "Attack Completed":
            attacks.append(json.loads(envelope["task"]))  # the task: a JSON string
        starts += envelope["log_message"] == "Starting Match"
        timeouts += envelope["log_message"] == "Game Timed Out"
    assert sorted(json.dumps(a, sort_keys=True) for a in attacks) == sorted(
        json.dumps(a, sort_keys=True) for a in result.recorder.attacks)
    started = {row["game"] for row in result.recorder.games if row["outcome"] == "COMPLETE"}
    assert starts == sum(1 for row in result.recorder.games if row["game"] in started)
    assert timeouts == sum(1 for row in result.recorder.games if row["outcome"] == "TIMED OUT")
    assert [k for k in r.scan_iter("games:*") if r.ttl(k) == -1] == []


def test_players_2_seed_7_twice_gives_identical_games(tmp_path):
    """`simlib run --players 2 --seed 7` twice, each on a fresh embedded Redis: the same games (tokens, members, heroes, outcomes, winners) and the same attacks, in the same order within each game."""
    import pandas as pd

    runs = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        proc = subprocess.run([sys.executable, "-m", "simlib", "run", "--players", "2", "--games", "4", "--seed", "7",
                               "--json", "--no-progress", "--out", str(out)], cwd=tmp_path, capture_output=True,
                              text=True, env=clean_env(LOBBY_TIMEOUT="1", SERVER_SLEEP="0"), timeout=240)
        assert proc.returncode == 0, proc.stderr
        key = json.loads((out / ANSWER_FILE).read_text())
        attacks = pd.read_parquet(out / "attacks.parquet").drop(columns=["time"])
        runs.append((key["games"], key["heroes"], attacks.sort_values(["game"], kind="stable").values.tolist()))
    assert runs[0] == runs[1]
    assert runs[0][0] and runs[0][2]  # games were played, with attacks
