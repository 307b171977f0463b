"""Session protocol v2 (`/api/v2/session`) over real sockets: one connection per player
for login, matchmaking, turns and the end; v1 frames and rejections; v1/v2 mixed games;
sessions of one game on different servers; lobby time-out and playing again.

Every wait is a bounded receive on a socket, never a sleep. Each socket's frames are read
strictly in order, so a missing, extra, duplicated or misplaced push fails the test."""

from __future__ import annotations

import contextlib
import uuid

import pytest

from conftest import Client, find, login, server_thread, snapshot
from simlib import game as rules
from simlib import protocol as P
from v1play import TIMEOUT, action_frame, drain, kind, order, roster_numbers, stored_logs

SESSION = "/api/v2/session"
TURN, START, COMPLETE, TIMED_OUT = "USER'S TURN", "START", "COMPLETE", "TIMED OUT"
SENTINEL = "NO_SUCH_VERB"  # an unknown TYPE: its rejection is the next frame iff nothing else is queued
LIMIT = 2000  # attacks before a game is declared stuck


# -- frames -------------------------------------------------------------------------------


def request(verb, payload=None) -> dict:
    return {"TYPE": verb, "PAYLOAD": {} if payload is None else payload}


def notice(game: str, what: str) -> dict:
    return {"PAYLOAD": {"GAME_TOKEN": game}, "STATUS": {"GAME": what}}


def turn_notice(game: str, living: list[str]) -> dict:
    return {"PAYLOAD": {"GAME_TOKEN": game, "ORDER": living}, "STATUS": {"GAME": TURN}}


def start_expected(r, keys, game: str, heroes: dict[str, int]) -> dict:
    """The v1 START frame: PARTICIPANTS sorted, each member's hero as drawn at FIND."""
    users = sorted(heroes)
    return {"PAYLOAD": {"GAME_TOKEN": game, "PARTICIPANTS": users,
                        "PARTICIPANTS_HEROS": {u: {"token": u, "id": heroes[u], **roster_numbers(r, keys, heroes[u])}
                                               for u in users}},
            "STATUS": {"GAME": START}}


def hero_spec_expected(r, keys, game: str, user: str, hero_id: int, health: int | None = None) -> dict:
    numbers = roster_numbers(r, keys, hero_id)
    if health is not None:
        numbers["health"] = health
    return {"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": user, "HERO": {"token": user, "id": hero_id, **numbers}},
            "STATUS": {"GAME": "HERO SPEC"}}


def assert_error(frame: dict, status: str, code: str | None) -> None:
    """A rejection: the two-key frame when ``code`` is None, else with ERROR {CODE, MESSAGE}."""
    if code is None:
        assert frame == {"PAYLOAD": {}, "STATUS": status}, frame
        return
    assert set(frame) == {"PAYLOAD", "STATUS", "ERROR"} and frame["PAYLOAD"] == {}, frame
    assert frame["STATUS"] == status, frame
    assert set(frame["ERROR"]) == {"CODE", "MESSAGE"} and frame["ERROR"]["CODE"] == code, frame
    assert isinstance(frame["ERROR"]["MESSAGE"], str) and frame["ERROR"]["MESSAGE"], frame


# -- players --------------------------------------------------------------------------------


