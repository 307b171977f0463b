"""The v1 routes over real sockets: what each answers, what it writes, and every rejection."""

from __future__ import annotations

import json
import re
import uuid
from functools import cached_property

import pytest
from websockets.exceptions import ConnectionClosed

from conftest import PLUMBING, Client, find, login, snapshot
from simlib import game as rules
from simlib import protocol as P
from simlib.roster import build_db
from v1play import (
    TIMEOUT,
    Game,
    action_frame,
    attack,
    drain,
    hero_hash,
    kind,
    order,
    play,
    roster_numbers,
    start_game,
    stored_logs,
)

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def start_frame_expected(r, keys, g: Game) -> dict:
    return {
        "PAYLOAD": {
            "GAME_TOKEN": g.token,
            "PARTICIPANTS": g.users,
            "PARTICIPANTS_HEROS": {u: {"token": u, "id": g.heroes[u], **roster_numbers(r, keys, g.heroes[u])}
                                   for u in g.users},
        },
        "STATUS": {"GAME": "START"},
    }


# -- login ------------------------------------------------------------------------------


def test_login_new_name_creates_user_then_sends_token(r, keys, client):
    """A new name gets USER CREATED, then its token (a UUID4 stored in `users`)."""
    c = client(P.LOGIN)
    assert c.ask({"PAYLOAD": {"USER": "USER042"}}) == {"PAYLOAD": {}, "STATUS": "USER CREATED"}
    reply = c.recv()
    assert set(reply) == {"PAYLOAD"} and set(reply["PAYLOAD"]) == {"USER_TOKEN"}
    token = reply["PAYLOAD"]["USER_TOKEN"]
    assert UUID4.match(token)
    assert r.hgetall(keys.users) == {"USER042": token}


def test_login_known_name_sends_only_its_token(r, keys, client):
    """A known name gets its existing token and nothing else; nothing is written."""
    token = login(client, "USER043")
    before = snapshot(r)
    c = client(P.LOGIN)
    assert c.ask({"PAYLOAD": {"USER": "USER043"}}) == {"PAYLOAD": {"USER_TOKEN": token}}
    # the next frame on this connection answers the next request: no stray frame came between
    assert c.ask({"PAYLOAD": {"USER": "USER043"}}) == {"PAYLOAD": {"USER_TOKEN": token}}
    assert snapshot(r) == before


def test_login_without_heroes_is_refused_and_writes_nothing(r, keys, client):
    """With an empty superheros hash, login answers LIST OF SUPERHEROS NOT AVAILABLE and registers no one."""
    r.delete(keys.superheros)
    before = snapshot(r)
    c = client(P.LOGIN)
    assert c.ask({"PAYLOAD": {"USER": "USER044"}}) == {"PAYLOAD": {}, "STATUS": "LIST OF SUPERHEROS NOT AVAILABLE"}
    assert snapshot(r) == before
    assert not r.exists(keys.users)


# -- find -------------------------------------------------------------------------------------


