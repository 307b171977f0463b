"""Matchmaking: atomic joins under concurrency, idempotent re-finds, ended games never
offered again, and a join whose Redis cost does not grow with the number of games played."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections import Counter

import pytest
from websockets.asyncio.client import connect

from conftest import Client, find, login, server_thread, snapshot
from simlib import protocol as P
from simlib.launch import start_server
from v1play import TIMEOUT, play, start_game


@pytest.fixture
def second_server(settings, r):
    """Another game server on the same Redis (a thread, free port)."""
    with server_thread(settings) as handle:
        yield handle


async def _find_all(requests: list[tuple[str, str, int]]) -> list[dict]:
    """Open every connection first, then send all finds at once, then read every reply."""
    conns = await asyncio.gather(*(connect(url + P.FIND, open_timeout=TIMEOUT) for url, _, _ in requests))
    try:
        await asyncio.gather(*(ws.send(json.dumps({"PAYLOAD": {"USER_TOKEN": u, "PARTICIPANTS": n}}))
                               for ws, (_, u, n) in zip(conns, requests)))
        replies = await asyncio.gather(*(asyncio.wait_for(ws.recv(), TIMEOUT) for ws in conns))
        return [json.loads(x) for x in replies]
    finally:
        await asyncio.gather(*(ws.close() for ws in conns))


def test_concurrent_finds_never_overfill(r, keys, client, game_server, second_server):
    """40 concurrent finds over two servers: games fill exactly, ZSCORE == SCARD, no hero twice in a game."""
    users = [login(client, f"crowd-{i:02d}") for i in range(40)]
    wants = {u: 2 + i % 2 for i, u in enumerate(users)}  # 20 want 2 players, 20 want 3
    urls = [game_server.url, second_server.url]
    requests = [(urls[i % 2], u, wants[u]) for i, u in enumerate(users)]

    replies = asyncio.run(_find_all(requests))

    placed = {}
    for (_, u, n), reply in zip(requests, replies):
        assert reply["STATUS"] == {"JOINED": "SUCCESS"}, reply
        placed[u] = reply["PAYLOAD"]["GAME_TOKEN"]
        assert r.hget(keys.hero(placed[u], u), "id") == str(reply["PAYLOAD"]["HERO_ID"])
    for n in (2, 3):
        games = r.lrange(keys.players(n), 0, -1)
        wanting = [u for u in users if wants[u] == n]
        assert len(games) == len(set(games)) == math.ceil(len(wanting) / n)
        assert {placed[u] for u in wanting} == set(games)
        sizes = []
        for g in games:
            members = r.smembers(keys.game(g))
            heroes = [r.hget(keys.hero(g, u), "id") for u in members]
            assert len(members) <= n and r.get(keys.game_participants(g)) == str(n)
            assert r.zscore(keys.participants, g) == len(members)
            assert len(set(heroes)) == len(heroes) and set(heroes) == r.smembers(keys.heroes_taken(g))
            assert members == {u for u in wanting if placed[u] == g}
            assert r.get(keys.status(g)) == ("Starting" if len(members) == n else "Waiting Lobby")
            if len(members) == n:
                assert r.lrange(keys.order(g), 0, -1) == sorted(members)
            sizes.append(len(members))
        # joins are serial: every game but the newest is full
        assert sizes[:-1] == [n] * (len(games) - 1) and sum(sizes) == len(wanting)


def test_find_twice_while_waiting_returns_the_same_game_and_changes_nothing(r, keys, client):
    """A user who finds again while waiting gets the same game and hero back, and Redis is unchanged."""
    u = login(client, "impatient")
    first = find(client, u, 3)
    before = snapshot(r)
    c = client(P.FIND)
    for _ in range(3):
        assert c.ask({"PAYLOAD": {"USER_TOKEN": u, "PARTICIPANTS": 3}}) == first
    assert snapshot(r) == before
    assert r.smembers(keys.game(first["PAYLOAD"]["GAME_TOKEN"])) == {u}


def test_timed_out_game_is_never_offered_again(r, keys, settings):
    """After a lobby times out with a free seat, the next finds open a new game instead."""
    with start_server(settings.replace(lobby_timeout=0.2), port=0) as server:
        def open_(route):
            return Client(server.url, route)

        a, b, c = (login(open_, f"late-{i}") for i in range(3))
        old = find(open_, a, 3)["PAYLOAD"]["GAME_TOKEN"]
        assert find(open_, b, 3)["PAYLOAD"]["GAME_TOKEN"] == old
        with Client(server.url, P.LOBBY) as lobby:
            assert lobby.ask({"PAYLOAD": {"GAME_TOKEN": old, "USER_TOKEN": a}}, timeout=TIMEOUT)["STATUS"] == {
                "GAME": "TIMED OUT"}
        assert r.get(keys.status(old)) == "Timed Out"
        before = r.smembers(keys.game(old))

        new = find(open_, c, 3)["PAYLOAD"]["GAME_TOKEN"]
        again = find(open_, a, 3)["PAYLOAD"]["GAME_TOKEN"]  # a member of the timed-out game too

        assert new != old and again == new
        assert r.smembers(keys.game(old)) == before and r.zscore(keys.participants, old) == 2
        assert r.smembers(keys.game(new)) == {c, a}
        assert r.lrange(keys.players(3), 0, -1) == [old, new]


def test_completed_game_is_never_offered_again(r, keys, client):
    """Once a game is Completed, a find opens a new game, even for its own members."""
    g = start_game(client, 2, "veteran")
    play(client(P.ACTION), r, keys, g)
    assert r.get(keys.status(g.token)) == "Completed"
    rookie = login(client, "rookie")
    new = find(client, rookie, 2)["PAYLOAD"]["GAME_TOKEN"]
    assert new != g.token
    assert find(client, g.users[0], 2)["PAYLOAD"]["GAME_TOKEN"] == new
    assert r.smembers(keys.game(g.token)) == set(g.users)
    assert r.lrange(keys.players(2), 0, -1) == [g.token, new]


# -- the cost of a join ----------------------------------------------------------------------

# Commands that are not the join's own: the measuring INFO, log records published by
# this process, and connection set-up of any client that connects meanwhile.
NOT_THE_JOIN = ("info", "publish", "client", "hello", "select", "ping", "auth")


def command_calls(r) -> Counter:
    stats = r.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): s["calls"] for name, s in stats.items()
                    if not name.removeprefix("cmdstat_").startswith(NOT_THE_JOIN)})


def join_cost(r, conn, user: str, n: int) -> Counter:
    """Redis commands (scripts' inner calls included) that one find costs, by command.

    A random hero draw may hit a taken hero and draw again (HRANDFIELD + SISMEMBER per
    retry); those retries are folded out so the count compares like with like."""
    before = command_calls(r)
    reply = conn.ask({"PAYLOAD": {"USER_TOKEN": user, "PARTICIPANTS": n}})
    after = command_calls(r)
    assert reply["STATUS"] == {"JOINED": "SUCCESS"}, reply
    cost = after - before
    retries = cost["hrandfield"] - 1
    cost["hrandfield"] -= retries
    cost["sismember"] -= retries
    return +cost


def test_join_cost_is_independent_of_history(r, keys, client):
    """With 50,000 finished games listed for 2 players, opening and filling a game costs the same commands as with none."""
    users = [login(client, f"cost-{i}") for i in range(6)]  # every token is known to the server now
    conn = client(P.FIND)
    # a first, full game: loads the join script (EVALSHA, then SCRIPT LOAD once), and makes
    # both runs below start from a list whose newest game is not open
    join_cost(r, conn, users[0], 2)
    join_cost(r, conn, users[1], 2)

    fresh_open = join_cost(r, conn, users[2], 2)
    fresh_fill = join_cost(r, conn, users[3], 2)

    pipe = r.pipeline(transaction=False)
    for _ in range(50):
        tokens = [str(uuid.uuid4()) for _ in range(1000)]
        pipe.rpush(keys.players(2), *tokens)
        pipe.mset({keys.status(t): "Completed" for t in tokens})
    pipe.execute()
    assert r.llen(keys.players(2)) == 50_002

    old_open = join_cost(r, conn, users[4], 2)
    old_fill = join_cost(r, conn, users[5], 2)

    assert old_open == fresh_open and old_fill == fresh_fill
    assert sum(fresh_open.values()) < 40 and sum(fresh_fill.values()) < 40, (fresh_open, fresh_fill)
    assert fresh_open["evalsha"] == fresh_fill["evalsha"] == 1
    assert r.llen(keys.players(2)) == 50_003
