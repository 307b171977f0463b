"""Pure game rules over plain data: no I/O, no Redis, no sockets.

The server applies these rules atomically inside Redis (``simlib/lua/*.lua``), so
the Lua scripts mirror the functions here; the test-suite replays every logged
attack through :func:`replay` to prove the two agree.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

__all__ = [
    "POWERSTATS",
    "STATUS",
    "clean_stat",
    "clean_hero",
    "hero_numbers",
    "hit",
    "initial_order",
    "after_attack",
    "after_forfeit",
    "is_forfeit",
    "replay",
    "killed",
    "RuleError",
]

POWERSTATS = ("intelligence", "strength", "speed", "durability", "power", "combat")


class STATUS:
    """The exact status strings of a game's life (keyspace contract)."""

    WAITING_LOBBY = "Waiting Lobby"
    STARTING = "Starting"
    IN_PROGRESS = "In-Progress"
    WAITING_PLAYER = "Waiting Player"
    COMPLETED = "Completed"
    TIMED_OUT = "Timed Out"

    PLAYING = (STARTING, IN_PROGRESS, WAITING_PLAYER)
    ENDED = (COMPLETED, TIMED_OUT)


class RuleError(ValueError):
    """A move the rules do not allow."""


def clean_stat(value) -> int:
    """A powerstat as an int: ``"null"``, ``"0"``, empty or non-numeric become 1."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return 1
    return number if number > 0 else 1


def hero_numbers(powerstats: Mapping) -> tuple[int, int]:
    """``(health, attack)`` of a hero from its raw or cleaned powerstats."""
    s = {name: clean_stat(powerstats.get(name)) for name in POWERSTATS}
    health = s["intelligence"] * s["strength"] * s["durability"] * 10
    attack = s["speed"] * s["power"] * s["combat"]
    return health, attack


def clean_hero(record: Mapping) -> tuple[str, dict]:
    """``(id, stored record)``: the API record without ``id``/``response``, stats as ints,
    ``health`` and ``attack`` added inside ``powerstats``."""
    if not isinstance(record, Mapping):
        raise RuleError(f"a hero record must be an object, got {type(record).__name__}")
    hero_id = str(record.get("id", "")).strip()
    if not hero_id.isdigit():
        raise RuleError(f"hero record has no numeric id: {str(record)[:80]}")
    if not isinstance(record.get("powerstats"), Mapping):
        raise RuleError(f"hero {hero_id} has no powerstats object")
    stored = {k: copy.deepcopy(v) for k, v in record.items() if k not in ("id", "response")}
    stats = {name: clean_stat(record["powerstats"].get(name)) for name in POWERSTATS}
    stats["health"], stats["attack"] = hero_numbers(stats)
    stored["powerstats"] = stats
    return hero_id, stored


def hit(health: int, attack: int) -> int:
    """The enemy's health after one attack (floor 0)."""
    return max(int(health) - int(attack), 0)


def initial_order(members: Iterable[str]) -> list[str]:
    """Turn order: the sorted user tokens; the head plays first."""
    return sorted(members)


def after_attack(order: list[str], attacker: str, enemy: str, enemy_health_post: int) -> list[str]:
    """The order after ``attacker`` hit ``enemy``: rotate, and drop the enemy if dead."""
    if not order or order[0] != attacker:
        raise RuleError("not this player's turn")
    if enemy == attacker or enemy not in order:
        raise RuleError("enemy is not a living member of this game")
    rotated = order[1:] + order[:1]
    if enemy_health_post <= 0:
        rotated = [u for u in rotated if u != enemy]
    return rotated


def after_forfeit(order: list[str], user: str) -> list[str]:
    """The order after ``user`` forfeited: it leaves, and the others keep their places (when
    it was on turn, the next one is)."""
    if user not in order:
        raise RuleError("only a living player can forfeit")
    return [u for u in order if u != user]


def is_forfeit(record: Mapping) -> bool:
    return record["STATUS"].get("ACTION") == "FORFEIT"


def replay(heroes: Mapping[str, Mapping], attacks: Iterable[Mapping]) -> dict:
    """Replay a game's log against the starting heroes and check every rule.

    ``heroes``: user token -> {"attack": a, "health": h}; ``attacks``: the log's records in
    order: attacks (the action reply of protocol v1) and forfeits (``ACTION`` ``FORFEIT``:
    the player's health goes to 0 and it leaves the order). Returns ``{"health": {...},
    "order": [...], "winner": token-or-None}``; raises :class:`RuleError` at the first
    record that breaks a rule (out of turn, dead attacker, wrong damage, ...).
    """
    health = {u: int(h["health"]) for u, h in heroes.items()}
    attack = {u: int(h["attack"]) for u, h in heroes.items()}
    order = initial_order(health)
    for i, rec in enumerate(attacks):
        attacker = rec["PAYLOAD"]["USER_TOKEN"]
        if len(order) <= 1:
            raise RuleError(f"record {i} after the game was decided")
        if is_forfeit(rec):
            order = after_forfeit(order, attacker)
            health[attacker] = 0
            continue
        details = rec["STATUS"]["DETAILS"]
        enemy = details["ENEMY_TOKEN"]
        if health.get(attacker, 0) <= 0:
            raise RuleError(f"attack {i} by a dead hero")
        prior = health.get(enemy)
        if prior is None or prior <= 0:
            raise RuleError(f"attack {i} on a dead or unknown enemy")
        post = hit(prior, attack[attacker])
        if (details["ENEMY_HEALTH_PRIOR"], details["ENEMY_HEALTH_POST"], details["ENEMY_DAMAGE"]) != (
            prior, post, prior - post
        ):
            raise RuleError(f"attack {i} has the wrong damage: {details}")
        order = after_attack(order, attacker, enemy, post)
        health[enemy] = post
    winner = order[0] if len(order) == 1 else None
    return {"health": health, "order": order, "winner": winner}


def killed(records: Iterable[Mapping]) -> set[tuple[str, str]]:
    """``(game, user)`` of every hero killed in these attack records, or that forfeited.
    In a completed game, the one member not in this set won."""
    out = set()
    for r in records:
        if is_forfeit(r):
            out.add((r["PAYLOAD"]["GAME_TOKEN"], r["PAYLOAD"]["USER_TOKEN"]))
        elif r["STATUS"]["DETAILS"]["ENEMY_HEALTH_POST"] == 0:
            out.add((r["PAYLOAD"]["GAME_TOKEN"], r["STATUS"]["DETAILS"]["ENEMY_TOKEN"]))
    return out
