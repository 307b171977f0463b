"""The game server: the WebSocket routes (v1 and the v2 session) over Redis, no polling.

A server is a few parts, each with one job:

* :mod:`simlib.gamedb` makes every Redis call; each state change is one Lua script, so
  a lobby never overfills and only the player on turn can act;
* :mod:`simlib.hub` holds who follows which game here and wakes them with the events
  the scripts publish (players of one game may sit on different servers);
* :mod:`simlib.feed` pushes a game to a player: START, turn notices, the end;
* :mod:`simlib.session` is the v2 session; the v1 routes are below;
* :mod:`simlib.deadlines` applies due deadlines (lobby and turn time-outs) for any game,
  so games end whatever their players or their servers do.

This module is the life cycle and the connection's edge: a cap on connections (HTTP 503
beyond MAX_CONNECTIONS), a time to make a first accepted request (LOGIN_TIMEOUT), and
one reply path that turns every failure into an error frame. A handler never dies on
bad input, and a request while Redis is away gets ``REDIS_UNAVAILABLE``, never silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import resource
import signal
import threading
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass

import redis
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from . import aio
from . import protocol as P
from .config import Settings
from .deadlines import DeadlineWatcher
from .feed import Feed, Sender
from .gamedb import GameDB, open_gamedb
from .hub import Follower, Hub
from .logs import flush_logs, setup_logging
from .records import lobby_log
from .session import Session

__all__ = ["GameServer", "open_file_limit"]

#: Seconds a server's lease lives without a heartbeat (it beats three times as often).
LEASE = 15.0
#: File descriptors kept free of connections (Redis, logs, the listening socket...).
RESERVED_FILES = 64

#: Redis errors that mean "not reachable right now" (a restart, a network cut).
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError, OSError)


def open_file_limit() -> int:
    """Raise this process's open-file limit to its hard limit; return the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


@dataclass(eq=False)
class Conn:
    """One connection at the edge: has it made an accepted request yet?"""

    ws: ServerConnection
    authed: bool = False


