"""The clean-up of a finished game, and the sweep that finds what pub/sub dropped.

:func:`clean` is what one "Cleaning Game Records" task does (the worker's job): an
expiry of REDIS_EXPIRY seconds on the member's hero hash, and when the member is the
game's host, on every other key of the game, which also leaves ``games:participants``
and ``games:players:<n>``. Every step is idempotent.

Pub/sub drops the tasks published while no worker listens, and those games would keep
their keys forever. :func:`sweep` finds them without any task: a finished game is
listed in ``games:players:<n>`` until its host's task is handled, oldest first, so one
pass reads the head of each list (a bounded number of games) and cleans every game
that ended and has no expiry, exactly as its tasks would have.
"""

from __future__ import annotations

import redis

from .game import STATUS
from .keys import Keyspace

__all__ = ["clean", "sweep", "PARTICIPANT_COUNTS"]

#: The participant counts a game may have (protocol v1: 2 to 10).
PARTICIPANT_COUNTS = range(2, 11)


def clean(client: redis.Redis, keys: Keyspace, ttl: int, game: str, user: str) -> bool:
    """Apply one clean-up task (``user``'s records in ``game``); True when ``user`` is the
    host (so the whole game was expired and unlisted). Harmless for keys already gone."""
    host, n = client.mget(keys.host(game), keys.game_participants(game))
    pipe = client.pipeline(transaction=False)
    pipe.expire(keys.hero(game, user), ttl)
    if host == user:
        for key in keys.game_keys(game):
            pipe.expire(key, ttl)
        pipe.zrem(keys.participants, game)
        if n is not None:
            pipe.lrem(keys.players(n), 1, game)
    pipe.execute()
    return host == user


def sweep(client: redis.Redis, keys: Keyspace, ttl: int, limit: int = 1000) -> int:
    """One pass over the oldest ``limit`` games of each ``games:players:<n>``: clean every
    finished game whose status has no expiry (as all its members' tasks would). Returns
    how many games it cleaned. Idempotent: a cleaned game has an expiry and leaves the list."""
    swept = 0
    for n in PARTICIPANT_COUNTS:
        games = client.lrange(keys.players(n), 0, limit - 1)
        for game in games:
            status, ttl_left = client.get(keys.status(game)), client.ttl(keys.status(game))
            if status not in STATUS.ENDED or ttl_left != -1:
                continue
            members = sorted(client.smembers(keys.game(game)))
            host = client.get(keys.host(game))
            for user in [m for m in members if m != host] + [host] * (host is not None):
                clean(client, keys, ttl, game, user)
            if host is None:  # no host key (never expected): unlist the game all the same
                client.zrem(keys.participants, game)
                client.lrem(keys.players(n), 1, game)
                for key in keys.game_keys(game, members):
                    client.expire(key, ttl)
            swept += 1
    return swept
