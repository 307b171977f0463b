"""Games always end: turn time-outs, players who vanish, abandoned lobbies, and a v2 player
who only acts as itself. Real servers, real sockets, real Redis; every wait is bounded
and driven by a frame or a published message, never a sleep.

The faults of whole processes (a server or Redis killed mid-run, a client that never
reads, a flood of connections) are in test_fault_runs.py."""

from __future__ import annotations

import contextlib
import json

import pytest
import redis
from websockets.exceptions import ConnectionClosed

from conftest import Client, Tap, find, login, server_thread, snapshot
from simlib import game as rules
from simlib import protocol as P
from simlib.game import STATUS
from simlib.keys import GAME_CHANNEL, LOBBY_CHANNEL
from test_session import SESSION, Session, notice, turn_notice
from v1play import TIMEOUT, kind, stored_logs

TURN, START, COMPLETE, TIMED_OUT = "USER'S TURN", "START", "COMPLETE", "TIMED OUT"


@pytest.fixture
def quick(settings):
    """Settings with short deadlines: a turn lasts 0.5 s, a lobby 1 s."""
    return settings.replace(turn_timeout=0.5, lobby_timeout=1.0)


@pytest.fixture
def server(quick, r, pubsub_logging):
    with server_thread(quick) as handle:
        yield handle


@pytest.fixture
def stack():
    with contextlib.ExitStack() as s:
        yield s


def sessions(stack, url: str, *names: str) -> list[Session]:
    out = []
    for name in names:
        s = Session(stack.enter_context(Client(url, SESSION)))
        s.login(name)
        out.append(s)
    return sorted(out, key=lambda s: s.user)  # the turn order


def v2_game(stack, url: str, n: int, prefix: str) -> tuple[str, list[Session]]:
    """``n`` logged-in sessions in one started game, START read; sorted in turn order."""
    seats = sessions(stack, url, *(f"{prefix}-{i}" for i in range(n)))
    games = {s.find(n) for s in seats}
    assert len(games) == 1, games
    game = games.pop()
    for s in seats:
        assert kind(s.recv()) == START
    return game, seats


def forfeits(r, keys, game: str) -> list[dict]:
    return [rec for rec in stored_logs(r, keys, game) if rec["STATUS"]["ACTION"] == "FORFEIT"]


def forfeit_record(game: str, user: str, reason: str) -> dict:
    """A FORFEIT record as logged (its TIMESTAMP aside)."""
    return {"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": user},
            "STATUS": {"ACTION": "FORFEIT", "DETAILS": {"REASON": reason}}}


def without_time(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "TIMESTAMP"}


def replays(r, keys, game: str) -> dict:
    """game.replay over the game's log from its starting heroes (raises on a broken rule)."""
    start = {}
    for u in r.smembers(keys.game(game)):
        hero = r.hgetall(keys.hero(game, u))
        base = json.loads(r.hget(keys.superheros, hero["id"]))["powerstats"]
        start[u] = {"attack": base["attack"], "health": base["health"]}
    return rules.replay(start, stored_logs(r, keys, game))


# -- turn time-outs and disconnects ---------------------------------------------------------

def test_v2_player_who_disconnects_on_its_turn_forfeits_and_the_other_wins(server, r, keys, stack, redis_server):
    """A v2 head that closes on its turn forfeits at once (DISCONNECTED): the record is logged and published like an attack, the other gets COMPLETE, the game is Completed with clean-up tasks for both."""
    tap = Tap(redis_server.url, GAME_CHANNEL, LOBBY_CHANNEL)
    stack.callback(tap.close)
    game, (head, other) = v2_game(stack, server.url, 2, "drop")
    assert head.recv() == turn_notice(game, [head.user, other.user])
    head.conn.close()
    assert other.recv() == notice(game, COMPLETE)
    assert r.get(keys.status(game)) == STATUS.COMPLETED
    (record,) = forfeits(r, keys, game)
    assert without_time(record) == forfeit_record(game, head.user, "DISCONNECTED")
    assert r.hget(keys.hero(game, head.user), "health") == "0"
    assert replays(r, keys, game)["winner"] == other.user
    assert not r.exists(keys.deadline(game)) and r.zscore(keys.deadlines, game) is None

    def published(ms):
        return [m["data"] for m in ms if isinstance(m["data"], dict)]
    tap.collect(lambda ms: sum(d.get("log_message") == "Cleaning Game Records" for d in published(ms)) == 2)
    forfeit_msgs = [d for d in published(tap.messages) if d.get("log_message") == "Player Forfeited"]
    assert [d["task"] for d in forfeit_msgs] == [record]
    assert {d["task"]["user_token"] for d in published(tap.messages)
            if d.get("log_message") == "Cleaning Game Records"} == {head.user, other.user}


