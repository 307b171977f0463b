"""The v2 session (``/api/v2/session``): one connection for a player's whole life.

The player logs in once and from then on acts only as itself: requests carry no user
token, and an action names no game. Requests and the current game's events go through
one queue, handled in order, so a reply is always sent before the notices its action
caused. The reader takes at most :data:`IN_FLIGHT` requests ahead of the handler: a
client that sends faster than it is served is simply not read (back-pressure), so what
waits for it in the server stays bounded.

When the connection closes, the player leaves its game: a seat in a lobby is given
back, a game in progress is forfeited at once (``DISCONNECTED``), and its name is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis
from websockets.exceptions import ConnectionClosed

from . import protocol as P
from .hub import Follower

__all__ = ["Session", "IN_FLIGHT"]

log = logging.getLogger("lib.server.lobby")

#: Requests read from a client ahead of the one being handled.
IN_FLIGHT = 4


class Session:
    """One v2 connection. ``server`` is the :class:`~simlib.server.GameServer` it runs
    in (its Redis calls, hub, feed and reply path); ``conn`` the connection's gate."""

    def __init__(self, server, conn):
        self.server = server
        self.conn = conn
        self.ws = conn.ws
        self.queue: asyncio.Queue = asyncio.Queue()
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self.user: str | None = None
        self.name: str | None = None
        self.follower: Follower | None = None

    async def run(self) -> None:
        feed = self.server.feed
        reader = asyncio.create_task(self._read())
        try:
            while True:
                f = self.follower
                item = await (feed.next_event(f) if f is not None else self.queue.get())
                if not isinstance(item, dict):  # a request
                    await self.server.reply(self.conn, P.SESSION, self._request(item))
                    self._slots.release()
                elif item.get("t") == "closed":
                    return
                elif f is not None and item.get("g") in (f.game, None) and await feed.on_event(f, item):
                    self.server.hub.unfollow(f)
                    self.follower = None
        finally:
            reader.cancel()
            await self._leave()

    async def _read(self) -> None:
        """Requests onto the queue, at most IN_FLIGHT ahead; then say the client left."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self._slots.acquire()
                self.queue.put_nowait(await self.ws.recv())
        self.queue.put_nowait({"t": "closed"})

    async def _leave(self) -> None:
        """The connection closed: leave the game (seat back, or forfeit) and free the name."""
        server = self.server
        f, self.follower = self.follower, None
        try:
            if f is not None:
                server.hub.unfollow(f)
                if f.ended is None:
                    server.hub.local(await server.db.quit(f.game, f.user, "DISCONNECTED"))
            if self.name is not None:
                if server.sessions.get(self.name) is self:
                    del server.sessions[self.name]
                await server.db.log_out(self.name)
        except redis.RedisError as exc:  # Redis away: the deadlines end the game, the lease frees the name
            log.warning("Session of %s closed while Redis was unavailable: %s", self.name, exc)

    async def _request(self, text) -> list:
        db, hub = self.server.db, self.server.hub
        verb, req = P.parse_session(text)
        if verb == P.LOGIN_V2:
            if self.user is not None:
                raise P.ProtocolError("ALREADY LOGGED IN", "ALREADY_LOGGED_IN",
                                      "this session is logged in; open a new one for another user")
            done = await db.log_in(req["USER"], session=True)
            if done is None:
                return [P.no_heroes()]
            self.user, self.name = done[0], req["USER"]
            self.server.sessions[self.name] = self
            self.conn.authed = True
            return [P.logged_in(*done)]
        if self.user is None:
            raise P.ProtocolError("NOT LOGGED IN", "NOT_LOGGED_IN", "send LOGIN first")
        f = self.follower
        if verb == P.FIND_V2:
            if f is not None:
                raise P.ProtocolError("ALREADY IN A GAME", "ALREADY_IN_A_GAME",
                                      "FIND again after this game's COMPLETE or TIMED OUT")
            with hub.joining():
                joined = await db.join(self.user, req["PARTICIPANTS"])
                # followed before anything else runs here: later events are delivered, and
                # a start another join on this server caused meanwhile was kept as early
                f = self.follower = Follower(joined.game, self.user, self.ws, self.queue, v2=True)
                hub.follow(f)
                hub.local(joined.events)
                early = hub.early(joined.game)
                if early is not None:
                    self.queue.put_nowait(early)
            return [P.joined(joined.game, joined.hero)]
        if f is None:
            raise P.ProtocolError("NOT IN A GAME", "NOT_IN_A_GAME", "FIND a game first")
        if verb == P.ATTACK_V2:
            record, event = await db.act(f.game, self.user, req["ENEMY_TOKEN"])
            if event is not None:
                hub.local([event])
            return [record]
        return [P.hero_spec(f.game, req["USER_TOKEN"], await db.hero(f.game, req["USER_TOKEN"]))]
