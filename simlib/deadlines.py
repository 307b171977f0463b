"""Deadlines that do not depend on any one process.

Every game that waits for something has a deadline in Redis (``games:<g>:deadline``,
indexed in the sorted set ``games:deadlines``): a lobby filling, the player on turn.
Every game server and every worker runs a :class:`DeadlineWatcher`: a timer set to the
earliest deadline in the index. When it fires, the watcher asks Redis which deadlines
are due and applies each with one atomic script (``lua/expire.lua``): a lobby is Timed
Out, a player on turn forfeits. Whichever live process gets there first applies it; the
others find nothing left to do. So the games of a crashed server still end, and so do
those of players who vanished.

The watcher sleeps until the earliest deadline, but never longer than the shortest
time-out of its settings: a deadline another process sets is at least that far away
when it is set, so it is never missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis

from .gamedb import GameDB

__all__ = ["DeadlineWatcher"]

log = logging.getLogger("lib.server.lobby")


class DeadlineWatcher:
    """Applies due deadlines until cancelled (``await watcher.run()`` in a task).
    ``on_events`` gets the events each applied deadline published (a server hands them
    to its own followers at once)."""

    def __init__(self, db: GameDB, on_events: Callable[[list[str]], None] | None = None, batch: int = 100):
        self.db = db
        self.on_events = on_events
        self.batch = batch
        settings = db.settings
        self.longest_sleep = max(min(settings.lobby_timeout, settings.turn_timeout), 0.05)
        self.applied = {"TIMEOUT": 0, "FORFEIT": 0}  # deadlines this process applied
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """Look again now (a deadline may have been set sooner than the watcher expects)."""
        self._wake.set()

    async def run(self) -> None:
        retry = 0.1
        while True:
            try:
                now, first, due = await self.db.due(self.batch)
                for game in due:
                    await self._apply(game)
                retry = 0.1
                if due:  # more may be due now: look again at once
                    continue
                sleep = self.longest_sleep if first < 0 else min(max(first - now, 0) / 1000, self.longest_sleep)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                log.debug("deadline watcher: Redis unavailable (%s); retrying in %.1f s", exc, retry)
                sleep, retry = retry, min(retry * 2, 2.0)
            except redis.ResponseError as exc:  # a script failed: a bug, not a fault to retry fast
                log.error("deadline watcher: %s", exc)
                sleep = self.longest_sleep
            await self._sleep(sleep)

    async def _apply(self, game: str) -> None:
        done = await self.db.expire(game)
        if done.kind in self.applied:
            self.applied[done.kind] += 1
        if done.events and self.on_events is not None:
            self.on_events(done.events)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
