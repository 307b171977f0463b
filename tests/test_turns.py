"""Turns: event-driven, exact notices; only the head of the order acts; the log replays to
the final state; players of one game on different servers; SERVER_SLEEP pacing."""

from __future__ import annotations

import contextlib
import pytest

from conftest import Client, find, login, snapshot
from simlib import game as rules
from simlib import protocol as P
from simlib.launch import start_server
from v1play import TIMEOUT, action_frame, drain, kind, order, stored_logs

TURN, START, COMPLETE = "USER'S TURN", "START", "COMPLETE"


class Seat:
    """One player's connections, all to its own server, kept open for the whole game."""

    def __init__(self, stack: contextlib.ExitStack, url: str, name: str):
        self.url = url
        open_ = lambda route: stack.enter_context(Client(url, route))  # noqa: E731
        self.user = login(open_, name)
        self.open = open_
        self.lobby = self.hero = self.action = None
        self.turns = 0  # USER'S TURN notices received while playing

    def join(self, n: int) -> str:
        return find(self.open, self.user, n)["PAYLOAD"]["GAME_TOKEN"]

    def follow(self, game: str) -> dict:
        """Open the lobby (and the hero/action connections); returns the START frame."""
        self.lobby, self.hero, self.action = (self.open(route) for route in (P.LOBBY, P.HERO, P.ACTION))
        start = self.lobby.ask({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": self.user}})
        assert kind(start) == START, start
        return start


def play_by_hand(r, keys, game: str, seats: dict[str, Seat]) -> list[str]:
    """Play until one hero stands, the way a v1 bot does, checking each step.

    The player on turn must get exactly its USER'S TURN notice; every other member is
    refused (NOT YOUR TURN) before it acts; it reads the heroes on its own server and
    attacks the last living enemy in the order (so the first two in the order always get
    a turn). Returns the attackers in order."""
    attackers = []
    now = rules.initial_order(seats)
    for _ in range(2000):
        if len(now) == 1:
            return attackers
        head = now[0]
        seat = seats[head]
        assert seat.lobby.recv(TIMEOUT) == {"PAYLOAD": {"GAME_TOKEN": game}, "STATUS": {"GAME": TURN}}
        seat.turns += 1
        assert order(r, keys, game) == now
        before = snapshot(r)
        for other in seats.values():
            if other.user != head:  # dead or alive, not on turn: refused, nothing written
                refused = other.action.ask(action_frame(game, other.user, head))
                assert refused["STATUS"] == "NOT YOUR TURN", refused
        assert snapshot(r) == before
        heroes = {}
        for u in seats:
            if u != head:
                heroes[u] = seat.hero.ask({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": u}})["PAYLOAD"]["HERO"]
        enemy = next(u for u in reversed(now[1:]) if heroes[u]["health"] > 0)
        record = seat.action.ask(action_frame(game, head, enemy))
        assert record["STATUS"]["ACTION"] == "ATTACK", record
        now = rules.after_attack(now, head, enemy, record["STATUS"]["DETAILS"]["ENEMY_HEALTH_POST"])
        attackers.append(head)
    raise AssertionError("game did not end within 2000 attacks")


def finish_checks(r, keys, game: str, seats: dict[str, Seat], starts: dict[str, dict], attackers: list[str]):
    """After the last attack: COMPLETE once to everyone and no stray notice; nothing more is
    accepted; the stored log replays to the final hero hashes."""
    for u, seat in seats.items():
        rest = drain(seat.lobby)
        assert [kind(f) for f in rest] == [COMPLETE], (u, rest)
        assert seat.turns == attackers.count(u), u
    assert r.get(keys.status(game)) == "Completed"

    winner = order(r, keys, game)
    before = snapshot(r)
    for u, seat in seats.items():
        for enemy in seats:
            if enemy != u:
                refused = seat.action.ask(action_frame(game, u, enemy))
                assert refused["STATUS"] == "GAME COMPLETED", refused
    assert snapshot(r) == before

    heroes = next(iter(starts.values()))["PAYLOAD"]["PARTICIPANTS_HEROS"]
    logs = stored_logs(r, keys, game)
    assert [rec["PAYLOAD"]["USER_TOKEN"] for rec in logs] == attackers
    replayed = rules.replay(heroes, logs)
    assert replayed["health"] == {u: int(r.hget(keys.hero(game, u), "health")) for u in seats}
    assert [replayed["winner"]] == replayed["order"] == winner
    assert sum(1 for h in replayed["health"].values() if h > 0) == 1


def test_three_player_game_by_hand_notices_are_exact(r, keys, game_server):
    """In a 3-player game each player gets exactly one USER'S TURN per turn, in rotation; only the head acts."""
    with contextlib.ExitStack() as stack:
        seats = [Seat(stack, game_server.url, f"hand-{i}") for i in range(3)]
        game = {s.join(3) for s in seats}.pop()
        by_user = {s.user: s for s in seats}
        starts = {s.user: s.follow(game) for s in seats}
        assert len({str(f) for f in starts.values()}) == 1  # every member sees the same START

        attackers = play_by_hand(r, keys, game, by_user)

        assert attackers[:2] == sorted(by_user)[:2]  # the sorted order, head first
        finish_checks(r, keys, game, by_user, starts, attackers)


def test_dead_hero_cannot_act_and_leaves_the_order(r, keys, game_server):
    """Once a hero falls it is out of the order, and every action it tries is refused with nothing written."""
    with contextlib.ExitStack() as stack:
        seats = [Seat(stack, game_server.url, f"fallen-{i}") for i in range(3)]
        game = {s.join(3) for s in seats}.pop()
        for s in seats:
            s.follow(game)
        act = seats[0].action
        now = order(r, keys, game)
        while len(now) == 3:  # the head keeps hitting the last in the order until someone falls
            act.ask(action_frame(game, now[0], now[-1]))
            now = order(r, keys, game)
        dead = next(s.user for s in seats if s.user not in now)
        assert int(r.hget(keys.hero(game, dead), "health")) == 0
        before = snapshot(r)
        # a dead hero is never on turn, so each attack is NOT YOUR TURN, on itself too; "no enemy left"
        # (None) is judged before the turn (lua/action.lua), and two enemies live
        expected = {u: ("NOT YOUR TURN", "NOT_YOUR_TURN") for u in [*now, dead]}
        expected[None] = ("ENEMY STILL ALIVE", "ENEMY_ALIVE")
        for target, (status, code) in expected.items():
            refused = act.ask(action_frame(game, dead, target))
            assert (refused["STATUS"], refused.get("ERROR", {}).get("CODE")) == (status, code), (target, refused)
        assert snapshot(r) == before


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_players_of_one_game_on_different_servers(r, keys, settings, game_server, mode):
    """Two servers on one Redis: each player uses only its own server, and the game completes with every turn notified."""
    with contextlib.ExitStack() as stack:
        other = stack.enter_context(start_server(settings, port=0, mode=mode, stdout_level="CRITICAL"))
        # know the tokens first, so the first two in the turn order sit on different servers;
        # each seat then logs in again (same token) and plays only on its own server
        names = {login(lambda route: stack.enter_context(Client(other.url, route)), f"{mode}-far-{i}"): f"{mode}-far-{i}"
                 for i in range(3)}
        urls = [game_server.url, other.url]
        seats = [Seat(stack, urls[i % 2], names[u]) for i, u in enumerate(sorted(names))]
        assert [s.user for s in seats] == sorted(names)
        games = [s.join(3) for s in seats]
        assert len(set(games)) == 1
        game = games[0]
        by_user = {s.user: s for s in seats}
        starts = {s.user: s.follow(game) for s in seats}

        attackers = play_by_hand(r, keys, game, by_user)

        assert attackers[:2] == [seats[0].user, seats[1].user]  # both servers told their player
        finish_checks(r, keys, game, by_user, starts, attackers)


def test_server_sleep_paces_turns_through_in_progress(r, keys, settings):
    """With SERVER_SLEEP > 0 a game is In-Progress right after an action and Waiting Player once the notice is sent."""
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(start_server(settings.replace(server_sleep=0.5), port=0))
        seats = {s.user: s for s in (Seat(stack, server.url, f"paced-{i}") for i in range(3))}
        game = {s.join(3) for s in seats.values()}.pop()
        assert r.get(keys.status(game)) == "Starting"
        for s in seats.values():
            s.follow(game)
        first = seats[order(r, keys, game)[0]]
        assert kind(first.lobby.recv(TIMEOUT)) == TURN  # the first turn is not paced
        assert r.get(keys.status(game)) == "Waiting Player"

        # three players: one blow fells at most one, so a next turn always follows
        record = first.action.ask(action_frame(game, first.user, order(r, keys, game)[1]))
        assert record["STATUS"]["ACTION"] == "ATTACK"
        assert r.get(keys.status(game)) == "In-Progress"  # the next notice waits SERVER_SLEEP
        second = seats[order(r, keys, game)[0]]
        assert kind(second.lobby.recv(TIMEOUT)) == TURN
        assert r.get(keys.status(game)) == "Waiting Player"


def test_a_turn_event_that_overtakes_the_start_never_comes_before_start(r, keys, game_server):
    """A follower whose start event is still on its way (as on a cluster, where it crosses the cluster bus while a server's own action events arrive at once) gets START before any turn notice."""
    with contextlib.ExitStack() as stack:
        seats = sorted([Seat(stack, game_server.url, "one"), Seat(stack, game_server.url, "two")],
                       key=lambda s: s.user)
        head, other = seats  # the head of the turn order plays first
        game = head.join(2)
        lobby = stack.enter_context(Client(game_server.url, P.LOBBY))
        lobby.send({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": head.user}})
        # the lobby follows a game still filling; an event of a later turn reaches it first
        early = {"t": "turn", "g": game, "u": head.user, "n": 1, "o": [head.user, other.user]}
        assert r.publish(keys.events_channel, P.dumps(early)) == 1  # the server's subscription has it
        assert other.join(2) == game
        first, second = lobby.recv(TIMEOUT), lobby.recv(TIMEOUT)
        assert (kind(first), kind(second)) == (START, TURN), (first, second)
        assert first["PAYLOAD"]["PARTICIPANTS"] == [head.user, other.user]