class Session:
    """A v2 client: one connection; every frame received is kept in ``frames``, in order."""

    def __init__(self, conn: Client):
        self.conn = conn
        self.user: str | None = None
        self.hero: int | None = None
        self.frames: list[dict] = []

    def send(self, frame) -> None:
        if isinstance(frame, (str, bytes)):
            self.conn.ws.send(frame)
        else:
            self.conn.send(frame)

    def recv(self, timeout: float = TIMEOUT) -> dict:
        frame = self.conn.recv(timeout)
        self.frames.append(frame)
        return frame

    def recv_or_none(self, timeout: float = TIMEOUT) -> dict | None:
        """The next frame, or None when none comes in time (for a readable assertion)."""
        try:
            return self.recv(timeout)
        except TimeoutError:
            return None

    def ask(self, verb, payload=None) -> dict:
        self.send(request(verb, payload))
        return self.recv()

    def login(self, name: str) -> dict:
        reply = self.ask("LOGIN", {"USER": name})
        assert reply.get("STATUS") == "LOGGED IN", reply
        assert set(reply) == {"PAYLOAD", "STATUS"} and set(reply["PAYLOAD"]) == {"USER_TOKEN", "CREATED"}, reply
        self.user = reply["PAYLOAD"]["USER_TOKEN"]
        return reply

    def find(self, n: int) -> str:
        reply = self.ask("FIND", {"PARTICIPANTS": n})
        assert reply == {"PAYLOAD": {"GAME_TOKEN": reply.get("PAYLOAD", {}).get("GAME_TOKEN"),
                                     "HERO_ID": reply.get("PAYLOAD", {}).get("HERO_ID")},
                         "STATUS": {"JOINED": "SUCCESS"}}, reply
        self.hero = reply["PAYLOAD"]["HERO_ID"]
        assert isinstance(self.hero, int), reply
        return reply["PAYLOAD"]["GAME_TOKEN"]

    # the seat interface play() drives (V1Player has the same)
    def turn(self, game: str, living: list[str]) -> None:
        frame = self.recv()
        assert frame == turn_notice(game, living), (self.user, frame)

    def attack(self, game: str, enemy) -> dict:
        return self.ask("ATTACK", {"ENEMY_TOKEN": enemy})

    def complete(self, game: str) -> None:
        assert self.recv() == notice(game, COMPLETE), (self.user, self.frames[-1])
        self.nothing_queued()

    def nothing_queued(self) -> None:
        """No stray push is waiting: the next frame answers the next request."""
        assert_error(self.ask(SENTINEL), "UNKNOWN TYPE", "UNKNOWN_TYPE")

    def turns_received(self) -> list[list[str]]:
        return [f["PAYLOAD"]["ORDER"] for f in self.frames if kind(f) == TURN]