class GameServer:
    """``run()`` blocks; ``serve()`` is its async twin; ``stop()`` is safe from any thread
    or a signal handler. ``port=0`` binds a free port; read it from ``server.port`` once
    ``ready`` is set. ``roster``: a roster file (or ``"default"``) to load again when
    Redis is found without heroes (it restarted empty, say)."""

    def __init__(self, settings: Settings, *, host: str | None = None, port: int | None = None,
                 name: str | None = None, roster: str | None = None):
        self.settings = settings
        self.host = host if host is not None else settings.websocket_host
        self.port = port if port is not None else settings.server_port
        self.name = name or f"server-{uuid.uuid4().hex[:6]}"
        self.id = f"{self.name}-{uuid.uuid4().hex[:8]}"  # unique, for the lease of its sessions' names
        self.roster = roster
        self.ready = threading.Event()
        self.connections = 0  # connections accepted (counts for tests and load-balancing)
        self.refused = 0  # handshakes refused at MAX_CONNECTIONS
        self.max_connections = settings.max_connections
        #: Redis commands and round trips this server sent, and attacks it applied
        self.stats: dict[str, int] = {"commands": 0, "round_trips": 0, "attacks": 0}
        self.sessions: dict[str, Session] = {}  # live v2 sessions by user name
        self.db: GameDB | None = None
        self.hub: Hub | None = None
        self.feed: Feed | None = None
        self.watcher: DeadlineWatcher | None = None
        self.send = Sender(settings.send_timeout)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        routes = {P.LOGIN: self._login, P.FIND: self._find, P.HERO: self._hero, P.ACTION: self._action}
        self._requests = routes if settings.v1_routes else {}
        self._routes = {**dict.fromkeys(self._requests, self._v1), P.SESSION: self._session}
        if settings.v1_routes:
            self._routes[P.LOBBY] = self._lobby

    # -- life cycle ----------------------------------------------------------------------
    def run(self) -> None:
        """Serve until :meth:`stop`, SIGINT or SIGTERM."""
        setup_logging(self.settings)
        aio.run(self.serve(install_signals=threading.current_thread() is threading.main_thread()))

    def stop(self) -> None:
        loop, ev = self._loop, self._stop
        if loop is not None and ev is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(ev.set)

    async def serve(self, install_signals: bool = False) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(sig, self._stop.set)
        files = open_file_limit()
        if self.max_connections > files - RESERVED_FILES:
            self.max_connections = max(files - RESERVED_FILES, 1)
            lobby_log.warning("MAX_CONNECTIONS lowered to %d to fit the open-file limit (%d)",
                              self.max_connections, files)
        self.db = open_gamedb(self.settings, stats=self.stats, server=self.id, roster=self.roster)
        self.hub = Hub(self.db, on_resync=self._resynced)
        self.feed = Feed(self.settings, self.db, self.hub, self.send)
        self.watcher = DeadlineWatcher(self.db, on_events=self.hub.local)
        tasks: list[asyncio.Task] = []
        try:
            await self.hub.start()
            await self.db.open()
            await self.db.heartbeat(LEASE)
            tasks = [asyncio.create_task(self.watcher.run(), name="deadlines"),
                     asyncio.create_task(self._heartbeat(), name="lease"),
                     asyncio.create_task(self.send.watch(), name="slow clients"),
                     asyncio.create_task(self.hub.watch(self.feed.idle), name="quiet followers")]
            async with serve(self._handle, self.host, self.port, process_request=self._gate, max_size=P.MAX_FRAME,
                             compression=None, ping_interval=20, ping_timeout=60) as ws_server:
                self.port = ws_server.sockets[0].getsockname()[1]
                lobby_log.info("Server %s listening on ws://%s:%s", self.name, self.host, self.port)
                self.ready.set()
                await self._stop.wait()
                lobby_log.info("Server %s stopping", self.name, task={
                    "server": self.name, "port": self.port, "connections": self.connections,
                    "refused": self.refused, "closed_slow": self.send.closed_slow, **self.stats,
                    "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                    **{f"deadlines_{k.lower()}": v for k, v in self.watcher.applied.items()}})
        finally:
            for task in tasks:
                task.cancel()
            await self.hub.aclose()
            await self.db.aclose()
            await asyncio.to_thread(flush_logs)
            self.ready.clear()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(LEASE / 3)
            with contextlib.suppress(*UNAVAILABLE):
                await self.db.heartbeat(LEASE)

    async def _resynced(self) -> None:
        """Redis came back (perhaps empty): the live sessions hold their names again."""
        await self.db.heartbeat(LEASE)
        await self.db.reclaim({name: s.user for name, s in self.sessions.items() if s.user})

    # -- the edge --------------------------------------------------------------------------
    def _gate(self, connection: ServerConnection, request):
        """During the handshake: refuse (HTTP 503) past MAX_CONNECTIONS. Counted: every
        socket this server holds, those still in their handshake included."""
        if len(connection.server.handler_tasks) > self.max_connections:
            self.refused += 1
            if self.refused & (self.refused - 1) == 0:  # 1, 2, 4, 8...: a trace, not a flood
                lobby_log.warning("Refused %d connection(s) so far: MAX_CONNECTIONS (%d) reached",
                                  self.refused, self.max_connections)
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE,
                                      "This game server is full (MAX_CONNECTIONS); try again later.\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        conn = Conn(ws)
        timer = self._loop.call_later(self.settings.login_timeout, self._login_expired, conn)
        route = ws.request.path.split("?", 1)[0].rstrip("/")
        handler = self._routes.get(route)
        try:
            if handler is None:
                hint = "" if self.settings.v1_routes else " (this server serves v2 only: V1_ROUTES=0)"
                await self.send(ws, P.dumps(P.error_frame(
                    "UNKNOWN ROUTE", "UNKNOWN_ROUTE", f"no route {route!r}{hint}; try one of {', '.join(self._routes)}")))
                await ws.close(1008, "unknown route")
                return
            await handler(conn, route)
        except ConnectionClosed:
            pass
        except redis.RedisError as exc:  # a failure outside any request's reply path
            lobby_log.error("Redis error on %s: %s", route, exc)
            with contextlib.suppress(ConnectionClosed):
                await self.send(ws, P.dumps(P.redis_unavailable()))
                await ws.close(1011, "store unavailable")
        finally:
            timer.cancel()

    def _login_expired(self, conn: Conn) -> None:
        if not conn.authed:
            asyncio.ensure_future(conn.ws.close(1008, "no accepted request in time (LOGIN_TIMEOUT)"))

    async def reply(self, conn: Conn, route: str, request: Awaitable[list]) -> None:
        """Send the frames a request's handler returns (a str is already serialised). A
        rejected request gets its error frame, and the connection reads on."""
        try:
            frames = await request
        except P.ProtocolError as exc:
            frames = [exc.frame]
        except UNAVAILABLE as exc:
            lobby_log.warning("Redis unavailable on %s: %s", route, exc)
            frames = [P.redis_unavailable()]
        except redis.ResponseError as exc:  # a script failed: a bug, not bad input
            lobby_log.error("Script error on %s: %s", route, exc)
            frames = [P.error_frame("SERVER ERROR", "SCRIPT_ERROR", "the request failed")]
        else:
            conn.authed = True
        for frame in frames:
            await self.send(conn.ws, frame if isinstance(frame, str) else P.dumps(frame))

    # -- v1: one request, one reply ---------------------------------------------------------
    async def _v1(self, conn: Conn, route: str) -> None:
        handler = self._requests[route]
        async for text in conn.ws:
            await self.reply(conn, route, self._parsed(handler, route, text))

    @staticmethod
    async def _parsed(handler, route: str, text) -> list:
        return await handler(P.parse(route, text))

    async def _login(self, req: dict) -> list[dict]:
        done = await self.db.log_in(req["USER"])
        if done is None:
            return [P.no_heroes()]
        token, created = done
        return [P.user_created(), P.user_token(token)] if created else [P.user_token(token)]

    async def _find(self, req: dict) -> list[dict]:
        joined = await self.db.join(req["USER_TOKEN"], req["PARTICIPANTS"])
        self.hub.local(joined.events)
        return [P.joined(joined.game, joined.hero)]

    async def _hero(self, req: dict) -> list[dict]:
        game, user = req["GAME_TOKEN"], req["USER_TOKEN"]
        return [P.hero_spec(game, user, await self.db.hero(game, user))]

    async def _action(self, req: dict) -> list[str]:
        record, event = await self.db.act(req["GAME_TOKEN"], req["USER_TOKEN"], req["ENEMY_TOKEN"])
        if event is not None:
            self.hub.local([event])
        return [record]

    # -- v1: the lobby connection -------------------------------------------------------------
    async def _lobby(self, conn: Conn, route: str) -> None:
        """Read requests until one names a game and a member; then push the game to it. A
        v1 player may reconnect its lobby at any time (its turn waits until its deadline)."""
        ws = conn.ws
        async for text in ws:
            try:
                req = P.parse(P.LOBBY, text)
            except P.ProtocolError as exc:
                await self.send(ws, P.dumps(exc.frame))
                continue
            f = Follower(req["GAME_TOKEN"], req["USER_TOKEN"], ws, asyncio.Queue())
            self.hub.follow(f)  # followed first, then read: an event is either in the state read or queued
            try:
                state = await self.db.state(f.game, f.user)
            except (P.ProtocolError, *UNAVAILABLE) as exc:
                self.hub.unfollow(f)
                await self.send(ws, P.dumps(exc.frame if isinstance(exc, P.ProtocolError) else P.redis_unavailable()))
                continue
            except BaseException:
                self.hub.unfollow(f)
                raise
            conn.authed = True
            closed = asyncio.create_task(self._until_closed(ws, f.queue))
            try:
                if not await self.feed.catch_up(f, state):
                    while not await self.feed.on_event(f, await self.feed.next_event(f)):
                        pass
            finally:
                closed.cancel()
                self.hub.unfollow(f)
            if f.ended == P.GAME_LOST:  # not a normal end: the original's bots move on at a 1011
                await ws.close(1011, "game lost")
            return

    @staticmethod
    async def _until_closed(ws: ServerConnection, queue: asyncio.Queue) -> None:
        """Read (and drop) what a lobby client sends; when it closes, say so on the queue."""
        with contextlib.suppress(ConnectionClosed):
            async for _text in ws:
                pass
        queue.put_nowait({"t": "closed"})

    # -- v2 ---------------------------------------------------------------------------------
    async def _session(self, conn: Conn, route: str) -> None:
        await Session(self, conn).run()
