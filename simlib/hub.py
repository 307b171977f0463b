"""What the connections of one game server share: who follows which game, and the events
that wake them.

The Lua scripts announce each start, turn, end and time-out on the events channel
(``simlib:events``); every server process subscribes once and hands each event to the
players it holds that follow that game (:class:`Follower`). An event this process
caused itself (its own action script returned it) is handed over at once, and its pub/sub
copy is dropped unread when it arrives. When the subscription drops (Redis restarted,
say), the hub subscribes again and has every follower re-read its game: events published
in the gap are lost, the state in Redis is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import redis

from . import mux
from . import protocol as P
from .gamedb import GameDB

__all__ = ["Hub", "Follower"]

log = logging.getLogger("lib.server.lobby")

#: The pub/sub copies of events this process delivered itself, kept until they arrive.
#: A copy can come first (the subscription and the script call are two connections), and
#: then its entry waits for nothing: the oldest entries go past this many.
DELIVERED_LIMIT = 4096
#: Start events kept for v2 joins in flight (a session's own join may start its game
#: before the session follows it): the newest this many.
EARLY_LIMIT = 4096


@dataclass(eq=False)
class Follower:
    """One player following one game: a v1 lobby connection, or a v2 session's current
    game. The events of its game land in ``queue``."""

    game: str
    user: str
    ws: object
    queue: asyncio.Queue
    v2: bool = False  # a session: turn notices carry the living order
    started: bool = False  # START sent
    notified: int = -1  # log length at the last turn notice sent
    ended: str | None = None  # how the game ended for this player (COMPLETE, TIMED OUT, GAME LOST)
    heard: float = 0.0  # loop time of the last event handed to it (or when it began following)


class Hub:
    """The followers of this server's games, the events subscription, and the START frame
    of each game (the same for every member, so built once per game)."""

    def __init__(self, db: GameDB, on_resync: Callable[[], object] | None = None):
        self.db = db
        self.keys = db.keys
        self.on_resync = on_resync  # called (may return an awaitable) after a lost subscription came back
        self._followers: dict[str, set[Follower]] = {}
        self._starts: dict[str, asyncio.Future] = {}
        self._joining = 0
        self._early: dict[str, dict] = {}
        self._delivered: dict[str, None] = {}
        self._events = mux.for_url(db.settings.redis_url)
        self._events.on_lost = self._lost
        self._resubscribing: asyncio.Task | None = None

    async def start(self) -> None:
        await self._events.subscribe(self.keys.events_channel, self._message)

    async def aclose(self) -> None:
        await self._events.aclose()
        if self._resubscribing is not None:
            self._resubscribing.cancel()

    # -- followers -----------------------------------------------------------------------
    def follow(self, follower: Follower) -> None:
        follower.heard = asyncio.get_running_loop().time()
        self._followers.setdefault(follower.game, set()).add(follower)

    def unfollow(self, follower: Follower) -> None:
        group = self._followers.get(follower.game)
        if group is not None:
            group.discard(follower)
            if not group:  # this process holds no follower of that game any more
                del self._followers[follower.game]
                self._starts.pop(follower.game, None)

    def followers(self) -> Iterator[Follower]:
        for group in self._followers.values():
            yield from group

    @property
    def games(self) -> int:
        """Games this server's players follow now."""
        return len(self._followers)

    # -- events --------------------------------------------------------------------------
    def local(self, events: Iterable[str]) -> None:
        """Events this process's own script call published: deliver them now, and drop
        their pub/sub copies when those arrive."""
        for text in events:
            self._delivered[text] = None
            if len(self._delivered) > DELIVERED_LIMIT:
                del self._delivered[next(iter(self._delivered))]
            self._deliver(json.loads(text))

    def _message(self, data: str) -> None:
        """One message on the events channel."""
        if data in self._delivered:  # this process caused it, and delivered it then
            del self._delivered[data]
            return
        try:
            event = json.loads(data)
        except ValueError:
            return
        if isinstance(event, dict):
            self._deliver(event)

    def _deliver(self, event: dict) -> None:
        group = self._followers.get(event.get("g"))
        if group:
            now = asyncio.get_running_loop().time()
            for follower in group:
                follower.heard = now
                follower.queue.put_nowait(event)
        # a session whose join is in flight may belong to this game too (even when other
        # members follow it here already): keep the start for it to claim
        if self._joining and event.get("t") == "start":
            self._early[event["g"]] = event
            if len(self._early) > EARLY_LIMIT:  # other servers' games: keep the newest only
                del self._early[next(iter(self._early))]

    @contextlib.contextmanager
    def joining(self) -> Iterator[None]:
        """Around a v2 join: start events that come meanwhile are kept (see :meth:`early`)."""
        self._joining += 1
        try:
            yield
        finally:
            self._joining -= 1
            if not self._joining:
                self._early.clear()

    def early(self, game: str) -> dict | None:
        """A start event of ``game`` that came while a join was in flight. Not popped:
        another member may be joining too."""
        return self._early.get(game)

    def _lost(self, exc: Exception | None) -> None:
        log.warning("Event subscription lost (%s); subscribing again", exc)
        self._resubscribing = asyncio.ensure_future(self._resubscribe())

    async def _resubscribe(self) -> None:
        """Subscribe again, then have every follower re-read its game."""
        delay = 0.1
        while True:
            try:
                await self._events.subscribe(self.keys.events_channel, self._message)
                break
            except redis.ConnectionError:
                await asyncio.sleep(delay)  # Redis is away: retry, more gently each time
                delay = min(delay * 2, 2.0)
        self._delivered.clear()  # copies lost in the gap will not come to be dropped
        self._starts.clear()  # built from a Redis that may be gone
        if self.on_resync is not None:
            for attempt in range(3):  # a pooled connection may still be the dead one
                try:
                    done = self.on_resync()
                    if asyncio.iscoroutine(done):
                        await done
                    break
                except redis.RedisError as exc:
                    log.warning("After the subscription came back: %s (attempt %d)", exc, attempt + 1)
        self.resync()

    async def watch(self, idle: float) -> None:
        """Until cancelled: a follower that heard nothing for ``idle`` seconds re-reads its
        game. Longer than any wait the rules allow, so it only acts when events were lost
        (pub/sub drops what a slow subscriber cannot take, say)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(idle / 2)
            now = loop.time()
            for follower in list(self.followers()):
                if now - follower.heard > idle:
                    follower.heard = now
                    follower.queue.put_nowait({"t": "resync", "g": follower.game})

    def resync(self) -> None:
        """Have every follower re-read its game from Redis."""
        for follower in self.followers():
            follower.queue.put_nowait({"t": "resync", "g": follower.game})

    # -- START ---------------------------------------------------------------------------
    def start_frame(self, game: str, members: list[str], heroes: dict | None = None) -> asyncio.Future:
        """The START frame of ``game`` (serialised), built once per game while followed:
        from the start event's heroes, or read from Redis."""
        frame = self._starts.get(game)
        if frame is None:
            if heroes is not None:
                frame = asyncio.get_running_loop().create_future()
                frame.set_result(P.dumps(P.game_start(game, members, {
                    u: dict(zip(("id", "attack", "health"), h)) for u, h in heroes.items()})))
            else:
                frame = asyncio.ensure_future(self._read_start(game, members))
                frame.add_done_callback(lambda f: self._forget_start(game, f))
            self._starts[game] = frame
        return frame

    def _forget_start(self, game: str, frame: asyncio.Future) -> None:
        """A START that could not be read (Redis away) is read again next time."""
        if (frame.cancelled() or frame.exception() is not None) and self._starts.get(game) is frame:
            del self._starts[game]

    async def _read_start(self, game: str, members: list[str]) -> str:
        return P.dumps(P.game_start(game, members, await self.db.heroes(game, members)))