def test_v2_player_on_turn_who_does_not_act_forfeits_and_the_next_one_plays(server, r, keys, stack):
    """In a 3-player game the head that lets TURN_TIMEOUT pass forfeits (TURN TIMEOUT), stays connected without another turn, the next player is told, and the game plays on to COMPLETE and replays."""
    game, (idle, second, third) = v2_game(stack, server.url, 3, "idle")
    assert idle.recv() == turn_notice(game, [idle.user, second.user, third.user])
    # idle does nothing: its deadline passes and the order moves on without it
    assert second.recv() == turn_notice(game, [second.user, third.user])
    (record,) = forfeits(r, keys, game)
    assert without_time(record) == forfeit_record(game, idle.user, "TURN TIMEOUT")
    players = {second.user: second, third.user: third}
    living = [second.user, third.user]
    for _ in range(1000):  # the two left play it out
        attacker = players[living[0]]
        reply = attacker.ask("ATTACK", {"ENEMY_TOKEN": living[1]})
        assert reply["STATUS"]["ACTION"] == "ATTACK", reply
        if reply["STATUS"]["DETAILS"]["ENEMY_HEALTH_POST"] == 0:
            break
        living = living[1:] + living[:1]
        assert players[living[0]].recv() == turn_notice(game, living)
    for s in (idle, second, third):
        assert s.recv() == notice(game, COMPLETE), s.frames
    # its one turn, before it forfeited
    assert [f for f in idle.frames if kind(f) == TURN] == [turn_notice(game, [idle.user, second.user, third.user])]
    assert replays(r, keys, game)["winner"] == attacker.user


