"""The answer key of a run: what a correct pipeline computes from the run's records.

:func:`answer_key` reads the records in ``seq`` order (either format) and replays each
game with :func:`simlib.game.replay` from the heroes its start record shows: per game
its size, outcome, winner and winner's hero, attacks and the damage each player dealt;
per hero the games it played and won; the run's totals; and the invariants checked on
the way (every game replays by the rules, damage dealt equals health lost, one survivor
in each completed game). :func:`check` compares a pipeline's own results with the key.
"""

from __future__ import annotations

import collections
import csv
import json
from collections.abc import Iterable
from pathlib import Path

from .game import STATUS, RuleError, is_forfeit, replay

__all__ = ["answer_key", "check", "ANSWER_FILE", "ResultsError"]

ANSWER_FILE = "answer_key.json"


class ResultsError(ValueError):
    """A results file the check cannot read; the message says why."""


def _game(games: dict, token: str) -> dict:
    return games.setdefault(token, {"game": token, "size": None, "status": None, "members": [], "heroes": {},
                                    "records": []})


def answer_key(records: Iterable[dict]) -> dict:
    """The key of a run from its decoded records (see :func:`simlib.stream.decode`)."""
    games: dict[str, dict] = {}
    for rec in records:
        text, task = str(rec.get("log_message", "")), rec.get("task")
        if not isinstance(task, dict):
            continue
        if text.startswith("Player Joined Game"):
            _game(games, task["game_token"])["size"] = task["participants"]
        elif text.startswith("Game Started"):
            g = _game(games, task["game_token"])
            g["members"], g["heroes"] = task["members"], task["heroes"]
        elif text == "Starting Match":  # the original's start: the START frame
            payload = task["PAYLOAD"]
            g = _game(games, payload["GAME_TOKEN"])
            g["members"] = sorted(payload["PARTICIPANTS"])
            g["heroes"] = {u: {k: h[k] for k in ("id", "attack", "health")}
                           for u, h in payload["PARTICIPANTS_HEROS"].items()}
        elif text in ("Attack Completed", "Player Forfeited"):
            _game(games, task["PAYLOAD"]["GAME_TOKEN"])["records"].append(task)
        elif text.startswith("Game Finished"):
            g = _game(games, task["game_token"])
            g["status"], g["members"] = task["status"], g["members"] or sorted(task["members"])
        elif text == "Game Timed Out":
            _game(games, task["PAYLOAD"]["GAME_TOKEN"])["status"] = STATUS.TIMED_OUT

    key_games, violations = [], []
    heroes = collections.defaultdict(lambda: {"games": 0, "wins": 0})
    for token, g in games.items():
        row = {"game": token, "size": g["size"] or len(g["members"]) or None, "outcome": g["status"],
               "winner": None, "winner_hero": None, "attacks": 0, "forfeits": 0,
               "damage_dealt": {u: 0 for u in g["members"]}}
        attacks = [r for r in g["records"] if not is_forfeit(r)]
        row["attacks"], row["forfeits"] = len(attacks), len(g["records"]) - len(attacks)
        for r in attacks:
            row["damage_dealt"][r["PAYLOAD"]["USER_TOKEN"]] = (row["damage_dealt"].get(r["PAYLOAD"]["USER_TOKEN"], 0)
                                                               + int(r["STATUS"]["DETAILS"]["ENEMY_DAMAGE"]))
        for u in g["members"]:
            hero = g["heroes"].get(u)
            if hero is not None:
                heroes[str(hero["id"])]["games"] += 1
        if g["heroes"]:
            try:
                end = replay(g["heroes"], g["records"])
            except RuleError as exc:
                violations.append(("rules", f"game {token}: {exc}"))
                end = None
            if end is not None:
                # a forfeit takes the rest of a hero's health without damage: leave those out
                kept = [u for u in g["heroes"] if not _forfeited(g["records"], u)]
                lost = sum(int(g["heroes"][u]["health"]) - end["health"][u] for u in kept)
                dealt = sum(int(r["STATUS"]["DETAILS"]["ENEMY_DAMAGE"]) for r in attacks
                            if r["STATUS"]["DETAILS"]["ENEMY_TOKEN"] in kept)
                if dealt != lost:
                    violations.append(("damage", f"game {token}: damage dealt {dealt} != health lost {lost}"))
                if g["status"] == STATUS.COMPLETED or (g["status"] is None and end["winner"]):
                    row["outcome"] = STATUS.COMPLETED
                    if end["winner"] is None:
                        violations.append(("survivor", f"game {token}: completed with {len(end['order'])} survivors"))
                    row["winner"] = end["winner"]
        if row["winner"] is not None:
            row["winner_hero"] = int(g["heroes"][row["winner"]]["id"])
            heroes[str(row["winner_hero"])]["wins"] += 1
        key_games.append(row)

    outcomes = collections.Counter(row["outcome"] for row in key_games)
    return {
        "games": sorted(key_games, key=lambda row: row["game"]),
        "heroes": dict(sorted(heroes.items(), key=lambda kv: int(kv[0]))),
        "totals": {"games": len(key_games), "completed": outcomes.get(STATUS.COMPLETED, 0),
                   "timed_out": outcomes.get(STATUS.TIMED_OUT, 0),
                   "attacks": sum(row["attacks"] for row in key_games),
                   "forfeits": sum(row["forfeits"] for row in key_games),
                   "damage": sum(sum(row["damage_dealt"].values()) for row in key_games)},
        "invariants": {"checked_games": sum(1 for g in games.values() if g["heroes"]),
                       "every game replays by the rules": not any(kind == "rules" for kind, _ in violations),
                       "damage dealt equals health lost": not any(kind == "damage" for kind, _ in violations),
                       "one survivor in each completed game": not any(kind == "survivor" for kind, _ in violations),
                       "violations": [text for _, text in violations]},
    }


