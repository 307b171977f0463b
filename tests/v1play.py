"""Playing v1 games by hand in tests: users, games, attacks, lobby frames.

Shared by test_protocol, test_routes, test_matchmaking and test_turns (not a test
module itself). Everything waits on frames with bounded timeouts, never on sleeps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed

from conftest import find, login

TIMEOUT = 5.0


@dataclass
class Game:
    """A game set up by a test: its token, members (sorted: the turn order) and heroes."""

    token: str
    users: list[str]
    heroes: dict[str, int] = field(default_factory=dict)  # user -> hero id, from the find replies
    records: list[dict] = field(default_factory=list)  # attack replies, in order

    @property
    def head(self) -> str:
        return self.users[0]


def new_users(open_, prefix: str, count: int) -> list[str]:
    return [login(open_, f"{prefix}-{i}") for i in range(count)]


def start_game(open_, n: int, prefix: str) -> Game:
    """Log in ``n`` new users and let each find an ``n``-player game: one full game."""
    users = new_users(open_, prefix, n)
    replies = [find(open_, u, n) for u in users]
    tokens = {rep["PAYLOAD"]["GAME_TOKEN"] for rep in replies}
    assert len(tokens) == 1, f"{n} finds in a row did not fill one game: {replies}"
    heroes = {u: rep["PAYLOAD"]["HERO_ID"] for u, rep in zip(users, replies)}
    return Game(tokens.pop(), sorted(users), heroes)


def action_frame(game: str, user, enemy, action="ATTACK") -> dict:
    return {"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": user, "ENEMY_TOKEN": enemy, "ACTION": action}}


def order(r, keys, game: str) -> list[str]:
    return r.lrange(keys.order(game), 0, -1)


def attack(conn, game: str, user: str, enemy) -> dict:
    """One action request; asserts it was accepted as an attack and returns the record."""
    reply = conn.ask(action_frame(game, user, enemy), TIMEOUT)
    assert isinstance(reply.get("STATUS"), dict) and reply["STATUS"].get("ACTION") == "ATTACK", reply
    return reply


def play(conn, r, keys, game: Game, *, until=lambda order: len(order) <= 1, limit: int = 2000) -> list[dict]:
    """The player on turn attacks the next one in the order until ``until(order)`` holds."""
    records = []
    for _ in range(limit):
        now = order(r, keys, game.token)
        if until(now):
            game.records.extend(records)
            return records
        records.append(attack(conn, game.token, now[0], now[1]))
    raise AssertionError(f"game {game.token} still going after {limit} attacks")


def drain(conn, timeout: float = TIMEOUT) -> list[dict]:
    """Every frame until the server closes the connection (bounded per frame)."""
    frames = []
    while True:
        try:
            frames.append(conn.recv(timeout))
        except ConnectionClosed:
            return frames


def kind(frame: dict) -> str | None:
    """``START`` / ``USER'S TURN`` / ``COMPLETE`` / ``TIMED OUT`` of a lobby frame."""
    status = frame.get("STATUS")
    return status.get("GAME") if isinstance(status, dict) else None


def stored_logs(r, keys, game: str) -> list[dict]:
    return [json.loads(x) for x in r.lrange(keys.logs(game), 0, -1)]


def hero_hash(r, keys, game: str, user: str) -> dict:
    return {k: int(v) for k, v in r.hgetall(keys.hero(game, user)).items()}


def roster_numbers(r, keys, hero_id) -> dict:
    """``{"attack", "health"}`` of a hero as cleaned in the ``superheros`` hash."""
    stats = json.loads(r.hget(keys.superheros, str(hero_id)))["powerstats"]
    return {"attack": stats["attack"], "health": stats["health"]}