def test_v1_player_who_vanishes_on_its_turn_forfeits_at_its_deadline(server, r, keys, stack):
    """A v1 player who closes its lobby on its turn and never acts forfeits (TURN TIMEOUT) at its deadline; the other player's lobby gets COMPLETE."""
    users = sorted(login(lambda route: stack.enter_context(Client(server.url, route)), f"v1-{i}") for i in range(2))
    open_ = lambda route: stack.enter_context(Client(server.url, route))  # noqa: E731
    game = find(open_, users[0], 2)["PAYLOAD"]["GAME_TOKEN"]
    assert find(open_, users[1], 2)["PAYLOAD"]["GAME_TOKEN"] == game
    lobbies = {}
    for u in users:
        lobbies[u] = open_(P.LOBBY)
        lobbies[u].send({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": u}})
        assert kind(lobbies[u].recv(TIMEOUT)) == START
    assert kind(lobbies[users[0]].recv(TIMEOUT)) == TURN
    lobbies[users[0]].close()  # vanishes on its turn
    assert lobbies[users[1]].recv(TIMEOUT) == notice(game, COMPLETE)
    (record,) = forfeits(r, keys, game)
    assert without_time(record) == forfeit_record(game, users[0], "TURN TIMEOUT")
    assert r.get(keys.status(game)) == STATUS.COMPLETED


def test_v1_player_may_reconnect_its_lobby_and_play_its_turn(quick, r, keys, stack):
    """A v1 lobby closed mid-game and opened again catches up (START, then its turn) and the player acts before its deadline."""
    srv = stack.enter_context(server_thread(quick.replace(turn_timeout=5.0)))  # time enough to come back
    open_ = lambda route: stack.enter_context(Client(srv.url, route))  # noqa: E731
    users = sorted(login(open_, f"back-{i}") for i in range(2))
    game = find(open_, users[0], 2)["PAYLOAD"]["GAME_TOKEN"]
    find(open_, users[1], 2)
    head = open_(P.LOBBY)
    head.send({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": users[0]}})
    assert kind(head.recv(TIMEOUT)) == START and kind(head.recv(TIMEOUT)) == TURN
    head.close()
    again = open_(P.LOBBY)
    again.send({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": users[0]}})
    assert kind(again.recv(TIMEOUT)) == START
    assert again.recv(TIMEOUT) == notice(game, TURN)
    reply = open_(P.ACTION).ask({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": users[0],
                                             "ENEMY_TOKEN": users[1], "ACTION": "ATTACK"}})
    assert reply["STATUS"]["ACTION"] == "ATTACK", reply
    assert [rec["STATUS"]["ACTION"] for rec in stored_logs(r, keys, game)] == ["ATTACK"]  # no forfeit


# -- lobbies -------------------------------------------------------------------------------

def test_lobby_times_out_without_its_opener_and_is_never_joined_after(server, r, keys, stack, redis_server):
    """A v1 player who finds and never opens its lobby: nobody holds it, yet it is Timed Out at its deadline (the event published), and the next FIND opens a new game."""
    tap = Tap(redis_server.url, keys.events_channel)
    stack.callback(tap.close)
    open_ = lambda route: stack.enter_context(Client(server.url, route))  # noqa: E731
    opener = login(open_, "opener")
    game = find(open_, opener, 3)["PAYLOAD"]["GAME_TOKEN"]
    assert r.zscore(keys.deadlines, game) == int(r.get(keys.deadline(game)))
    tap.collect(lambda ms: any(isinstance(m["data"], dict) and m["data"].get("t") == "timeout" for m in ms))
    assert r.get(keys.status(game)) == STATUS.TIMED_OUT
    assert not r.exists(keys.deadline(game)) and r.zscore(keys.deadlines, game) is None
    late = login(open_, "late")
    assert find(open_, late, 3)["PAYLOAD"]["GAME_TOKEN"] != game
    assert r.smembers(keys.game(game)) == {opener}


def test_find_never_seats_a_player_in_a_lobby_past_its_deadline(server, r, keys, stack):
    """A lobby whose deadline has passed (no watcher got to it yet) is timed out by the FIND that finds it, which opens a new game."""
    open_ = lambda route: stack.enter_context(Client(server.url, route))  # noqa: E731
    first, second = login(open_, "first"), login(open_, "second")
    game = find(open_, first, 2)["PAYLOAD"]["GAME_TOKEN"]
    seconds, micros = r.time()
    r.set(keys.deadline(game), seconds * 1000 + micros // 1000 - 1)  # overdue; the index still says later
    other = find(open_, second, 2)["PAYLOAD"]["GAME_TOKEN"]
    assert other != game
    assert r.get(keys.status(game)) == STATUS.TIMED_OUT and r.smembers(keys.game(game)) == {first}
    assert r.get(keys.status(other)) == STATUS.WAITING_LOBBY and r.smembers(keys.game(other)) == {second}


def test_v2_session_that_closes_while_its_lobby_fills_gives_its_seat_back(quick, r, keys, stack, redis_server,
                                                                       pubsub_logging):
    """A v2 session that closes in a filling lobby leaves it (member, hero, count, host passed on); newcomers fill the seat; the lone member leaving times the lobby out at once."""
    srv = stack.enter_context(server_thread(quick.replace(lobby_timeout=30.0)))  # no time-out during the test
    tap = Tap(redis_server.url, LOBBY_CHANNEL, keys.events_channel)
    stack.callback(tap.close)
    a, b, c, d = sessions(stack, srv.url, "seat-a", "seat-b", "seat-c", "seat-d")
    game = a.find(3)
    assert b.find(3) == game
    host = r.get(keys.host(game))
    leaver, stayer = (a, b) if host == a.user else (b, a)
    leaver.conn.close()
    left = tap.collect(lambda ms: any(isinstance(m["data"], dict) and m["data"].get("log_message", "").startswith(
        "Player Left Game") for m in ms))
    assert [m["data"]["task"] for m in left if isinstance(m["data"], dict)
            and m["data"].get("log_message", "").startswith("Player Left")] == [
        {"game_token": game, "user_token": leaver.user}]
    assert r.smembers(keys.game(game)) == {stayer.user}
    assert r.zscore(keys.participants, game) == 1 and r.get(keys.host(game)) == stayer.user
    assert not r.exists(keys.hero(game, leaver.user))
    assert r.smembers(keys.heroes_taken(game)) == {str(stayer.hero)}
    assert r.get(keys.status(game)) == STATUS.WAITING_LOBBY
    assert c.find(3) == game and d.find(3) == game
    for s in (stayer, c, d):
        assert kind(s.recv()) == START  # the first frame the stayer got since its FIND
    assert sorted(r.smembers(keys.game(game))) == sorted([stayer.user, c.user, d.user])

    (lone,) = sessions(stack, srv.url, "lone")
    alone = lone.find(3)
    tap.messages.clear()
    lone.conn.close()
    tap.collect(lambda ms: any(isinstance(m["data"], dict) and m["data"].get("t") == "timeout" for m in ms))
    assert r.get(keys.status(alone)) == STATUS.TIMED_OUT and r.smembers(keys.game(alone)) == {lone.user}
    (nxt,) = sessions(stack, srv.url, "next")
    assert nxt.find(3) != alone


# -- a player only acts as itself ----------------------------------------------------------

def test_v1_routes_can_be_turned_off(quick, r, stack):
    """With V1_ROUTES=0 a v1 route is refused (UNKNOWN ROUTE, naming the setting) and the v2 session plays."""
    with server_thread(quick.replace(v1_routes=False)) as srv:
        c = stack.enter_context(Client(srv.url, P.LOGIN))
        frame = c.recv(TIMEOUT)
        assert frame["ERROR"]["CODE"] == "UNKNOWN_ROUTE" and "V1_ROUTES=0" in frame["ERROR"]["MESSAGE"]
        (s,) = sessions(stack, srv.url, "v2-only")
        assert s.user and s.find(2)


def test_a_token_with_a_trailing_newline_is_unknown(server, r, keys, stack):
    """A user token followed by a newline is not a token: FIND answers UNKNOWN USER TOKEN and changes nothing."""
    open_ = lambda route: stack.enter_context(Client(server.url, route))  # noqa: E731
    token = login(open_, "newline")
    assert not P.is_token(token + "\n") and P.is_token(token)
    before = snapshot(r)
    reply = open_(P.FIND).ask({"PAYLOAD": {"USER_TOKEN": token + "\n", "PARTICIPANTS": 2}})
    assert reply["STATUS"] == "UNKNOWN USER TOKEN"
    assert snapshot(r) == before


def test_find_with_an_unknown_token_costs_the_same_with_200000_users(settings, r, keys, stack):
    """An unknown user token is refused with the same Redis commands, and never a read of the users hash, with 10 or 200,000 users."""
    # Long time-outs: the server's deadline watcher, which also wakes every min(time-outs) seconds,
    # must not run inside a measured window (this test sets no deadline that would wake it).
    server = stack.enter_context(server_thread(settings.replace(lobby_timeout=3600.0, turn_timeout=3600.0)))
    open_ = lambda route: stack.enter_context(Client(server.url, route))  # noqa: E731
    conn = open_(P.FIND)
    stranger = "00000000-0000-4000-8000-000000000000"

    def cost() -> dict[str, int]:
        r.config_resetstat()
        reply = conn.ask({"PAYLOAD": {"USER_TOKEN": stranger, "PARTICIPANTS": 2}})
        assert reply["STATUS"] == "UNKNOWN USER TOKEN", reply
        stats = r.info("commandstats")
        return {k: v["calls"] for k, v in stats.items() if k not in ("cmdstat_config", "cmdstat_info")}

    for i in range(10):
        login(open_, f"few-{i}")
    cost()  # a first call may load its script (EVAL once): measured from the second
    few = cost()
    pipe = r.pipeline(transaction=False)
    for i in range(200_000):
        pipe.hset(keys.users, f"many-{i}", f"{i:08d}-0000-4000-8000-000000000000")
    pipe.execute()
    many = cost()
    assert many == few
    assert not any(k in few for k in ("cmdstat_hvals", "cmdstat_hgetall", "cmdstat_hkeys", "cmdstat_hlen"))


def test_a_lost_redis_gives_redis_unavailable_then_game_lost_and_recovers(quick, stack):
    """Redis killed: a request gets REDIS_UNAVAILABLE on a connection that stays usable; restarted empty on its port: the followers of its games get GAME LOST (v1: then closed with 1011), the roster is loaded again, and a new game plays."""
    from simlib.roster import build_db, generate_roster  # noqa: PLC0415
    from simlib.store import EmbeddedRedis  # noqa: PLC0415

    own = EmbeddedRedis().start()
    stack.callback(own.stop)
    client = redis.Redis.from_url(own.url, decode_responses=True)
    build_db(client, generate_roster(30, seed=1))
    srv = stack.enter_context(server_thread(quick.replace(redis_url=own.url, turn_timeout=30.0, lobby_timeout=30.0)))
    srv.part.db.roster = "default"  # as a server started by 'simlib run' (--roster default)
    open_ = lambda route: stack.enter_context(Client(srv.url, route))  # noqa: E731
    v1 = login(open_, "lost-v1")
    (v2,) = sessions(stack, srv.url, "lost-v2")
    game = find(open_, v1, 2)["PAYLOAD"]["GAME_TOKEN"]
    assert v2.find(2) == game
    lobby = open_(P.LOBBY)
    lobby.send({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": v1}})
    assert kind(lobby.recv(TIMEOUT)) == START and kind(v2.recv()) == START
    logins = open_(P.LOGIN)

    own.kill()
    assert logins.ask({"PAYLOAD": {"USER": "during"}}) == P.redis_unavailable()
    assert logins.ask({"PAYLOAD": {"USER": "during"}}) == P.redis_unavailable()  # still usable
    restarted = EmbeddedRedis(port=own.port).start()
    stack.callback(restarted.stop)

    def until_lost(recv) -> list[dict]:  # the head may have had its turn notice first
        frames = [recv()]
        while frames[-1] != P.game_lost(game) and len(frames) < 3:
            frames.append(recv())
        return frames

    got = until_lost(lambda: lobby.recv(30))
    assert got[-1] == P.game_lost(game) and all(kind(f) == TURN for f in got[:-1]), got
    with pytest.raises(ConnectionClosed) as closed:
        lobby.recv(TIMEOUT)
    assert closed.value.rcvd.code == 1011
    got = until_lost(lambda: v2.recv(30))
    assert got[-1] == P.game_lost(game) and all(kind(f) == TURN for f in got[:-1]), got
    # the session plays on: its user is known again, and the roster is back
    (other,) = sessions(stack, srv.url, "after")
    again = other.find(2)
    assert v2.find(2) == again
    assert kind(other.recv()) == START and kind(v2.recv()) == START
    assert logins.ask({"PAYLOAD": {"USER": "after-v1"}})["STATUS"] == "USER CREATED"


# -- faults as a feature ---------------------------------------------------------------------

@pytest.mark.parametrize("style,reason", [("v2", "DISCONNECTED"), ("fast", "TURN TIMEOUT")])
def test_drop_rate_puts_forfeits_in_the_stream_and_the_tables(quick, r, keys, style, reason):
    """--drop-rate: seeded bots walk away from games; the run ends with every game over, the summary counts the forfeits (by reason) and the walk-aways, and the Parquet tables carry them; the same seed drops the same games of each bot."""
    from simlib.runner import simulate  # noqa: PLC0415

    def run():
        r.flushdb()
        from simlib.roster import build_db, generate_roster  # noqa: PLC0415

        build_db(r, generate_roster(60, seed=7))
        return simulate(quick, players=8, games=4, workers=1, style=style, seed=2, drop_rate=0.4, progress=False,
                        server_mode="thread")

    result = run()
    summary = result.summary()
    assert summary["dropped"] > 0 and summary["errors"] == 0
    assert set(summary["forfeits"]) == {reason} and summary["forfeits"][reason] > 0
    frames = result.frames()
    assert len(frames["forfeits"]) == summary["forfeits"][reason] == frames["games"]["forfeits"].sum()
    assert (frames["players"]["outcome"] == "Dropped").sum() == summary["dropped"]
    assert r.zcard(keys.deadlines) == 0
    assert {r.get(k) for k in r.scan_iter("games:*:status")} <= set(STATUS.ENDED)

    def decisions(res):  # where each bot meant to walk away, game by game (whether the game lasted that long or not)
        by_bot = {}
        for row in sorted(res.recorder.games, key=lambda row: row["joined_at"]):
            by_bot.setdefault(row["name"][-4:], []).append(row["drop_at"])
        return by_bot

    assert decisions(run()) == decisions(result)
    assert any(d is not None for ds in decisions(result).values() for d in ds)
