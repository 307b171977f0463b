"""Pushing a game to the players who follow it: START, turn notices, the end.

The same for a v1 lobby connection and a v2 session: :meth:`Feed.catch_up` brings a
player up to date from the game's state in Redis, :meth:`Feed.on_event` acts on one
event of its game. Writes go through :class:`Sender`, which bounds how long a frame may
wait for a client that does not read.
"""

from __future__ import annotations

import asyncio
import logging

import redis

from . import protocol as P
from .config import Settings
from .game import STATUS
from .gamedb import GameDB
from .hub import Follower, Hub

__all__ = ["Feed", "Sender", "idle_limit"]

log = logging.getLogger("lib.server.lobby")


class Sender:
    """``await send(ws, text)``: write a frame. websockets holds at most its write limit
    (32 KiB) for a client before ``send`` waits for it to read; a send that waits longer
    than ``timeout`` seconds closes the connection, so what waits for a client that does
    not read stays bounded. One watchdog (:meth:`watch`, a task per server) looks at the
    sends under way once a second, so the usual send costs no timer of its own."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.closed_slow = 0  # connections closed for not reading
        self._sending: dict = {}  # connection -> loop time its current send began

    async def __call__(self, ws, text: str) -> None:
        self._sending[ws] = asyncio.get_running_loop().time()
        try:
            await ws.send(text)
        finally:
            self._sending.pop(ws, None)

    async def watch(self) -> None:
        """Close the connections whose send has waited too long (until cancelled)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self.timeout / 2))
            now = loop.time()
            for ws, since in list(self._sending.items()):
                if now - since > self.timeout:
                    del self._sending[ws]
                    self.closed_slow += 1
                    log.warning("Closing a connection from %s that does not read (a frame waited %.0f s)",
                                getattr(ws, "remote_address", "?"), now - since)
                    ws.transport.abort()  # its pending send ends with ConnectionClosed


def idle_limit(settings: Settings) -> float:
    """How long a follower waits for an event before it re-reads its game anyway: longer
    than any wait the rules allow (a lobby filling, a turn), so it only fires when events
    were lost (pub/sub drops messages a slow subscriber cannot take, say)."""
    return 2 * max(settings.lobby_timeout, settings.server_sleep + settings.turn_timeout) + 1


class Feed:
    """Pushes games to followers, for one server."""

    def __init__(self, settings: Settings, db: GameDB, hub: Hub, send: Sender):
        self.settings = settings
        self.db = db
        self.hub = hub
        self.send = send
        self.idle = idle_limit(settings)

    @staticmethod
    async def next_event(follower: Follower) -> dict:
        """The next item on the follower's queue (the hub puts a resync there when nothing
        came for too long, see :meth:`Hub.watch`)."""
        return await follower.queue.get()

    async def catch_up(self, f: Follower, state: dict) -> bool:
        """Bring a player up to date with its game as read from Redis; True once it is
        over for the player (ended, or lost with Redis)."""
        status = state["status"]
        if status is None:  # the records are gone: Redis restarted empty, or was emptied
            await self.end(f, P.GAME_LOST)
            return True
        if status in STATUS.ENDED:
            if status == STATUS.COMPLETED:
                await self.send_start(f, state["members"])
            await self.end(f, P.COMPLETE if status == STATUS.COMPLETED else P.TIMED_OUT)
            return True
        if status != STATUS.WAITING_LOBBY:
            await self.send_start(f, state["members"])
            if state["order"] and state["order"][0] == f.user:
                await self.notify_turn(f, state["turns"], state["order"])
        return False

    async def on_event(self, f: Follower, event: dict) -> bool:
        """Act on one event of the player's game; True once the game is over for it (or
        the player left)."""
        kind = event.get("t")
        if kind == "closed":
            return True  # the player left; the game goes on without its notices
        if kind == "resync":  # events may have been missed: the state says where we are
            try:
                state = await self.db.state(f.game)
            except redis.ConnectionError:  # Redis still away: look again in a moment
                asyncio.get_running_loop().call_later(1.0, f.queue.put_nowait, event)
                return False
            return await self.catch_up(f, state)
        if not f.started and kind != "start":
            # A later event before the start event: the start is still on its way (on a
            # cluster it crosses the cluster bus, while this server's own action events
            # are delivered at once). A turn notice before START would leave the player
            # without its opponents, so catch up from Redis: START first, then the turn.
            return await self.catch_up(f, await self.db.state(f.game))
        if kind == "start" and not f.started:
            members = event.get("m")
            if members is None:  # an event without the START data: read it
                return await self.catch_up(f, await self.db.state(f.game))
            await self.send_start(f, members, event.get("h"))
            if members[0] == f.user:
                await self.notify_turn(f, 0, members)
        elif kind == "turn" and event.get("u") == f.user:
            await self.notify_turn(f, int(event.get("n", 0)), event.get("o"))
        elif kind == "complete":
            await self.end(f, P.COMPLETE)
            return True
        elif kind == "timeout":
            await self.end(f, P.TIMED_OUT)
            return True
        return False

    async def end(self, f: Follower, what: str) -> None:
        f.ended = what
        frame = P.game_lost(f.game) if what == P.GAME_LOST else P.game_notice(f.game, what)
        await self.send(f.ws, P.dumps(frame))

    async def send_start(self, f: Follower, members: list[str], heroes: dict | None = None) -> None:
        """Send START once (the frame is built once per game, see :meth:`Hub.start_frame`)."""
        if f.started:
            return
        frame = self.hub.start_frame(f.game, members, heroes)
        f.started = True
        await self.send(f.ws, await asyncio.shield(frame))

    async def notify_turn(self, f: Follower, turns: int, order: list[str] | None) -> None:
        """Tell the player it is on turn (once per turn: ``turns`` is the log length)."""
        if turns <= f.notified:
            return
        f.notified = turns
        if self.settings.server_sleep > 0 and turns > 0:
            await asyncio.sleep(self.settings.server_sleep)
        if self.settings.server_sleep > 0 or turns == 0:
            try:
                await self.db.mark_waiting(f.game)
            except redis.ConnectionError:
                pass  # a status for learners to watch, not a rule: the notice still goes out
        if f.v2:
            await self.send(f.ws, P.dumps(P.turn_notice_v2(f.game, order or [f.user])))
        else:
            await self.send(f.ws, P.dumps(P.game_notice(f.game, P.YOUR_TURN)))

