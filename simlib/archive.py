"""The archive: one stream entry per finished game, kept after its keys expire.

The worker appends an entry to ``archive:games`` the first time it cleans a game
(``lua/clean.lua``): the game's members, their heroes as they ended, its status, its
winner and its whole log. :func:`archive_frames` turns those entries into the tables a
run writes with ``--out`` (games, players, attacks, forfeits), so a pipeline or a
notebook reads finished games the same way, whether they came from a run or from the
archive; ``simlib archive --out DIR`` writes them as Parquet.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import pandas as pd
import redis

from .game import is_forfeit
from .keys import Keyspace

__all__ = ["read_archive", "archive_frames"]


def read_archive(client: redis.Redis, keys: Keyspace | None = None, count: int | None = None) -> list[dict]:
    """The archive's entries, oldest first (the last ``count`` only, if given), decoded:
    members, heroes and logs as Python objects; ``archived_at`` from the entry id."""
    keys = keys or Keyspace()
    if count is None:
        raw = client.xrange(keys.archive)
    else:
        raw = list(reversed(client.xrevrange(keys.archive, count=count)))
    entries = []
    for entry_id, fields in raw:
        entries.append({"id": entry_id, "archived_at": int(entry_id.split("-")[0]) / 1000,
                        "game": fields["game_token"], "status": fields["status"], "winner": fields["winner"] or None,
                        "participants": int(fields["participants"]) if fields["participants"] else None,
                        "host": fields["host"], "members": json.loads(fields["members"]),
                        "heroes": json.loads(fields["heroes"]), "logs": json.loads(fields["logs"])})
    return entries


def _rows(entry: Mapping) -> list[dict]:
    """One row per member, in the shape the bots record (see :class:`simlib.player.Recorder`)."""
    times = [rec["TIMESTAMP"] for rec in entry["logs"]]
    ended = pd.Timestamp(times[-1]).timestamp() if times else entry["archived_at"]
    started = pd.Timestamp(times[0]).timestamp() if times else None
    rows = []
    for user in entry["members"]:
        mine = [rec for rec in entry["logs"] if rec["PAYLOAD"]["USER_TOKEN"] == user and not is_forfeit(rec)]
        hero = entry["heroes"].get(user) or {}
        rows.append({"game": entry["game"], "user": user, "name": None, "bot": None,
                     "participants": entry["participants"], "hero_id": hero.get("id"), "outcome": entry["status"],
                     "attacks": len(mine), "damage": sum(int(r["STATUS"]["DETAILS"]["ENEMY_DAMAGE"]) for r in mine),
                     "joined_at": started, "ended_at": ended, "errors": 0})
    return rows


def archive_frames(entries: Iterable[Mapping], hero_names: Mapping[str, str] | None = None) -> dict[str, pd.DataFrame]:
    """The archived games as the tables of a run: games, players, attacks, forfeits.
    (A player's ``joined_at`` is its game's first record: the archive keeps no join time.)"""
    from .explore import run_frames  # noqa: PLC0415

    entries = list(entries)
    rows = [row for e in entries for row in _rows(e)]
    records = [rec for e in entries for rec in e["logs"]]
    return run_frames(rows, [r for r in records if not is_forfeit(r)], [r for r in records if is_forfeit(r)],
                      hero_names)
