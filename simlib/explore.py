"""Runs and Redis state as pandas DataFrames, and plot helpers for the notebooks.

``*_frame()`` functions return DataFrames; ``plot_*`` take ``ax=None`` and return the
Axes. pandas and matplotlib are imported here only, so the server and bots start fast.

One vocabulary and one set of types in every frame (and so in the Parquet files a run
writes): an outcome is the game's final status as Redis holds it (``Completed``,
``Timed Out``), not the frame a bot was pushed (``COMPLETE``, ``TIMED OUT``); times are
``datetime64[us, UTC]``; counts and amounts are ``int64``; hero ids are ``Int64``,
pandas' integer that can be missing (a game nobody won has no winning hero).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import pandas as pd

from . import protocol as P
from .game import STATUS
from .keys import Keyspace

__all__ = [
    "OUTCOMES",
    "attacks_frame",
    "players_frame",
    "forfeits_frame",
    "games_frame",
    "run_frames",
    "write_parquet",
    "heroes_frame",
    "redis_games_frame",
    "plot_win_rate",
    "plot_game_length",
    "plot_damage",
    "plot_games_per_minute",
]


#: a bot's last pushed frame → the game's final status in Redis. A frame not listed
#: here passes through unchanged (add new outcomes here, once for every frame).
OUTCOMES = {P.COMPLETE: STATUS.COMPLETED, P.TIMED_OUT: STATUS.TIMED_OUT, P.GAME_LOST: "Game Lost",
            # the bot's own ends: it walked away (--drop-rate), or met a failure mid-game
            "DROPPED": "Dropped", "ERROR": "Error"}
TIME = "datetime64[us, UTC]"
HERO_ID = "Int64"
_ATTACK_TYPES = {"time": TIME, "damage": "int64", "health_prior": "int64", "health_post": "int64"}
_PLAYER_TYPES = {"name": "string", "bot": "string", "participants": "int64", "hero_id": HERO_ID,
                 "attacks": "int64", "damage": "int64", "joined_at": TIME, "ended_at": TIME, "errors": "int64"}
_GAME_TYPES = {"participants": "int64", "players_seen": "int64", "turns": "int64", "damage": "int64",
               "forfeits": "int64",
               "winner_hero": HERO_ID, "started": TIME, "ended": TIME, "duration_s": "float64"}


def attacks_frame(records: Iterable[Mapping]) -> pd.DataFrame:
    """One row per attack from action replies (protocol v1 record shape)."""
    rows = []
    for rec in records:
        d = rec["STATUS"]["DETAILS"]
        rows.append({
            "time": rec["TIMESTAMP"], "game": rec["PAYLOAD"]["GAME_TOKEN"],
            "attacker": rec["PAYLOAD"]["USER_TOKEN"], "enemy": d["ENEMY_TOKEN"],
            "damage": d["ENEMY_DAMAGE"], "health_prior": d["ENEMY_HEALTH_PRIOR"],
            "health_post": d["ENEMY_HEALTH_POST"],
        })
    frame = pd.DataFrame(rows, columns=["time", "game", "attacker", "enemy", "damage", "health_prior", "health_post"])
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    frame = frame.astype(_ATTACK_TYPES)
    frame["killed"] = frame["health_post"] == 0
    return frame.sort_values(["time"], kind="stable").reset_index(drop=True)


def forfeits_frame(records: Iterable[Mapping]) -> pd.DataFrame:
    """One row per forfeit (a FORFEIT record): when, which game, who, and why
    (``TURN TIMEOUT`` or ``DISCONNECTED``)."""
    rows = [{"time": rec["TIMESTAMP"], "game": rec["PAYLOAD"]["GAME_TOKEN"], "user": rec["PAYLOAD"]["USER_TOKEN"],
             "reason": rec["STATUS"]["DETAILS"]["REASON"]} for rec in records]
    frame = pd.DataFrame(rows, columns=["time", "game", "user", "reason"])
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601").astype(TIME)
    return frame.sort_values(["time"], kind="stable").reset_index(drop=True)


def players_frame(games: Iterable[Mapping], killed: set[tuple[str, str]] | None = None) -> pd.DataFrame:
    """One row per (game, player) as the bots saw it; with ``killed`` (from
    :func:`simlib.game.killed`), ``won`` for the completed games' survivors."""
    cols = ["game", "user", "name", "bot", "participants", "hero_id", "outcome", "attacks", "damage",
            "joined_at", "ended_at", "errors"]
    frame = pd.DataFrame([{c: g.get(c) for c in cols} for g in games], columns=cols)
    frame["outcome"] = [OUTCOMES.get(o, o) for o in frame["outcome"]]
    for c in ("joined_at", "ended_at"):
        frame[c] = pd.to_datetime(frame[c], unit="s", utc=True)
    frame = frame.astype(_PLAYER_TYPES)
    if killed is not None:
        frame["won"] = [o == STATUS.COMPLETED and (g, u) not in killed
                        for g, u, o in zip(frame["game"], frame["user"], frame["outcome"])]
    return frame