class V1Player:
    """A v1 client as the original bots: login and find, then a lobby and an action connection."""

    def __init__(self, open_, name: str):
        self.open = open_
        self.user = login(open_, name)
        self.hero: int | None = None
        self.lobby = self.action = None

    def find(self, n: int) -> str:
        reply = find(self.open, self.user, n)
        assert reply["STATUS"] == {"JOINED": "SUCCESS"}, reply
        self.hero = reply["PAYLOAD"]["HERO_ID"]
        return reply["PAYLOAD"]["GAME_TOKEN"]

    def follow(self, game: str) -> None:
        self.lobby, self.action = self.open(P.LOBBY), self.open(P.ACTION)
        self.lobby.send({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": self.user}})

    def turn(self, game: str, living: list[str]) -> None:
        frame = self.lobby.recv(TIMEOUT)
        assert frame == notice(game, TURN), (self.user, frame)  # v1 frames stay v1: no ORDER

    def attack(self, game: str, enemy) -> dict:
        return self.action.ask(action_frame(game, self.user, enemy), TIMEOUT)

    def complete(self, game: str) -> None:
        assert self.lobby.recv(TIMEOUT) == notice(game, COMPLETE), self.user
        assert drain(self.lobby) == []


def opener(stack: contextlib.ExitStack, url: str):
    return lambda route: stack.enter_context(Client(url, route))


@pytest.fixture
def session(client):
    """``session()`` opens a v2 session on the test server (closed after the test)."""
    return lambda: Session(client(SESSION))


def logged_in(open_session, *names: str) -> list[Session]:
    sessions = []
    for name in names:
        s = open_session()
        s.login(name)
        sessions.append(s)
    return sessions


def join_all(r, keys, seats: list[Session], n: int) -> tuple[str, dict]:
    """Each session FINDs in turn: one game; each gets its FIND reply first, then START."""
    games = [s.find(n) for s in seats]
    assert len(set(games)) == 1, games
    game = games[0]
    heroes = {s.user: s.hero for s in seats}
    assert len(set(heroes.values())) == n, heroes
    expected = start_expected(r, keys, game, heroes)
    for i, s in enumerate(seats):
        assert s.recv_or_none() == expected, (f"finder {i + 1} of {n}", s.frames)
    return game, expected


class Played:
    def __init__(self):
        self.records: list[dict] = []
        self.orders: list[list[str]] = []  # the living order at each turn, head first
        self.winner: str | None = None


def play(r, keys, game: str, seats: dict, start: dict, after=None) -> Played:
    """Play to the end: the head of the order gets exactly its turn notice, attacks the last
    in the order (not always a neighbour), and its very next frame is the record. Then
    COMPLETE reaches everyone, the log equals the replies and replays to Redis's state."""
    played = Played()
    now = rules.initial_order(seats)
    while len(now) > 1:
        assert len(played.records) < LIMIT, "game did not end"
        head, enemy = now[0], now[-1]
        seats[head].turn(game, now)
        played.orders.append(now)
        rec = seats[head].attack(game, enemy)
        assert set(rec) == {"TIMESTAMP", "PAYLOAD", "STATUS"} and isinstance(rec["STATUS"], dict), rec
        assert rec["PAYLOAD"] == {"GAME_TOKEN": game, "USER_TOKEN": head}, rec
        assert rec["STATUS"]["ACTION"] == "ATTACK" and rec["STATUS"]["DETAILS"]["ENEMY_TOKEN"] == enemy, rec
        played.records.append(rec)
        now = rules.after_attack(now, head, enemy, rec["STATUS"]["DETAILS"]["ENEMY_HEALTH_POST"])
        if after is not None:
            after(now)
    played.winner = now[0]
    for seat in seats.values():
        seat.complete(game)

    assert r.get(keys.status(game)) == "Completed"
    logs = stored_logs(r, keys, game)
    assert logs == played.records  # one record per attack, as answered
    replayed = rules.replay(start["PAYLOAD"]["PARTICIPANTS_HEROS"], logs)
    assert replayed["health"] == {u: int(r.hget(keys.hero(game, u), "health")) for u in seats}
    assert replayed["winner"] == played.winner and order(r, keys, game) == [played.winner]
    return played


# -- login ------------------------------------------------------------------------------------


def test_login_creates_user_and_a_live_session_keeps_its_name(r, keys, session, client, game_server, key_events):
    """LOGIN creates the user (CREATED true); while that session lives another LOGIN of its name is refused (USER IN USE) and changes nothing; v1 still gets the token; once it closes, the name logs in again (CREATED false)."""
    first = session()
    before = set(r.keys("*"))
    reply = first.ask("LOGIN", {"USER": "alice"})
    token = reply.get("PAYLOAD", {}).get("USER_TOKEN")
    assert reply == {"PAYLOAD": {"USER_TOKEN": token, "CREATED": True}, "STATUS": "LOGGED IN"}
    assert isinstance(token, str) and P.is_token(token)
    assert r.hgetall(keys.users) == {"alice": token}
    assert set(r.keys("*")) - before == {keys.users, keys.user_tokens, keys.sessions}
    assert r.smembers(keys.user_tokens) == {token}
    server_id = r.hget(keys.sessions, "alice")
    assert r.exists(keys.server_lease(server_id))  # the live server's lease: the name is held

    state = snapshot(r)
    assert_error(session().ask("LOGIN", {"USER": "alice"}), "USER IN USE", "USER_IN_USE")
    assert snapshot(r) == state
    assert login(client, "alice") == token  # v1 is the open protocol: it sees the same user
    assert snapshot(r) == state

    freed = key_events(keys.sessions)
    first.conn.ws.close()
    freed.collect(lambda ms: any(m["data"] == "hdel" for m in ms))
    assert not r.hexists(keys.sessions, "alice")
    assert session().ask("LOGIN", {"USER": "alice"}) == {"PAYLOAD": {"USER_TOKEN": token, "CREATED": False},
                                                         "STATUS": "LOGGED IN"}

    bob = login(client, "bob")  # a v1 user logs in on v2 as itself
    assert session().ask("LOGIN", {"USER": "bob"}) == {"PAYLOAD": {"USER_TOKEN": bob, "CREATED": False},
                                                       "STATUS": "LOGGED IN"}


@pytest.mark.parametrize("name", ["alice", "carol"], ids=["same-name", "other-name"])
def test_second_login_on_one_session_is_refused_and_writes_nothing(r, keys, session, name):
    """A second LOGIN on a session is ALREADY LOGGED IN, changes nothing, and the session still plays as its first user."""
    s = session()
    token = s.login("alice")["PAYLOAD"]["USER_TOKEN"]
    before = snapshot(r)
    assert_error(s.ask("LOGIN", {"USER": name}), "ALREADY LOGGED IN", "ALREADY_LOGGED_IN")
    assert snapshot(r) == before
    assert r.hgetall(keys.users) == {"alice": token}
    game = s.find(2)
    assert r.smembers(keys.game(game)) == {token}  # it joined as alice


# -- rejections outside a game ----------------------------------------------------------------


@pytest.mark.parametrize("verb, payload", [
    ("FIND", lambda u: {"PARTICIPANTS": 2}),
    ("ATTACK", lambda u: {"ENEMY_TOKEN": u}),
    ("HERO", lambda u: {"USER_TOKEN": u}),
])
def test_requests_before_login_are_refused(r, keys, session, client, verb, payload):
    """FIND, ATTACK and HERO before LOGIN get NOT LOGGED IN, change nothing, and LOGIN then works."""
    other = login(client, "someone")
    s = session()
    before = snapshot(r)
    assert_error(s.ask(verb, payload(other)), "NOT LOGGED IN", "NOT_LOGGED_IN")
    assert snapshot(r) == before
    assert s.login("late")["PAYLOAD"]["CREATED"] is True


@pytest.mark.parametrize("verb, payload", [
    ("ATTACK", lambda u: {"ENEMY_TOKEN": u}),
    ("ATTACK", lambda u: {"ENEMY_TOKEN": None}),
    ("HERO", lambda u: {"USER_TOKEN": u}),
], ids=["attack", "attack-null", "hero"])
def test_attack_and_hero_without_a_game_are_refused(r, keys, session, client, verb, payload):
    """ATTACK or HERO after LOGIN but before any FIND get NOT IN A GAME, change nothing, and FIND then works."""
    other = login(client, "someone")
    s = session()
    s.login("idle")
    before = snapshot(r)
    assert_error(s.ask(verb, payload(other)), "NOT IN A GAME", "NOT_IN_A_GAME")
    assert snapshot(r) == before
    s.find(2)


# Frame-level rejections, per session state. In the fresh state the verb is LOGIN, in the
# logged-in state FIND, so that no other rule can apply first.
FRAME_CASES = {
    "missing-type": (lambda verb: {"PAYLOAD": {"USER": "mallory", "PARTICIPANTS": 2}}, "MISSING TYPE IN MESSAGE",
                     None),
    "missing-type-empty-payload": (lambda verb: {"PAYLOAD": {}}, "MISSING TYPE IN MESSAGE", None),
    "unknown-type": (lambda verb: request("DANCE", {"USER": "mallory", "PARTICIPANTS": 2}), "UNKNOWN TYPE",
                     "UNKNOWN_TYPE"),
    "unknown-type-v1-route-name": (lambda verb: request("ACTION", {"ENEMY_TOKEN": None}), "UNKNOWN TYPE",
                                   "UNKNOWN_TYPE"),
    "malformed-json": (lambda verb: '{"TYPE": "%s", "PAYLOAD": {' % verb, "MALFORMED JSON", "MALFORMED_JSON"),
    "deep-json": (lambda verb: "[" * 20000 + "]" * 20000, "MALFORMED JSON", "MALFORMED_JSON"),
    "not-an-object": (lambda verb: f'["{verb}"]', "INVALID MESSAGE", "INVALID_MESSAGE"),
    "binary": (lambda verb: f'{{"TYPE": "{verb}", "PAYLOAD": {{"USER": "m", "PARTICIPANTS": 2}}}}'.encode(),
               "BINARY FRAME", "BINARY_FRAME"),
    "missing-payload": (lambda verb: {"TYPE": verb}, "MISSING PAYLOAD IN MESSAGE", None),
    "payload-not-object": (lambda verb: {"TYPE": verb, "PAYLOAD": ["mallory"]}, "INVALID PAYLOAD",
                           "INVALID_PAYLOAD"),
}
CASES = [(f"{state}-{name}", state, build, status, code)
         for state, verb in (("fresh", "LOGIN"), ("logged-in", "FIND"))
         for name, (make, status, code) in FRAME_CASES.items()
         for build in [lambda _make=make, _verb=verb: _make(_verb)]]
CASES += [
    ("fresh-login-missing-user", "fresh", lambda: request("LOGIN", {}), "MISSING USER IN PAYLOAD", None),
    ("fresh-login-empty-user", "fresh", lambda: request("LOGIN", {"USER": ""}), "INVALID USER", "INVALID_USER"),
    ("fresh-login-long-user", "fresh", lambda: request("LOGIN", {"USER": "x" * 65}), "INVALID USER", "INVALID_USER"),
    ("fresh-login-user-not-string", "fresh", lambda: request("LOGIN", {"USER": 7}), "INVALID USER", "INVALID_USER"),
    ("logged-in-find-missing-participants", "logged-in", lambda: request("FIND", {}),
     "MISSING PARTICIPANTS IN PAYLOAD", None),
    *[(f"logged-in-find-participants-{n!r}", "logged-in", lambda n=n: request("FIND", {"PARTICIPANTS": n}),
       "INVALID PARTICIPANTS", "INVALID_PARTICIPANTS") for n in (1, 11, 2.0, True, "2")],
]


@pytest.mark.parametrize(("state", "build", "status", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_frame_is_refused_changes_nothing_and_session_goes_on(r, keys, session, state, build, status, code):
    """A bad frame gets its v1/v2 error frame, leaves Redis unchanged, and the session's next valid request works."""
    s = session()
    if state == "logged-in":
        s.login("mallory")
    before = snapshot(r)
    s.send(build())
    assert_error(s.recv(), status, code)
    assert snapshot(r) == before
    if state == "fresh":  # the refused frame did not log the session in
        assert s.login("mallory")["PAYLOAD"]["CREATED"] is True
    else:
        game = s.find(2)
        assert r.smembers(keys.game(game)) == {s.user}


# -- games ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3])
def test_every_member_gets_start_and_the_head_its_turn_over_many_games(r, keys, session, n):
    """Over many games in a row, every member (the one whose FIND fills the game too) gets START, and the head its first turn."""
    for g in range(30 if n == 2 else 15):
        seats = logged_in(session, *(f"many-{g}-{i}" for i in range(n)))
        game, _ = join_all(r, keys, seats, n)
        head = min(seats, key=lambda s: s.user)
        head.turn(game, sorted(s.user for s in seats))
        for s in seats:
            s.conn.close()


def test_two_player_game_plays_to_complete_on_one_socket_each(r, keys, session):
    """Two sessions: FIND reply then START, only the head gets turns (ORDER, itself first), replies precede notices, COMPLETE to both, log replays."""
    a, b = logged_in(session, "duel-a", "duel-b")
    game, start = join_all(r, keys, [a, b], 2)
    # the filling FIND's reply came before the START it caused; nothing before START for either
    assert [f["STATUS"] for f in b.frames] == ["LOGGED IN", {"JOINED": "SUCCESS"}, {"GAME": START}]
    assert [f["STATUS"] for f in a.frames] == ["LOGGED IN", {"JOINED": "SUCCESS"}, {"GAME": START}]
    seats = {a.user: a, b.user: b}

    played = play(r, keys, game, seats, start)

    head, second = sorted(seats)
    assert played.orders[0] == [head, second]
    assert [o[0] for o in played.orders] == [head, second] * (len(played.orders) // 2) + [head] * (len(played.orders) % 2)
    for u, s in seats.items():
        # exactly one notice per turn of its own, with the other as the only enemy
        assert s.turns_received() == [o for o in played.orders if o[0] == u], u
        assert all(o == [u, next(x for x in seats if x != u)] for o in s.turns_received())
    # the winner's last frames: its final record, then COMPLETE (then the sentinel's answer)
    w = seats[played.winner]
    assert w.frames[-3] == played.records[-1] and w.frames[-2] == notice(game, COMPLETE)


def test_three_player_order_shrinks_and_the_dead_get_no_turn(r, keys, session):
    """In a 3-player game a dead hero's token leaves ORDER, it never gets a turn notice, and its requests are refused with nothing written."""
    seats_list = logged_in(session, "trio-a", "trio-b", "trio-c")
    game, start = join_all(r, keys, seats_list, 3)
    seats = {s.user: s for s in seats_list}
    dead_checked = []

    def after(now):
        if len(now) == 2 and not dead_checked:  # the first hero just fell
            dead = next(u for u in seats if u not in now)
            ds = seats[dead]
            assert int(r.hget(keys.hero(game, dead), "health")) == 0
            before = snapshot(r)
            for enemy in now:
                assert_error(ds.ask("ATTACK", {"ENEMY_TOKEN": enemy}), "NOT YOUR TURN", "NOT_YOUR_TURN")
            assert_error(ds.ask("FIND", {"PARTICIPANTS": 3}), "ALREADY IN A GAME", "ALREADY_IN_A_GAME")
            assert snapshot(r) == before
            dead_checked.append(dead)

    played = play(r, keys, game, seats, start, after=after)

    dead = dead_checked[0]
    orders = played.orders
    assert len(orders[0]) == 3 and any(len(o) == 2 for o in orders)
    fell = next(i for i, o in enumerate(orders) if len(o) == 2)
    assert all(len(o) == 3 for o in orders[:fell]) and all(dead not in o for o in orders[fell:])
    for u, s in seats.items():
        assert s.turns_received() == [o for o in orders if o[0] == u], u
    last_turn = max(i for i, o in enumerate(orders) if o[0] == dead) if any(o[0] == dead for o in orders) else -1
    assert last_turn < fell  # no notice for the dead after its fall


def test_rejections_mid_game_change_nothing_and_the_game_goes_on(r, keys, session, client):
    """Mid-game NOT YOUR TURN, SELF_ATTACK, ENEMY_NOT_A_MEMBER, ALREADY_IN_A_GAME (and v1 checks) change nothing; the sockets play on."""
    # another full game, to take a member's token from
    elsewhere = [login(client, f"far-{i}") for i in range(2)]
    assert len({find(client, u, 2)["PAYLOAD"]["GAME_TOKEN"] for u in elsewhere}) == 1
    a, b = logged_in(session, "mid-a", "mid-b")
    game, start = join_all(r, keys, [a, b], 2)
    seats = {a.user: a, b.user: b}
    head, other = (seats[u] for u in sorted(seats))
    head.turn(game, [head.user, other.user])

    before = snapshot(r)
    cases = [
        (other, "ATTACK", {"ENEMY_TOKEN": head.user}, "NOT YOUR TURN", "NOT_YOUR_TURN"),
        (head, "ATTACK", {"ENEMY_TOKEN": head.user}, "CANNOT ATTACK YOURSELF", "SELF_ATTACK"),
        (head, "ATTACK", {"ENEMY_TOKEN": elsewhere[0]}, "ENEMY NOT IN THIS GAME", "ENEMY_NOT_A_MEMBER"),
        (head, "ATTACK", {"ENEMY_TOKEN": str(uuid.uuid4())}, "ENEMY NOT IN THIS GAME", "ENEMY_NOT_A_MEMBER"),
        (head, "ATTACK", {"ENEMY_TOKEN": "*"}, "UNKNOWN ENEMY TOKEN", "UNKNOWN_ENEMY_TOKEN"),
        (head, "ATTACK", {"ENEMY_TOKEN": None}, "ENEMY STILL ALIVE", "ENEMY_ALIVE"),
        (head, "ATTACK", {"ENEMY_TOKEN": ""}, "ENEMY STILL ALIVE", "ENEMY_ALIVE"),
        (head, "ATTACK", {}, "MISSING ENEMY TOKEN IN PAYLOAD", None),
        (head, "FIND", {"PARTICIPANTS": 2}, "ALREADY IN A GAME", "ALREADY_IN_A_GAME"),
        (other, "FIND", {"PARTICIPANTS": 3}, "ALREADY IN A GAME", "ALREADY_IN_A_GAME"),
        (head, "LOGIN", {"USER": "mid-a"}, "ALREADY LOGGED IN", "ALREADY_LOGGED_IN"),
        (head, "HERO", {"USER_TOKEN": elsewhere[1]}, "USER NOT IN THIS GAME", "NOT_A_MEMBER"),
    ]
    for s, verb, payload, status, code in cases:
        reply = s.ask(verb, payload)
        assert_error(reply, status, code)
        assert snapshot(r) == before, (verb, payload)

    # both sockets go on: the head's attack lands, the other gets its turn and attacks back
    rec = head.attack(game, other.user)
    assert rec["STATUS"]["ACTION"] == "ATTACK", rec
    if rec["STATUS"]["DETAILS"]["ENEMY_HEALTH_POST"] > 0:
        other.turn(game, [other.user, head.user])
        assert other.attack(game, head.user)["STATUS"]["ACTION"] == "ATTACK"
    assert len(stored_logs(r, keys, game)) == (2 if rec["STATUS"]["DETAILS"]["ENEMY_HEALTH_POST"] > 0 else 1)


def test_waiting_lobby_refuses_find_and_attack(r, keys, settings, session):
    """While its lobby waits, a session's FIND is ALREADY IN A GAME and ATTACK is GAME NOT IN PROGRESS, nothing changes; HERO answers; the game then starts."""
    with contextlib.ExitStack() as stack:
        slow = stack.enter_context(server_thread(settings.replace(lobby_timeout=60.0)))
        open_ = opener(stack, slow.url)
        a, b, c = (Session(open_(SESSION)) for _ in range(3))
        for s, name in ((a, "wait-a"), (b, "wait-b"), (c, "wait-c")):
            s.login(name)
        game = a.find(3)
        assert r.get(keys.status(game)) == "Waiting Lobby"
        spec = hero_spec_expected(r, keys, game, a.user, a.hero)  # reads the roster: before the snapshot
        before = snapshot(r)
        for n in (3, 2):
            assert_error(a.ask("FIND", {"PARTICIPANTS": n}), "ALREADY IN A GAME", "ALREADY_IN_A_GAME")
        assert_error(a.ask("ATTACK", {"ENEMY_TOKEN": b.user}), "GAME NOT IN PROGRESS", "GAME_NOT_IN_PROGRESS")
        assert a.ask("HERO", {"USER_TOKEN": a.user}) == spec
        assert snapshot(r) == before

        assert b.find(3) == game and c.find(3) == game
        expected = start_expected(r, keys, game, {s.user: s.hero for s in (a, b, c)})
        for s in (a, b, c):
            assert s.recv_or_none() == expected, s.frames
        head = min((a, b, c), key=lambda s: s.user)
        head.turn(game, sorted(s.user for s in (a, b, c)))


def test_find_again_after_complete_joins_and_plays_a_new_game(r, keys, session):
    """After COMPLETE, FIND on the same connections joins a fresh game, which starts and plays to COMPLETE with exact notices."""
    a, b = logged_in(session, "again-a", "again-b")
    first, start = join_all(r, keys, [a, b], 2)
    seats = {a.user: a, b.user: b}
    play(r, keys, first, seats, start)

    second, start2 = join_all(r, keys, [b, a], 2)  # the other one opens this time
    assert second != first
    assert r.get(keys.status(first)) == "Completed"
    marks = {u: len(s.frames) for u, s in seats.items()}
    played = play(r, keys, second, seats, start2)
    for u, s in seats.items():
        turns = [f["PAYLOAD"]["ORDER"] for f in s.frames[marks[u]:] if kind(f) == TURN]
        assert turns == [o for o in played.orders if o[0] == u], u
        assert all(f["PAYLOAD"]["GAME_TOKEN"] == second for f in s.frames[marks[u]:] if kind(f) is not None)


@pytest.mark.parametrize("v1_first", [True, False], ids=["v1-opens", "v2-opens"])
@pytest.mark.parametrize("v1_server", ["same", "other"])
def test_v1_and_v2_players_share_one_game(r, keys, settings, game_server, session, v1_first, v1_server):
    """A v1 player (login/find/lobby/action) and a v2 session play one game to COMPLETE, on one server or two."""
    with contextlib.ExitStack() as stack:
        url = game_server.url if v1_server == "same" else stack.enter_context(server_thread(settings)).url
        old = V1Player(opener(stack, url), "classic")
        new = session()
        new.login("modern")
        if v1_first:
            game = old.find(2)
            old.follow(game)  # its lobby waits for the game to fill
            assert new.find(2) == game
        else:
            game = new.find(2)
            assert old.find(2) == game
            old.follow(game)
        start = start_expected(r, keys, game, {old.user: old.hero, new.user: new.hero})
        assert new.recv_or_none() == start, new.frames
        assert old.lobby.recv(TIMEOUT) == start
        seats = {old.user: old, new.user: new}

        played = play(r, keys, game, seats, start)

        assert new.turns_received() == [o for o in played.orders if o[0] == new.user]


def test_sessions_of_one_game_on_two_servers(r, keys, settings, game_server):
    """Two sessions of one game, each on its own server over one Redis, get every notice and play to COMPLETE."""
    with contextlib.ExitStack() as stack:
        other = stack.enter_context(server_thread(settings))
        a = Session(opener(stack, game_server.url)(SESSION))
        b = Session(opener(stack, other.url)(SESSION))
        a.login("here")
        b.login("there")
        game, start = join_all(r, keys, [a, b], 2)
        seats = {a.user: a, b.user: b}

        played = play(r, keys, game, seats, start)

        for u, s in seats.items():
            assert s.turns_received() == [o for o in played.orders if o[0] == u], u
        assert len(played.records) >= 1


def test_lonely_lobby_times_out_then_find_again(r, keys, settings, session):
    """A lobby that does not fill gets TIMED OUT on the session, status 'Timed Out'; FIND on it then joins a new game that starts."""
    a, b = logged_in(session, "lonely", "latecomer")
    stale = a.find(2)
    assert a.recv(timeout=settings.lobby_timeout + TIMEOUT) == notice(stale, TIMED_OUT)
    assert r.get(keys.status(stale)) == "Timed Out"
    a.nothing_queued()
    before = snapshot(r)
    # after TIMED OUT the session has no current game (protocol.md): refused, nothing written
    assert_error(a.ask("ATTACK", {"ENEMY_TOKEN": b.user}), "NOT IN A GAME", "NOT_IN_A_GAME")
    assert_error(a.ask("HERO", {"USER_TOKEN": a.user}), "NOT IN A GAME", "NOT_IN_A_GAME")
    assert snapshot(r) == before

    game, start = join_all(r, keys, [a, b], 2)
    assert game != stale
    assert r.smembers(keys.game(stale)) == {a.user}
    play(r, keys, game, {a.user: a, b.user: b}, start)


def test_hero_answers_spec_for_members_of_the_current_game(r, keys, session, client):
    """HERO for any member of the current game is the v1 HERO SPEC frame and reflects damage; a non-member is refused; nothing is written."""
    outsider = login(client, "outsider")
    trio = logged_in(session, "spec-a", "spec-b", "spec-c")
    game, start = join_all(r, keys, trio, 3)
    head, second, last = sorted(trio, key=lambda s: s.user)
    head.turn(game, [head.user, second.user, last.user])

    # built before the snapshot: reading the roster hash can change its DUMP bytes (rehashing)
    specs = {s.user: hero_spec_expected(r, keys, game, s.user, s.hero) for s in trio}
    before = snapshot(r)
    for asker in trio:
        for s in trio:
            assert asker.ask("HERO", {"USER_TOKEN": s.user}) == specs[s.user]
    assert_error(head.ask("HERO", {"USER_TOKEN": outsider}), "USER NOT IN THIS GAME", "NOT_A_MEMBER")
    assert_error(second.ask("HERO", {"USER_TOKEN": str(uuid.uuid4())}), "USER NOT IN THIS GAME", "NOT_A_MEMBER")
    assert_error(head.ask("HERO", {"USER_TOKEN": "games:*"}), "UNKNOWN USER TOKEN", "UNKNOWN_USER_TOKEN")
    assert_error(last.ask("HERO", {}), "MISSING USER TOKEN IN PAYLOAD", None)
    assert snapshot(r) == before

    # three players: one blow leaves the game running, so no push comes to the attacker or the third
    rec = head.attack(game, last.user)
    assert rec["STATUS"]["ACTION"] == "ATTACK", rec
    post = rec["STATUS"]["DETAILS"]["ENEMY_HEALTH_POST"]
    for asker in (head, last):
        assert asker.ask("HERO", {"USER_TOKEN": last.user}) == hero_spec_expected(r, keys, game, last.user,
                                                                                 last.hero, health=post)