def _forfeited(records: list[dict], user: str) -> bool:
    """Whether ``user`` forfeited in this game (its health then went to 0 without damage)."""
    return any(is_forfeit(r) and r["PAYLOAD"]["USER_TOKEN"] == user for r in records)


def _read_results(path: Path) -> tuple[str, dict[str, str]]:
    """A pipeline's results: ``("winners", game -> winner)`` or ``("wins", hero -> wins)``."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ResultsError(f"cannot read {path}: {exc.strerror}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError:
            raise ResultsError(f"{path} is not JSON") from None
        if not isinstance(data, dict) or not data:
            raise ResultsError(f"{path}: expected an object of game -> winner or hero -> wins")
        pairs = {str(k): v for k, v in data.items()}
    else:
        rows = list(csv.reader(text.splitlines()))
        if len(rows) < 2 or any(len(r) < 2 for r in rows):
            raise ResultsError(f"{path}: expected a CSV with a header and two columns (game,winner or hero,wins)")
        pairs = {r[0]: r[1] for r in rows[1:]}
    looks_like_games = all(len(k) == 36 and k.count("-") == 4 for k in pairs)
    if looks_like_games:
        return "winners", {k: (None if v in (None, "", "null") else str(v)) for k, v in pairs.items()}
    try:
        return "wins", {k: int(v) for k, v in pairs.items()}
    except (TypeError, ValueError):
        raise ResultsError(f"{path}: hero -> wins needs whole numbers of wins") from None


def check(key: dict, results_path: str | Path, hero_names: dict[str, str] | None = None) -> list[str]:
    """The differences between a pipeline's results and the key, one line each (empty: all
    agree). Winners per game, or wins per hero (by id, or by name with ``hero_names``)."""
    kind, results = _read_results(Path(results_path))
    diffs = []
    if kind == "winners":
        truth = {row["game"]: row["winner"] for row in key["games"]}
        for game in sorted(set(truth) | set(results)):
            if game not in results:
                diffs.append(f"game {game}: missing from the results (the key says {truth[game]})")
            elif game not in truth:
                diffs.append(f"game {game}: not a game of this run (the results say {results[game]})")
            elif results[game] != truth[game]:
                diffs.append(f"game {game}: winner {results[game]}, the key says {truth[game]}")
        return diffs
    by_name = {name: hid for hid, name in (hero_names or {}).items()}
    truth = {hid: h["wins"] for hid, h in key["heroes"].items()}
    for hero, wins in sorted(results.items()):
        hid = hero if hero in truth else by_name.get(hero, hero)
        if truth.get(hid, 0) != wins:
            diffs.append(f"hero {hero}: {wins} wins, the key says {truth.get(hid, 0)}")
    for hid, wins in sorted(truth.items()):
        name = (hero_names or {}).get(hid)
        if wins and hid not in results and name not in results:
            diffs.append(f"hero {hid}: missing from the results (the key says {wins} wins)")
    return diffs