def games_frame(players: pd.DataFrame, attacks: pd.DataFrame, hero_names: Mapping[str, str] | None = None,
                forfeits: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per game: size, outcome, turns, forfeits, winner and winning hero, timing."""
    if players.empty:
        return pd.DataFrame(columns=["game", "participants", "outcome", "players_seen", "turns", "damage",
                                     "forfeits", "winner", "winner_hero", "winner_hero_name", "started", "ended",
                                     "duration_s"]).astype(_GAME_TYPES)
    # a game's outcome as its players saw it end: a row that saw the game's final status
    # wins over one of a player who left before (as in RunResult.summary)
    saw_end = players["outcome"].isin(STATUS.ENDED)
    outcome = players[saw_end].groupby("game")["outcome"].first()
    per_game = players.groupby("game", sort=False).agg(
        participants=("participants", "first"), outcome=("outcome", "first"),
        players_seen=("user", "nunique"), started=("joined_at", "min"), ended=("ended_at", "max"))
    per_game["outcome"] = outcome.reindex(per_game.index).fillna(per_game["outcome"])
    turns = attacks.groupby("game").agg(turns=("damage", "size"), damage=("damage", "sum"))
    frame = per_game.join(turns).fillna({"turns": 0, "damage": 0})
    gave_up = forfeits.groupby("game").size() if forfeits is not None else pd.Series(dtype="int64")
    frame["forfeits"] = gave_up.reindex(frame.index).fillna(0)
    winners = players[players.get("won", False) == True]  # noqa: E712 (pandas mask)
    frame = frame.join(winners.set_index("game")[["user", "hero_id"]].rename(
        columns={"user": "winner", "hero_id": "winner_hero"}))
    names = hero_names or {}
    frame["winner_hero_name"] = [names.get(str(int(h))) if pd.notna(h) else None for h in frame["winner_hero"]]
    frame["duration_s"] = (frame["ended"] - frame["started"]).dt.total_seconds()
    frame = frame.astype(_GAME_TYPES)
    return frame.reset_index().sort_values("started", kind="stable").reset_index(drop=True)


def run_frames(rows: list[Mapping], attacks: list[Mapping], forfeits: list[Mapping],
               hero_names: Mapping[str, str] | None = None) -> dict[str, pd.DataFrame]:
    """The tables of a run (or of the archive), by name: games, players, attacks, forfeits.
    ``rows``: one per (game, player) as the bots record them; ``attacks`` and ``forfeits``:
    the log records."""
    from .game import killed  # noqa: PLC0415

    attack_frame, forfeit_frame = attacks_frame(attacks), forfeits_frame(forfeits)
    players = players_frame(rows, killed(list(attacks) + list(forfeits)))
    return {"games": games_frame(players, attack_frame, hero_names, forfeit_frame), "players": players,
            "attacks": attack_frame, "forfeits": forfeit_frame}


def write_parquet(frames: Mapping[str, pd.DataFrame], directory) -> list:
    """Each table as ``<name>.parquet`` in ``directory`` (made if missing); their paths."""
    from pathlib import Path  # noqa: PLC0415

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in frames.items():
        path = out / f"{name}.parquet"
        frame.to_parquet(path, index=False)
        paths.append(path)
    return paths


def heroes_frame(client, keys: Keyspace | None = None) -> pd.DataFrame:
    """The ``superheros`` hash as one row per hero: powerstats, health, attack, names."""
    keys = keys or Keyspace()
    rows = []
    for hero_id, raw in client.hgetall(keys.superheros).items():
        hero = json.loads(raw)
        bio = hero.get("biography", {})
        rows.append({"id": int(hero_id), "name": hero.get("name"), "full_name": bio.get("full-name"),
                     "publisher": bio.get("publisher"), "alignment": bio.get("alignment"),
                     **hero.get("powerstats", {})})
    return pd.DataFrame(rows).sort_values("id").set_index("id")


def redis_games_frame(client, keys: Keyspace | None = None) -> pd.DataFrame:
    """Every game still in Redis (``games:players:<n>`` lists), read from the keyspace."""
    keys = keys or Keyspace()
    rows = []
    for list_key in sorted(client.scan_iter(match=keys.players("*"), count=100)):
        n = int(list_key.rsplit(":", 1)[1])
        tokens = client.lrange(list_key, 0, -1)
        pipe = client.pipeline(transaction=False)
        for g in tokens:
            pipe.get(keys.status(g))
            pipe.scard(keys.game(g))
            pipe.llen(keys.logs(g))
            pipe.get(keys.host(g))
        replies = pipe.execute()
        for i, g in enumerate(tokens):
            status, members, turns, host = replies[4 * i: 4 * i + 4]
            rows.append({"game": g, "participants": n, "status": status, "members": members,
                         "turns": turns, "host": host})
    return pd.DataFrame(rows, columns=["game", "participants", "status", "members", "turns", "host"])


# -- plots --------------------------------------------------------------------------

def _ax(ax):
    if ax is None:
        import matplotlib.pyplot as plt  # noqa: PLC0415

        _, ax = plt.subplots(figsize=(6, 4))
    return ax


def plot_win_rate(players: pd.DataFrame, heroes: pd.DataFrame, stat: str = "attack", bins: int = 8, ax=None):
    """Win rate of the heroes that played, by quantile bin of one of their stats."""
    ax = _ax(ax)
    done = players[players["outcome"] == STATUS.COMPLETED].copy()
    done[stat] = done["hero_id"].map(heroes[stat])
    done["bin"] = pd.qcut(done[stat], q=bins, duplicates="drop")
    rate = done.groupby("bin", observed=True)["won"].mean()
    ax.bar(range(len(rate)), rate.values, color="tab:blue")
    ax.set_xticks(range(len(rate)), [f"{iv.left:,.0f}–{iv.right:,.0f}" for iv in rate.index], rotation=45, ha="right")
    ax.set_xlabel(f"hero {stat} (quantile bins)")
    ax.set_ylabel("win rate")
    ax.set_title(f"Win rate by hero {stat}")
    return ax


def plot_game_length(games: pd.DataFrame, ax=None):
    """Histogram of turns per completed game, by participant count."""
    ax = _ax(ax)
    done = games[games["outcome"] == STATUS.COMPLETED]
    for n, group in done.groupby("participants"):
        ax.hist(group["turns"], bins=20, alpha=0.6, label=f"{n} players")
    ax.set_xlabel("turns (attacks) per game")
    ax.set_ylabel("games")
    ax.set_title("Game length")
    ax.legend()
    return ax


def plot_damage(attacks: pd.DataFrame, ax=None):
    """Distribution of damage per attack (log scale: hero stats span decades)."""
    ax = _ax(ax)
    dmg = attacks.loc[attacks["damage"] > 0, "damage"]
    if not dmg.empty:
        import numpy as np  # noqa: PLC0415

        ax.hist(dmg, bins=np.logspace(np.log10(dmg.min()), np.log10(dmg.max() + 1), 30), color="tab:red")
        ax.set_xscale("log")
    ax.set_xlabel("damage per attack")
    ax.set_ylabel("attacks")
    ax.set_title("Damage per attack")
    return ax


def plot_games_per_minute(games: pd.DataFrame, freq: str = "10s", ax=None):
    """Games ended per interval, scaled to games per minute."""
    ax = _ax(ax)
    ended = games.dropna(subset=["ended"]).set_index("ended").sort_index()
    per = ended["game"].resample(freq).count() * (pd.Timedelta("60s") / pd.Timedelta(freq))
    ax.plot(per.index, per.values, marker="o")
    ax.set_xlabel("time")
    ax.set_ylabel("games per minute")
    ax.set_title("Throughput")
    return ax
