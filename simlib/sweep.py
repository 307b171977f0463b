"""The clean-up of a finished game, and the sweep that finds what pub/sub dropped.

:class:`Cleaner` does what one "Cleaning Game Records" task asks (``lua/clean.lua``, one
atomic step): an expiry of REDIS_EXPIRY seconds on the member's hero hash, and when the
member is the game's host, on every other key of the game, which also leaves
``games:participants`` and ``games:players:<n>``. The first time a game is cleaned it is
archived in the same step (one entry in ``archive:games``), and a task from the tasks
stream is acknowledged in it too. Every step is idempotent.

Pub/sub drops the tasks published while no worker listens, and those games would keep
their keys forever. :func:`sweep` finds them without any task: a finished game is listed
in ``games:players:<n>`` until its host's task is handled, oldest first, so one pass
reads the head of each list (a bounded number of games) and cleans every game that
ended and has no expiry, exactly as its tasks would have.
"""

from __future__ import annotations

import redis

from .config import Settings
from .game import STATUS
from .keys import TASKS_GROUP, Keyspace
from .scripts import load_script

__all__ = ["Cleaner", "sweep", "PARTICIPANT_COUNTS"]

#: The participant counts a game may have (protocol v1: 2 to 10).
PARTICIPANT_COUNTS = range(2, 11)


class Cleaner:
    """``cleaner(game, user, entry_id="")`` applies one clean-up task; True when ``user``
    is the game's host (so the whole game was expired, and archived if it was not yet).
    On a Redis Cluster the global keys (the lists, the archive, the tasks stream) are in
    other slots than the game's: those steps follow the script."""

    def __init__(self, client: redis.Redis, settings: Settings):
        self.client = client
        self.settings = settings
        self.keys = Keyspace(cluster=settings.redis_cluster)
        self.cluster = settings.redis_cluster
        self._script = client.register_script(load_script("clean", self.cluster))
        self.archived = 0  # games this cleaner archived

    def _call(self, game: str, user: str, entry_id: str, client=None):
        k = self.keys
        keys = [k.status(game)] if self.cluster else [k.status(game), k.participants, k.archive, k.tasks]
        return self._script(keys=keys, args=[game, user, self.settings.redis_expiry, self.settings.archive_maxlen,
                                             entry_id, TASKS_GROUP], client=client)

    def many(self, tasks: list[tuple[str, str, str]]) -> None:
        """Apply several tasks ``(game, user, entry_id)``, in order: on one Redis in one
        pipelined round trip (each still its own atomic script)."""
        if self.cluster or len(tasks) < 2:
            for task in tasks:
                self(*task)
            return
        pipe = self.client.pipeline(transaction=False)
        for game, user, entry_id in tasks:
            self._call(game, user, entry_id, client=pipe)
        for _host, _n, *fields in pipe.execute():
            if fields:
                self.archived += 1

    def __call__(self, game: str, user: str, entry_id: str = "") -> bool:
        k = self.keys
        host, n, *fields = self._call(game, user, entry_id)
        if fields:
            self.archived += 1
        if self.cluster:
            if host:
                self.client.zrem(k.participants, game)
                if n:
                    self.client.lrem(k.players(n), 1, game)
            if fields:
                self.client.xadd(k.archive, dict(zip(fields[::2], fields[1::2])),
                                 maxlen=self.settings.archive_maxlen, approximate=True)
            if entry_id:
                self.client.xack(k.tasks, TASKS_GROUP, entry_id)
        return bool(host)


def sweep(cleaner: Cleaner, limit: int = 1000) -> int:
    """One pass over the oldest ``limit`` games of each ``games:players:<n>``: clean every
    finished game whose status has no expiry (as all its members' tasks would, the host's
    last). Returns how many games it cleaned. Idempotent: a cleaned game has an expiry and
    leaves the list. At most 2 reads per listed game, plus the clean-up of those found."""
    client, keys = cleaner.client, cleaner.keys
    swept = 0
    for n in PARTICIPANT_COUNTS:
        for game in client.lrange(keys.players(n), 0, limit - 1):
            if client.get(keys.status(game)) not in STATUS.ENDED or client.ttl(keys.status(game)) != -1:
                continue
            host = client.get(keys.host(game))
            members = sorted(client.smembers(keys.game(game)))
            for user in [m for m in members if m != host] + ([host] if host else []):
                cleaner(game, user)
            if host is None:  # no host key (never expected): unlist it all the same
                client.zrem(keys.participants, game)
                client.lrem(keys.players(n), 1, game)
            swept += 1
    return swept
