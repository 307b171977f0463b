"""Under load at full speed the rules still hold: 200 bots x 5 games at SERVER_SLEEP=0."""

from __future__ import annotations

import json

import pytest

from simlib.game import STATUS, replay
from simlib.keys import GAME_CHANNEL, LOBBY_CHANNEL, Keyspace
from simlib.runner import simulate

from conftest import Tap


@pytest.mark.parametrize("style", ["fast", "v1", "v2"])
def test_200_bots_at_full_speed_break_no_rule(settings, r, redis_server, style):
    """Every game completes or times out, none overfills, every log replays legally, no error."""
    tap = Tap(redis_server.url, LOBBY_CHANNEL, GAME_CHANNEL)
    result = simulate(settings.replace(server_sleep=0.0, lobby_timeout=2.0), players=200, games=5, workers=0,
                      style=style, progress=False, server_mode="process", seed=11)
    assert result.recorder.errors == []
    summary = result.summary()
    assert summary["completed"] + summary["timed_out"] == summary["games"]

    keys = Keyspace()
    games = r.lrange(keys.players(2), 0, -1) + r.lrange(keys.players(3), 0, -1)
    assert len(games) == summary["games"]
    replayed = 0
    for g in games:
        n = int(r.get(keys.game_participants(g)))
        members = r.smembers(keys.game(g))
        assert len(members) <= n, f"game {g} has {len(members)} members for {n} seats"
        assert int(r.zscore(keys.participants, g)) == len(members)
        status = r.get(keys.status(g))
        assert status in (STATUS.COMPLETED, STATUS.TIMED_OUT)
        if status == STATUS.COMPLETED:
            assert len(members) == n
            start = {}
            for u in members:
                hero = r.hgetall(keys.hero(g, u))
                base = json.loads(r.hget(keys.superheros, hero["id"]))["powerstats"]
                start[u] = {"attack": base["attack"], "health": base["health"]}
            log = [json.loads(x) for x in r.lrange(keys.logs(g), 0, -1)]
            outcome = replay(start, log)  # raises on a dead attacker, a late or out-of-turn attack
            assert outcome["winner"] is not None
            assert {u: int(r.hget(keys.hero(g, u), "health")) for u in members} == outcome["health"]
            replayed += 1
    assert replayed == summary["completed"] > 0
    assert sum(r.llen(keys.logs(g)) for g in games) == summary["attacks"]

    messages = tap.collect(lambda ms: sum(m["data"].get("log_message") == "Attack Completed" for m in ms)
                           >= summary["attacks"], timeout=30)
    tap.close()
    assert [m for m in messages if m["data"].get("level") in ("ERROR", "CRITICAL")] == []