def test_find_writes_exactly_the_documented_keys(r, keys, client):
    """Opening and filling a game writes exactly keyspace.md's keys, with the roster's cleaned stats."""
    host, guest = login(client, "host"), login(client, "guest")
    before = set(r.keys("*"))

    reply = find(client, host, 2)
    g = reply["PAYLOAD"]["GAME_TOKEN"]
    assert UUID4.match(g)
    assert reply == {"PAYLOAD": {"GAME_TOKEN": g, "HERO_ID": reply["PAYLOAD"]["HERO_ID"]},
                     "STATUS": {"JOINED": "SUCCESS"}}
    hero = reply["PAYLOAD"]["HERO_ID"]
    assert isinstance(hero, int) and r.hexists(keys.superheros, str(hero))
    run = r.get(keys.run)  # the first game of the run also starts its game counter
    opened = {keys.players(2), keys.participants, keys.game_participants(g), keys.status(g), keys.host(g),
              keys.game(g), keys.heroes_taken(g), keys.hero(g, host), keys.deadline(g), keys.deadlines,
              keys.game_count(run)}
    assert {k for k in r.keys("*") if not k.encode().startswith(PLUMBING)} - before == opened
    assert opened == {"games:players:2", "games:participants", f"games:{g}:participants", f"games:{g}:status",
                      f"games:{g}:host", f"games:{g}", f"games:{g}:superheros", f"games:{g}:superheros:{host}",
                      f"games:{g}:deadline", "games:deadlines", f"simlib:games:{run}"}
    assert r.get(f"simlib:games:{run}") == "1"
    # the lobby's deadline: LOBBY_TIMEOUT after it opened, on the Redis clock, and indexed
    seconds, micros = r.time()
    deadline = int(r.get(f"games:{g}:deadline"))
    assert 0 < deadline - (seconds * 1000 + micros // 1000) <= 1000  # the fixture's LOBBY_TIMEOUT is 1 s
    assert r.zscore("games:deadlines", g) == deadline
    assert r.lrange("games:players:2", 0, -1) == [g]
    assert r.zscore("games:participants", g) == 1
    assert r.get(f"games:{g}:participants") == "2"
    assert r.get(f"games:{g}:status") == "Waiting Lobby"
    assert r.get(f"games:{g}:host") == host
    assert r.smembers(f"games:{g}") == {host}
    assert r.smembers(f"games:{g}:superheros") == {str(hero)}
    assert hero_hash(r, keys, g, host) == {"id": hero, **roster_numbers(r, keys, hero)}

    second = find(client, guest, 2)
    assert second["PAYLOAD"]["GAME_TOKEN"] == g
    other = second["PAYLOAD"]["HERO_ID"]
    assert other != hero
    assert {k for k in r.keys("*") if not k.encode().startswith(PLUMBING)} - before == opened | {keys.hero(g, guest), keys.order(g)}
    assert r.zscore("games:participants", g) == 2
    assert r.smembers(f"games:{g}") == {host, guest}
    assert r.smembers(f"games:{g}:superheros") == {str(hero), str(other)}
    assert hero_hash(r, keys, g, guest) == {"id": other, **roster_numbers(r, keys, other)}
    assert r.get(f"games:{g}:status") == "Starting"
    assert r.get(f"games:{g}:host") == host
    assert r.lrange(f"games:{g}:order", 0, -1) == sorted([host, guest])
    assert r.lrange("games:players:2", 0, -1) == [g]


# -- lobby ----------------------------------------------------------------------------------------


def test_lobby_sends_start_once_to_every_member_and_first_turn_to_sorted_first(r, keys, client):
    """Every member's lobby gets one START (event or late join alike); the sorted-first token gets the first turn."""
    users = [login(client, f"lobby-{i}") for i in range(3)]
    lobbies, heroes = {}, {}
    for i, u in enumerate(users):
        reply = find(client, u, 3)
        heroes[u] = reply["PAYLOAD"]["HERO_ID"]
        if i < 2:  # two wait in the lobby before it fills; the third comes after the start
            lobbies[u] = client(P.LOBBY)
            lobbies[u].send({"PAYLOAD": {"GAME_TOKEN": reply["PAYLOAD"]["GAME_TOKEN"], "USER_TOKEN": u}})
    g = Game(reply["PAYLOAD"]["GAME_TOKEN"], sorted(users), heroes)
    lobbies[users[2]] = client(P.LOBBY)
    lobbies[users[2]].send({"PAYLOAD": {"GAME_TOKEN": g.token, "USER_TOKEN": users[2]}})

    expected = start_frame_expected(r, keys, g)
    for u in users:
        assert lobbies[u].recv() == expected
    assert lobbies[g.head].recv() == {"PAYLOAD": {"GAME_TOKEN": g.token}, "STATUS": {"GAME": "USER'S TURN"}}
    assert r.get(keys.status(g.token)) == "Waiting Player"

    play(client(P.ACTION), r, keys, g)
    for u in users:
        rest = [kind(f) for f in drain(lobbies[u])]
        assert "START" not in rest and rest[-1] == "COMPLETE" and rest.count("COMPLETE") == 1, (u, rest)


def test_lonely_lobby_times_out(r, keys, client, settings):
    """A lobby that does not fill within LOBBY_TIMEOUT gets TIMED OUT, status 'Timed Out', and then refuses actions."""
    u, outsider = login(client, "lonely"), login(client, "outsider")
    g = find(client, u, 2)["PAYLOAD"]["GAME_TOKEN"]
    lobby = client(P.LOBBY)
    lobby.send({"PAYLOAD": {"GAME_TOKEN": g, "USER_TOKEN": u}})
    assert lobby.recv(timeout=settings.lobby_timeout + TIMEOUT) == {
        "PAYLOAD": {"GAME_TOKEN": g}, "STATUS": {"GAME": "TIMED OUT"}}
    assert drain(lobby) == []
    assert r.get(keys.status(g)) == "Timed Out"
    assert r.smembers(keys.game(g)) == {u} and not r.exists(keys.order(g))

    before = snapshot(r)
    reply = client(P.ACTION).ask(action_frame(g, u, outsider))
    assert reply["STATUS"] == "GAME NOT IN PROGRESS" and "ERROR" in reply
    assert snapshot(r) == before
    # a lobby opened on a timed-out game says so at once
    late = client(P.LOBBY)
    assert late.ask({"PAYLOAD": {"GAME_TOKEN": g, "USER_TOKEN": u}}) == {
        "PAYLOAD": {"GAME_TOKEN": g}, "STATUS": {"GAME": "TIMED OUT"}}


# -- hero --------------------------------------------------------------------------------------------


def test_hero_answers_several_requests_on_one_connection(r, keys, client):
    """/game/hero answers HERO SPEC for every member asked, on one connection, and reflects damage."""
    g = start_game(client, 3, "heroes")
    c = client(P.HERO)
    for asker in range(2):  # twice round: the connection keeps serving
        for u in g.users:
            assert c.ask({"PAYLOAD": {"GAME_TOKEN": g.token, "USER_TOKEN": u}}) == {
                "PAYLOAD": {"GAME_TOKEN": g.token, "USER_TOKEN": u,
                            "HERO": {"token": u, "id": g.heroes[u], **roster_numbers(r, keys, g.heroes[u])}},
                "STATUS": {"GAME": "HERO SPEC"}}
    rec = attack(client(P.ACTION), g.token, g.users[0], g.users[1])
    hero = c.ask({"PAYLOAD": {"GAME_TOKEN": g.token, "USER_TOKEN": g.users[1]}})["PAYLOAD"]["HERO"]
    assert hero["health"] == rec["STATUS"]["DETAILS"]["ENEMY_HEALTH_POST"]


# -- action -------------------------------------------------------------------------------------------


def test_action_records_rotate_drop_the_dead_and_complete(r, keys, client):
    """Attacks answer the record, rotate the order, drop dead heroes; the end is COMPLETE everywhere and 'Completed'."""
    g = start_game(client, 3, "fight")
    lobbies = {}
    for u in g.users:
        lobbies[u] = client(P.LOBBY)
        lobbies[u].send({"PAYLOAD": {"GAME_TOKEN": g.token, "USER_TOKEN": u}})
    health = {u: roster_numbers(r, keys, g.heroes[u])["health"] for u in g.users}
    power = {u: roster_numbers(r, keys, g.heroes[u])["attack"] for u in g.users}
    now = list(g.users)
    act = client(P.ACTION)
    deaths, records = 0, []
    for _ in range(2000):
        if len(now) == 1:
            break
        attacker, enemy = now[0], now[-1]  # attack the last in the order: exercise a non-neighbour
        rec = act.ask(action_frame(g.token, attacker, enemy))
        post = rules.hit(health[enemy], power[attacker])
        assert set(rec) == {"TIMESTAMP", "PAYLOAD", "STATUS"} and ISO.match(rec["TIMESTAMP"])
        assert rec["PAYLOAD"] == {"GAME_TOKEN": g.token, "USER_TOKEN": attacker}
        assert rec["STATUS"] == {"ACTION": "ATTACK", "DETAILS": {
            "ENEMY_TOKEN": enemy, "ENEMY_DAMAGE": health[enemy] - post,
            "ENEMY_HEALTH_PRIOR": health[enemy], "ENEMY_HEALTH_POST": post}}
        records.append(rec)
        health[enemy] = post
        now = rules.after_attack(now, attacker, enemy, post)
        deaths += post == 0
        assert order(r, keys, g.token) == now
        assert int(r.hget(keys.hero(g.token, enemy), "health")) == post
        if len(now) > 1:  # SERVER_SLEEP=0 (the fixture): no pause, so the action itself sets Waiting Player
            assert r.get(keys.status(g.token)) == "Waiting Player"
    assert deaths == 2 and len(now) == 1
    assert r.get(keys.status(g.token)) == "Completed"
    assert stored_logs(r, keys, g.token) == records
    for u in g.users:
        frames = drain(lobbies[u])
        assert frames[-1] == {"PAYLOAD": {"GAME_TOKEN": g.token}, "STATUS": {"GAME": "COMPLETE"}}, u
        assert [kind(f) for f in frames].count("COMPLETE") == 1


def test_null_enemy_is_answered_na_only_when_no_enemy_lives(r, keys, client):
    """ENEMY_TOKEN null/"" gets the NA record only once the game is decided, and writes nothing."""
    g = start_game(client, 2, "na")
    act = client(P.ACTION)
    alive = act.ask(action_frame(g.token, g.head, None))
    assert alive["STATUS"] == "ENEMY STILL ALIVE" and "ERROR" in alive
    play(act, r, keys, g)
    winner = order(r, keys, g.token)[0]
    before = snapshot(r)
    for enemy in (None, ""):
        reply = act.ask(action_frame(g.token, winner, enemy))
        assert set(reply) == {"TIMESTAMP", "PAYLOAD", "STATUS"} and ISO.match(reply["TIMESTAMP"])
        assert reply["PAYLOAD"] == {"GAME_TOKEN": g.token, "USER_TOKEN": winner}
        assert reply["STATUS"] == {"ACTION": "NA", "DETAILS": {"ENEMY_TOKEN": None, "ENEMY_STATUS": "DEAD"}}
    assert snapshot(r) == before


# -- rejections ---------------------------------------------------------------------------------------


class World:
    """Games in the states the rejection cases need, built on first use."""

    def __init__(self, open_, r, keys):
        self.open, self.r, self.keys = open_, r, keys

    @cached_property
    def outsider(self) -> str:
        """A logged-in user in no game."""
        return login(self.open, "outsider")

    @cached_property
    def duel(self) -> Game:
        """A started 2-player game, nobody has acted yet."""
        return start_game(self.open, 2, "duel")

    @cached_property
    def waiting(self) -> Game:
        """A 5-player lobby with one member, still waiting."""
        u = login(self.open, "waiting")
        return Game(find(self.open, u, 5)["PAYLOAD"]["GAME_TOKEN"], [u])

    @cached_property
    def trio(self) -> Game:
        """A 3-player game played until its first death: `.dead` fell, the others live."""
        g = start_game(self.open, 3, "trio")
        play(self.open(P.ACTION), self.r, self.keys, g, until=lambda now: len(now) < 3)
        g.dead = next(u for u in g.users if u not in order(self.r, self.keys, g.token))
        return g

    @cached_property
    def done(self) -> Game:
        """A completed 2-player game: `.winner`, `.loser`."""
        g = start_game(self.open, 2, "done")
        play(self.open(P.ACTION), self.r, self.keys, g)
        g.winner = order(self.r, self.keys, g.token)[0]
        g.loser = next(u for u in g.users if u != g.winner)
        return g


def uid() -> str:
    return str(uuid.uuid4())


def j(payload) -> dict:
    return {"PAYLOAD": payload}


# route -> (valid request, check on its reply), sent on the same connection after a rejection
VALID = {
    "login": (lambda w: j({"USER": "newcomer"}), lambda rep: rep == {"PAYLOAD": {}, "STATUS": "USER CREATED"}),
    "find": (lambda w: j({"USER_TOKEN": w.outsider, "PARTICIPANTS": 2}),
             lambda rep: rep["STATUS"] == {"JOINED": "SUCCESS"}),
    "lobby": (lambda w: j({"GAME_TOKEN": w.duel.token, "USER_TOKEN": w.duel.head}),
              lambda rep: rep["STATUS"] == {"GAME": "START"}),
    "hero": (lambda w: j({"GAME_TOKEN": w.duel.token, "USER_TOKEN": w.duel.head}),
             lambda rep: rep["STATUS"] == {"GAME": "HERO SPEC"}),
    "action": (lambda w: action_frame(w.duel.token, w.duel.head, w.duel.users[1]),
               lambda rep: rep["STATUS"]["ACTION"] == "ATTACK"),
}
ROUTE = {"login": P.LOGIN, "find": P.FIND, "lobby": P.LOBBY, "hero": P.HERO, "action": P.ACTION}
FIELDS = {  # a complete request per route, built from the world, to take fields out of
    "login": lambda w: {"USER": "someone"},
    "find": lambda w: {"USER_TOKEN": w.outsider, "PARTICIPANTS": 2},
    "lobby": lambda w: {"GAME_TOKEN": w.duel.token, "USER_TOKEN": w.duel.head},
    "hero": lambda w: {"GAME_TOKEN": w.duel.token, "USER_TOKEN": w.duel.head},
    "action": lambda w: {"GAME_TOKEN": w.duel.token, "USER_TOKEN": w.duel.head, "ENEMY_TOKEN": w.duel.users[1],
                         "ACTION": "ATTACK"},
}
MISSING = {"USER": "USER", "USER_TOKEN": "USER TOKEN", "GAME_TOKEN": "GAME TOKEN", "PARTICIPANTS": "PARTICIPANTS",
           "ENEMY_TOKEN": "ENEMY TOKEN", "ACTION": "ACTION"}


def _without(route, field):
    return lambda w: j({k: v for k, v in FIELDS[route](w).items() if k != field})


def _with(route, **changes):
    return lambda w: j({**FIELDS[route](w), **{k: (v(w) if callable(v) else v) for k, v in changes.items()}})


CASES = []  # (id, route, request builder, STATUS, has ERROR)
for _route in ROUTE:
    CASES += [
        (f"{_route}-bad-json", _route, lambda w: '{"PAYLOAD": {', "MALFORMED JSON", True),
        (f"{_route}-deep-json", _route, lambda w: "[" * 20000 + "]" * 20000, "MALFORMED JSON", True),
        (f"{_route}-not-object", _route, lambda w: "[1, 2]", "INVALID MESSAGE", True),
        (f"{_route}-binary", _route, lambda w: b'{"PAYLOAD": {}}', "BINARY FRAME", True),
        (f"{_route}-no-payload", _route, lambda w: {"USER": "x"}, "MISSING PAYLOAD IN MESSAGE", False),
        (f"{_route}-payload-list", _route, lambda w: {"PAYLOAD": []}, "INVALID PAYLOAD", True),
    ]
CASES += [(f"{route}-missing-{field}", route, _without(route, field), f"MISSING {MISSING[field]} IN PAYLOAD", False)
          for route, fields in {"login": ["USER"], "find": ["USER_TOKEN", "PARTICIPANTS"],
                                "lobby": ["GAME_TOKEN", "USER_TOKEN"], "hero": ["GAME_TOKEN", "USER_TOKEN"],
                                "action": ["GAME_TOKEN", "USER_TOKEN", "ENEMY_TOKEN", "ACTION"]}.items()
          for field in fields]
CASES += [
    ("login-empty-user", "login", _with("login", USER=""), "INVALID USER", True),
    ("login-65-chars", "login", _with("login", USER="x" * 65), "INVALID USER", True),
    ("login-non-printable", "login", _with("login", USER="bad\nname"), "INVALID USER", True),
    ("login-non-string", "login", _with("login", USER=7), "INVALID USER", True),
    ("find-unknown-user", "find", _with("find", USER_TOKEN=lambda w: uid()), "UNKNOWN USER TOKEN", True),
    ("find-wildcard-user", "find", _with("find", USER_TOKEN="*"), "UNKNOWN USER TOKEN", True),
    *[(f"find-participants-{n!r}", "find", _with("find", PARTICIPANTS=n), "INVALID PARTICIPANTS", True)
      for n in (1, 11, 2.0, True, "2")],
]
for _route in ("lobby", "hero"):
    CASES += [
        (f"{_route}-wildcard-game", _route, _with(_route, GAME_TOKEN="*"), "UNKNOWN GAME TOKEN", True),
        (f"{_route}-wildcard-user", _route, _with(_route, USER_TOKEN="games:*"), "UNKNOWN USER TOKEN", True),
        (f"{_route}-unknown-game", _route, _with(_route, GAME_TOKEN=lambda w: uid()), "UNKNOWN GAME TOKEN", True),
        (f"{_route}-unknown-user", _route, _with(_route, USER_TOKEN=lambda w: uid()), "USER NOT IN THIS GAME", True),
        (f"{_route}-not-a-member", _route, _with(_route, USER_TOKEN=lambda w: w.outsider), "USER NOT IN THIS GAME",
         True),
        (f"{_route}-member-of-another-game", _route, _with(_route, USER_TOKEN=lambda w: w.done.winner),
         "USER NOT IN THIS GAME", True),
    ]
CASES += [
    ("action-not-attack", "action", _with("action", ACTION="DEFEND"), "UNKNOWN ACTION", True),
    ("action-wildcard-game", "action", _with("action", GAME_TOKEN="*"), "UNKNOWN GAME TOKEN", True),
    ("action-wildcard-user", "action", _with("action", USER_TOKEN="*"), "UNKNOWN USER TOKEN", True),
    ("action-wildcard-enemy", "action", _with("action", ENEMY_TOKEN="*"), "UNKNOWN ENEMY TOKEN", True),
    ("action-unknown-game", "action", _with("action", GAME_TOKEN=lambda w: uid()), "UNKNOWN GAME TOKEN", True),
    ("action-not-a-member", "action", _with("action", USER_TOKEN=lambda w: w.outsider), "USER NOT IN THIS GAME",
     True),
    ("action-not-your-turn", "action",
     lambda w: action_frame(w.duel.token, w.duel.users[1], w.duel.head), "NOT YOUR TURN", True),
    ("action-attack-yourself", "action",
     lambda w: action_frame(w.duel.token, w.duel.head, w.duel.head), "CANNOT ATTACK YOURSELF", True),
    ("action-enemy-outsider", "action", _with("action", ENEMY_TOKEN=lambda w: w.outsider),
     "ENEMY NOT IN THIS GAME", True),
    ("action-enemy-unknown", "action", _with("action", ENEMY_TOKEN=lambda w: uid()), "ENEMY NOT IN THIS GAME", True),
    ("action-dead-enemy", "action",
     lambda w: action_frame(w.trio.token, order(w.r, w.keys, w.trio.token)[0], w.trio.dead),
     "ENEMY ALREADY DEAD", True),
    ("action-dead-attacker", "action",
     lambda w: action_frame(w.trio.token, w.trio.dead, order(w.r, w.keys, w.trio.token)[0]),
     "NOT YOUR TURN", True),
    ("action-after-completion-winner", "action", lambda w: action_frame(w.done.token, w.done.winner, w.done.loser),
     "GAME COMPLETED", True),
    ("action-after-completion-loser", "action", lambda w: action_frame(w.done.token, w.done.loser, w.done.winner),
     "GAME COMPLETED", True),
    ("action-null-enemy-while-alive", "action", _with("action", ENEMY_TOKEN=None), "ENEMY STILL ALIVE", True),
    ("action-empty-enemy-while-alive", "action", _with("action", ENEMY_TOKEN=""), "ENEMY STILL ALIVE", True),
    ("action-null-enemy-dead-player", "action", lambda w: action_frame(w.done.token, w.done.loser, None),
     "ENEMY STILL ALIVE", True),
    ("action-in-waiting-lobby", "action", lambda w: action_frame(w.waiting.token, w.waiting.users[0], w.outsider),
     "GAME NOT IN PROGRESS", True),
]


def send_raw(c: Client, request) -> None:
    if isinstance(request, (str, bytes)):
        c.ws.send(request)
    else:
        c.send(request)


def assert_rejection(frame: dict, status: str, has_error: bool) -> None:
    if not has_error:  # the original's exact two-key shape
        assert frame == {"PAYLOAD": {}, "STATUS": status}
        return
    assert set(frame) == {"PAYLOAD", "STATUS", "ERROR"} and frame["PAYLOAD"] == {}, frame
    assert frame["STATUS"] == status, frame
    assert set(frame["ERROR"]) == {"CODE", "MESSAGE"}, frame
    assert isinstance(frame["ERROR"]["CODE"], str) and frame["ERROR"]["CODE"].isupper(), frame
    assert isinstance(frame["ERROR"]["MESSAGE"], str) and frame["ERROR"]["MESSAGE"], frame


@pytest.fixture
def world(client, r, keys):
    return World(client, r, keys)


@pytest.mark.parametrize(("route", "build", "status", "has_error"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rejection_answers_error_changes_nothing_and_connection_goes_on(world, r, client, route, build, status,
                                                                         has_error):
    """A bad request gets its error frame, leaves Redis unchanged, and a valid request on the same connection works."""
    request = build(world)
    valid, ok = VALID[route]
    valid_request = valid(world)  # build what it needs before the snapshot
    c = client(ROUTE[route])
    before = snapshot(r)
    send_raw(c, request)
    assert_rejection(c.recv(), status, has_error)
    assert snapshot(r) == before
    reply = c.ask(valid_request)
    assert ok(reply), reply


@pytest.mark.parametrize("route", list(ROUTE))
def test_oversized_frame_closes_1009_and_server_stays_up(world, r, client, route):
    """A frame over 64 KiB closes that connection with 1009; nothing changes; the server serves on."""
    valid, ok = VALID[route]
    valid_request = valid(world)
    c = client(ROUTE[route])
    before = snapshot(r)
    c.send(json.dumps({"PAYLOAD": {"USER": "x" * (P.MAX_FRAME + 1)}}))
    with pytest.raises(ConnectionClosed) as info:
        c.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    assert snapshot(r) == before
    assert ok(client(ROUTE[route]).ask(valid_request))


@pytest.mark.parametrize("path", ["/api/v1/nope", "/", "/api/v2/login", "/api/v1/login/extra"])
def test_unknown_route_is_refused_and_server_stays_up(r, client, path):
    """An unknown route gets UNKNOWN ROUTE with ERROR, the connection is closed, nothing changes."""
    login(client, "someone")
    before = snapshot(r)
    c = client(path)
    assert_rejection(c.recv(), "UNKNOWN ROUTE", True)
    with pytest.raises(ConnectionClosed):
        c.recv()
    assert snapshot(r) == before
    assert client(P.LOGIN).ask(j({"USER": "someone-else"}))["STATUS"] == "USER CREATED"


def test_find_with_too_few_heroes_changes_nothing(r, keys, client, roster):
    """A find that cannot draw a hero (roster smaller than the game) is refused and writes nothing."""
    build_db(r, roster[:2])
    users = [login(client, f"few-{i}") for i in range(3)]
    find(client, users[0], 3)
    find(client, users[1], 3)
    c = client(P.FIND)
    before = snapshot(r)
    assert_rejection(c.ask(j({"USER_TOKEN": users[2], "PARTICIPANTS": 3})), "NOT ENOUGH SUPERHEROS", True)
    assert snapshot(r) == before
    assert c.ask(j({"USER_TOKEN": users[2], "PARTICIPANTS": 2}))["STATUS"] == {"JOINED": "SUCCESS"}


def test_find_with_no_heroes_opens_no_game(r, keys, client, roster):
    """A find while the superheros hash is empty is refused (no heroes loaded) and opens no game."""
    u = login(client, "early")
    r.delete(keys.superheros)
    c = client(P.FIND)
    before = snapshot(r)
    assert_rejection(c.ask(j({"USER_TOKEN": u, "PARTICIPANTS": 2})), "LIST OF SUPERHEROS NOT AVAILABLE", True)
    assert snapshot(r) == before
    build_db(r, roster)
    assert c.ask(j({"USER_TOKEN": u, "PARTICIPANTS": 2}))["STATUS"] == {"JOINED": "SUCCESS"}
