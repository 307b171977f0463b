"""The game server: v1 WebSocket routes over Redis, event-driven, no polling.

* Every state change is one Lua script (``simlib/lua``): login, join, attack and
  lobby time-out are atomic, so a lobby never overfills and only the player on turn
  can act.
* Scripts publish game events (start, turn, complete, timeout) on an internal
  channel; every server process subscribes once and wakes the lobby connections it
  holds. So players of one game may sit on different servers, and the next player
  hears about their turn as soon as the previous action lands.
* ``SERVER_SLEEP`` only paces turn notices; 0 runs at full speed.
* A handler never dies on bad input: it answers an error frame and reads on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import signal
import threading
import uuid
from dataclasses import dataclass, field
from importlib import resources

import redis
import redis.asyncio
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from . import aio, mux
from . import protocol as P
from .config import Settings
from .game import STATUS
from .keys import GAME_CHANNEL, LOBBY_CHANNEL, Keyspace
from .logs import ROOT, RedisPubSubHandler, TaskAdapter, flush_logs, setup_logging
from .store import connect_async

__all__ = ["GameServer", "load_script"]

lobby_log = TaskAdapter(logging.getLogger(LOBBY_CHANNEL), {})
game_log = TaskAdapter(logging.getLogger(GAME_CHANNEL), {})


def load_script(name: str) -> str:
    """A script's source, after the helpers the scripts share (``lua/_prelude.lua``)."""
    lua = resources.files("simlib").joinpath("lua")
    return lua.joinpath("_prelude.lua").read_text() + lua.joinpath(f"{name}.lua").read_text()


@dataclass(eq=False)
class _Lobby:
    """One player following one game (a v1 lobby connection, or a v2 session's current
    game): the events for its game land in ``queue``."""

    game: str
    user: str
    ws: ServerConnection
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    started: bool = False
    notified: int = -1  # log length at the last turn notice sent
    v2: bool = False  # a session: turn notices carry the living order
    deadline: float | None = None  # loop time at which a lobby still filling is timed out


class GameServer:
    """v1 game server. ``run()`` blocks; ``serve()`` is its async twin; ``stop()`` is
    safe from any thread or a signal handler.

    ``port=0`` binds a free port; read it from ``server.port`` once ``ready`` is set.
    """

    def __init__(self, settings: Settings, *, host: str | None = None, port: int | None = None,
                 name: str | None = None):
        self.settings = settings
        self.keys = Keyspace(cluster=settings.redis_cluster)
        self.host = host if host is not None else settings.websocket_host
        self.port = port if port is not None else settings.server_port
        self.name = name or f"server-{uuid.uuid4().hex[:6]}"
        self.ready = threading.Event()
        self.connections = 0  # connections accepted (counts for tests and load-balancing)
        #: Redis commands and round trips this server sent, and attacks it applied
        self.stats: dict[str, int] = {"commands": 0, "round_trips": 0, "attacks": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._lobbies: dict[str, set[_Lobby]] = {}
        self._users: set[str] = set()
        self._roster: list[tuple[str, str, str]] = []  # cluster mode: (id, attack, health) per hero
        self._starts: dict[str, asyncio.Future] = {}  # game -> its START frame, while it runs
        # v2 joins in flight, and the start events that came for a game no lobby here
        # follows yet: a session's own join may start its game before it is registered
        self._joining = 0
        self._early: dict[str, dict] = {}
        # events this process delivered itself, straight from its own action script (as
        # the script published them): their pub/sub copies are skipped unread
        self._delivered: set[str] = set()
        self._users_seen = 0
        self._redis: redis.asyncio.Redis | None = None
        self._scripts: dict = {}
        self._routes = {P.LOGIN: self._login, P.FIND: self._find, P.LOBBY: self._lobby,
                        P.HERO: self._hero, P.ACTION: self._action, P.SESSION: self._session}

    # -- life cycle ----------------------------------------------------------
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
        self._redis = connect_async(self.settings, stats=self.stats)
        # the scripts (every state change) go over one pipelined connection (on a cluster,
        # redis-py routes each script to its slot's node)
        self._mux = None if self.keys.cluster else mux.for_url(self.settings.redis_url, stats=self.stats)
        # events come over a connection of their own to the named node (on a cluster,
        # classic pub/sub reaches every node), handed to the lobbies as they arrive
        self._events = mux.for_url(self.settings.redis_url)
        self._events.on_lost = self._events_lost
        self._resubscribing: asyncio.Task | None = None
        try:
            for name in ("login", "join", "action", "waiting", "timeout", "cluster_seat", "cluster_join",
                         "cluster_close"):
                self._scripts[name] = (self._mux or self._redis).register_script(load_script(name))
            await self._events.subscribe(self.keys.events_channel, self._event_message)
            async with serve(self._handle, self.host, self.port, max_size=P.MAX_FRAME,
                             compression=None, ping_interval=20, ping_timeout=60) as ws_server:
                self.port = ws_server.sockets[0].getsockname()[1]
                lobby_log.info("Server %s listening on ws://%s:%s", self.name, self.host, self.port)
                self.ready.set()
                await self._stop.wait()
                lobby_log.info("Server %s stopping", self.name,
                               task={"server": self.name, "port": self.port, "connections": self.connections,
                                     **self.stats})
        finally:
            await self._events.aclose()
            if self._resubscribing is not None:
                self._resubscribing.cancel()
            if self._mux is not None:
                await self._mux.aclose()
            if isinstance(self._redis, redis.asyncio.RedisCluster):  # closes its nodes' pools itself
                await self._redis.aclose()
            else:
                await self._redis.aclose(close_connection_pool=True)
            await asyncio.to_thread(flush_logs)
            self.ready.clear()

    # -- events from Redis (all server processes) -----------------------------
    def _event_message(self, data: str) -> None:
        """One message on the events channel: hand it to this process's lobbies of its game."""
        if data in self._delivered:  # this process acted it, and delivered it then
            self._delivered.discard(data)
            return
        try:
            event = json.loads(data)
        except ValueError:
            return
        if isinstance(event, dict):
            self._deliver(event)

    def _events_lost(self, exc: Exception | None) -> None:
        lobby_log.warning("Event subscription lost (%s); subscribing again", exc)
        self._resubscribing = asyncio.ensure_future(self._resubscribe())

    async def _resubscribe(self) -> None:
        """Subscribe again, then have every lobby re-read its game: events published
        during the gap are lost, the state in Redis is not."""
        while True:
            try:
                await self._events.subscribe(self.keys.events_channel, self._event_message)
                break
            except redis.ConnectionError:
                await asyncio.sleep(0.5)  # Redis is away: retry at a gentle pace
        self._delivered.clear()  # copies lost in the gap will not come to be dropped
        for group in self._lobbies.values():
            for lobby in group:
                lobby.queue.put_nowait({"t": "resync"})

    def _deliver(self, event: dict) -> None:
        group = self._lobbies.get(event.get("g"))
        if group:
            for lobby in group:
                lobby.queue.put_nowait(event)
        # a session whose join is in flight may belong to this game too (even when other
        # members are registered here already): keep the start for it to claim
        if self._joining and event.get("t") == "start":
            self._early[event["g"]] = event
            if len(self._early) > 4096:  # other servers' games: keep the newest only
                del self._early[next(iter(self._early))]

    # -- connections -----------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        route = ws.request.path.split("?", 1)[0].rstrip("/")
        handler = self._routes.get(route)
        try:
            if handler is None:
                await ws.send(P.dumps(P.error_frame("UNKNOWN ROUTE", "UNKNOWN_ROUTE",
                                                    f"no route {route!r}; try one of {', '.join(P.ROUTES)}")))
                await ws.close(1008, "unknown route")
                return
            if route in (P.LOBBY, P.SESSION):
                await handler(ws)
                return
            async for text in ws:
                await self._reply(ws, route, self._v1_request(handler, route, text))
        except ConnectionClosed:
            pass
        except redis.RedisError as exc:
            lobby_log.error("Redis error on %s: %s", route, exc)
            with contextlib.suppress(ConnectionClosed):
                await ws.send(P.dumps(P.error_frame("SERVER ERROR", "REDIS_ERROR", "the store is unavailable")))
                await ws.close(1011, "store unavailable")

    @staticmethod
    async def _v1_request(handler, route: str, text) -> list:
        return await handler(P.parse(route, text))

    @staticmethod
    async def _reply(ws: ServerConnection, route: str, request) -> None:
        """Send the frames a request's handler returns (a str is already serialised). A
        rejected request gets its error frame, and the connection reads on."""
        try:
            for frame in await request:
                await ws.send(frame if isinstance(frame, str) else P.dumps(frame))
        except P.ProtocolError as exc:
            await ws.send(P.dumps(exc.frame))
        except redis.ResponseError as exc:  # a script failed: a bug, not bad input
            lobby_log.error("Script error on %s: %s", route, exc)
            await ws.send(P.dumps(P.error_frame("SERVER ERROR", "SCRIPT_ERROR", "the request failed")))

    async def _known_user(self, token: str) -> None:
        if token in self._users:
            return
        seen = await self._redis.hlen(self.keys.users)
        if seen != self._users_seen:  # new users since the last look: reload once
            self._users.update(await self._redis.hvals(self.keys.users))
            self._users_seen = seen
        if token not in self._users:
            raise P.ProtocolError("UNKNOWN USER TOKEN", "UNKNOWN_USER_TOKEN", "USER_TOKEN does not name a user; log in first")

    @staticmethod
    def _check_member(status: str | None, member: bool) -> None:
        """Reject a request naming a game that does not exist, or a user not in it."""
        if status is None:
            raise P.ProtocolError("UNKNOWN GAME TOKEN", "UNKNOWN_GAME_TOKEN", "GAME_TOKEN does not name a game")
        if not member:
            raise P.ProtocolError("USER NOT IN THIS GAME", "NOT_A_MEMBER", "USER_TOKEN is not a member of this game")

    # -- routes ------------------------------------------------------------------
    async def _log_in(self, name: str) -> tuple[str, bool] | None:
        """The user's token, and whether this login created the user; None if no heroes."""
        if self.keys.cluster:  # superheros is in another slot: check it on its own
            if not await self._redis.exists(self.keys.superheros):
                return None
            keys = [self.keys.users]
        else:
            keys = [self.keys.users, self.keys.superheros]
        result = await self._scripts["login"](keys=keys, args=[name, str(uuid.uuid4())])
        if int(result[0]) < 0:
            return None
        token = result[1]
        self._users.add(token)
        if int(result[0]) == 1:
            lobby_log.info("User Created: %s", name, task={"user": name, "user_token": token})
        return token, int(result[0]) == 1

    async def _login(self, req: dict) -> list[dict]:
        done = await self._log_in(req["USER"])
        if done is None:
            return [P.no_heroes()]
        token, created = done
        return [P.user_created(), P.user_token(token)] if created else [P.user_token(token)]

    async def _join(self, user: str, n: int) -> tuple[str, int]:
        """Seat ``user`` in a lobby for ``n`` players: (game token, hero id)."""
        try:
            if self.keys.cluster:
                game, hero, joined = await self._join_cluster(user, n)
            else:
                game, hero, joined, _ = await self._scripts["join"](
                    keys=[self.keys.players(n), self.keys.participants, self.keys.superheros],
                    args=[user, n, str(uuid.uuid4()), self.keys.game_format, self.keys.events_channel,
                          P.timestamp(), self._lobby_channel])
        except redis.ResponseError as exc:
            if "NO HERO LEFT" in str(exc):
                raise P.ProtocolError("NOT ENOUGH SUPERHEROS", "NO_HERO_LEFT",
                                      "the roster has fewer heroes than players in this game") from None
            raise
        if self._log_locally:
            lobby_log.info("Player Joined Game: %s", game, extra={"published": bool(self._lobby_channel)},
                           task={"game_token": game, "user_token": user, "hero_id": int(hero),
                                 "joined": int(joined), "participants": n})
        return game, int(hero)

    async def _find(self, req: dict) -> list[dict]:
        user = req["USER_TOKEN"]
        await self._known_user(user)
        return [P.joined(*await self._join(user, req["PARTICIPANTS"]))]

    async def _join_cluster(self, user: str, n: int) -> tuple[str, str, int]:
        """A join in two atomic steps, one per hash slot: a seat in the lobby (beside
        ``games:players:<n>``), then the game's own keys. A lobby that timed out between
        the two is left for a new one."""
        k = self.keys
        for _attempt in range(5):
            game, seat, opened = await self._scripts["cluster_seat"](
                keys=[k.players(n), k.players_open(n)], args=[user, n, str(uuid.uuid4())])
            heroes = await self._hero_candidates()
            try:
                game, hero, joined = await self._scripts["cluster_join"](
                    keys=[k.status(game), k.host(game), k.game_participants(game), k.game(game),
                          k.heroes_taken(game), k.hero(game, user), k.order(game)],
                    args=[game, user, n, "1" if int(opened) else "0", k.events_channel, *heroes])
            except redis.ResponseError as exc:
                if "GAME CLOSED" in str(exc):
                    continue
                raise
            if int(seat):  # a new member (seat 0: already seated, nothing changed)
                await self._redis.zincrby(k.participants, 1, game)
            return game, hero, int(joined)
        raise P.ProtocolError("NO OPEN GAME", "NO_OPEN_GAME", "no lobby could be joined; try again")

    async def _hero_candidates(self, count: int = 12) -> list:
        """Random heroes as (id, attack, health) for cluster_join.lua, which keeps the first
        one the game has not taken. The roster is read once per server (``superheros``
        is in another slot than any game)."""
        if not self._roster:
            raw = await self._redis.hgetall(self.keys.superheros)
            self._roster = [(hid, *map(str, (json.loads(v)["powerstats"][f] for f in ("attack", "health"))))
                            for hid, v in raw.items()]
        if not self._roster:
            raise redis.ResponseError("NO HERO LEFT")
        picks = random.sample(self._roster, min(count, len(self._roster)))
        return [x for hero in picks for x in hero]

    async def _hero(self, req: dict) -> list[dict]:
        game, user = req["GAME_TOKEN"], req["USER_TOKEN"]
        async with self._redis.pipeline(transaction=False) as pipe:  # one round trip
            pipe.get(self.keys.status(game))
            pipe.sismember(self.keys.game(game), user)
            pipe.hgetall(self.keys.hero(game, user))
            status, member, hero = await pipe.execute()
        self._check_member(status, member)
        if not hero:  # the worker's expiry got there first
            raise P.ProtocolError("HERO NOT AVAILABLE", "HERO_GONE", "this game's hero records have been cleaned up")
        return [P.hero_spec(game, user, hero)]

    async def _action(self, req: dict) -> list[str]:
        return [await self._act(req["GAME_TOKEN"], req["USER_TOKEN"], req["ENEMY_TOKEN"])]

    async def _act(self, game: str, user: str, enemy: str | None) -> str:
        """Apply one action; return the record (as the script wrote it to the log). The
        lobbies of this game held here hear of it at once; other servers by pub/sub."""
        k = self.keys
        result = await self._scripts["action"](
            keys=[k.status(game), k.game(game), k.order(game), k.logs(game), k.hero(game, user),
                  k.hero(game, enemy or user)],
            args=[game, user, enemy or "", P.timestamp(), k.events_channel,
                  "1" if self.settings.server_sleep > 0 else "0", self._combat_channel, self._lobby_channel])
        kind = result[0]
        if kind == "ERR":
            raise P.ProtocolError(result[1], result[2])
        if kind == "OK":
            self.stats["attacks"] += 1
            if self._log_locally:
                game_log.info("Attack Completed: %s", result[1], extra={"published": bool(self._combat_channel)})
            event = json.loads(result[2])
            self._deliver(event)
            self._delivered.add(result[2])  # its pub/sub copy is then dropped on arrival
            if event["t"] == "complete":
                self._game_over(game, STATUS.COMPLETED, event["u"], event["m"])
        return result[1]

    # Records the scripts publish themselves (the pub/sub log transport's message, in the
    # same round trip as the change): combat records, joins, a game's end and its clean-up
    # tasks. '' = not on pub/sub (LOGGER_MODULE is not redis, or the level hides INFO).
    @functools.cached_property
    def _combat_channel(self) -> str:
        if self.settings.logger_module == "redis" and game_log.isEnabledFor(logging.INFO):
            return GAME_CHANNEL
        return ""

    @functools.cached_property
    def _lobby_channel(self) -> str:
        # Not on a cluster: there a script publishes on its game's node, and the message
        # crosses the cluster bus to the worker's node, where it can arrive after the
        # worker's drain marker. The log transport publishes on the worker's node, in order.
        if self.settings.logger_module == "redis" and lobby_log.isEnabledFor(logging.INFO) and not self.keys.cluster:
            return LOBBY_CHANNEL
        return ""

    @property
    def _log_locally(self) -> bool:
        """Whether a record published by a script is still wanted in this process: some
        other handler (stdout, a test's) takes INFO. Saves building records nobody reads."""
        return any(h.level <= logging.INFO and not isinstance(h, RedisPubSubHandler)
                   for h in logging.getLogger(ROOT).handlers) or not self._lobby_channel

    def _game_over(self, game: str, status: str, winner: str | None, members: list[str]) -> None:
        """Log the end of a game and one clean-up task per member (for the worker); the
        script that ended the game has published them already when ``_lobby_channel``."""
        if not self._log_locally:
            return
        members = sorted(members)
        extra = {"published": bool(self._lobby_channel)}
        lobby_log.info("Game Finished: %s", status, extra=extra,
                       task={"game_token": game, "status": status, "winner": winner, "members": members})
        for user in members:
            lobby_log.info("Cleaning Game Records", extra=extra, task={"game_token": game, "user_token": user})

    # -- the lobby connection (v1) ----------------------------------------------------
    async def _lobby(self, ws: ServerConnection) -> None:
        """Read requests until one names a game and a member; then push the game to it."""
        async for text in ws:
            try:
                req = P.parse(P.LOBBY, text)
            except P.ProtocolError as exc:
                await ws.send(P.dumps(exc.frame))
                continue
            if await self._follow_game(ws, req["GAME_TOKEN"], req["USER_TOKEN"]):
                return

    def _register(self, lobby: _Lobby) -> None:
        self._lobbies.setdefault(lobby.game, set()).add(lobby)

    def _unregister(self, lobby: _Lobby) -> None:
        group = self._lobbies.get(lobby.game)
        if group is not None:
            group.discard(lobby)
            if not group:  # this process holds no lobby of that game any more
                del self._lobbies[lobby.game]
                self._starts.pop(lobby.game, None)

    async def _follow_game(self, ws: ServerConnection, game: str, user: str) -> bool:
        """Push the game to this lobby until it ends; False (nothing pushed) when the
        user is not a member of the game."""
        lobby = _Lobby(game, user, ws)
        # registered first, then read: an event is either in the state read or queued
        self._register(lobby)
        try:
            state = await self._game_state(game, user)
        except P.ProtocolError as exc:
            self._unregister(lobby)
            await ws.send(P.dumps(exc.frame))
            return False
        except BaseException:
            self._unregister(lobby)
            raise
        closed = asyncio.create_task(self._read_into(ws, lobby.queue, keep=False))
        try:
            if await self._on_state(lobby, state):
                return True
            lobby.deadline = self._loop.time() + self.settings.lobby_timeout
            while True:
                if await self._on_event(lobby, await self._next_item(lobby, lobby.queue)):
                    return True
        except ConnectionClosed:
            pass
        finally:
            closed.cancel()
            self._unregister(lobby)
        return True

    async def _next_item(self, lobby: _Lobby | None, queue: asyncio.Queue):
        """The next item on ``queue``. While ``lobby`` waits to fill, its deadline applies:
        past it the game is timed out, and its event (timeout, or start if it filled in
        the meantime) comes back on the queue."""
        while lobby is not None and not lobby.started and lobby.deadline is not None:
            try:
                async with asyncio.timeout_at(lobby.deadline):
                    return await queue.get()
            except TimeoutError:
                lobby.deadline = None
                await self._time_out(lobby.game)
        return await queue.get()

    @staticmethod
    async def _read_into(ws: ServerConnection, queue: asyncio.Queue, keep: bool = True) -> None:
        """Put what the client sends on ``queue`` (or drop it, ``keep=False``); when the
        client closes, say so on the queue, so its consumer waits on one queue only."""
        with contextlib.suppress(ConnectionClosed):
            async for text in ws:
                if keep:
                    queue.put_nowait(text)
        queue.put_nowait({"t": "closed"})

    # -- pushing a game to a player (v1 lobby or v2 session) ----------------------------
    async def _on_state(self, lobby: _Lobby, state: dict) -> bool:
        """Catch a player up with the game as read from Redis; True once it is over."""
        user = lobby.user
        if state["status"] in STATUS.ENDED:
            if state["status"] == STATUS.COMPLETED:
                await self._send_start(lobby, state["members"])
            await self._end(lobby, P.COMPLETE if state["status"] == STATUS.COMPLETED else P.TIMED_OUT)
            return True
        if state["status"] != STATUS.WAITING_LOBBY:
            await self._send_start(lobby, state["members"])
            if state["order"] and state["order"][0] == user:
                await self._notify_turn(lobby, state["turns"], state["order"])
        return False

    async def _on_event(self, lobby: _Lobby, event: dict) -> bool:
        """Act on one event of the player's game; True once the game is over for it (or
        the player left)."""
        kind = event.get("t")
        if kind == "closed":
            return True  # the player left; the game goes on without its notices
        if kind == "resync":  # events may have been missed: the state says where we are
            return await self._on_state(lobby, await self._game_state(lobby.game))
        if kind == "start" and not lobby.started:
            members = event.get("m")
            if members is None:  # an event without the START data: read it
                return await self._on_state(lobby, await self._game_state(lobby.game))
            await self._send_start(lobby, members, event.get("h"))
            if members[0] == lobby.user:
                await self._notify_turn(lobby, 0, members)
        elif kind == "turn" and event.get("u") == lobby.user:
            await self._notify_turn(lobby, int(event.get("n", 0)), event.get("o"))
        elif kind == "complete":
            await self._end(lobby, P.COMPLETE)
            return True
        elif kind == "timeout":
            await self._end(lobby, P.TIMED_OUT)
            return True
        return False

    @staticmethod
    async def _end(lobby: _Lobby, what: str) -> None:
        await lobby.ws.send(P.dumps(P.game_notice(lobby.game, what)))

    async def _game_state(self, game: str, user: str | None = None) -> dict:
        """Status, order, turns taken and members in one round trip; with ``user``, also
        check membership (ProtocolError if the game or the membership is unknown)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self.keys.status(game))
            pipe.lrange(self.keys.order(game), 0, -1)
            pipe.llen(self.keys.logs(game))
            pipe.smembers(self.keys.game(game))
            status, order, turns, members = await pipe.execute()
        if user is not None:
            self._check_member(status, user in members)
        return {"status": status, "order": order, "turns": turns, "members": sorted(members)}

    async def _send_start(self, lobby: _Lobby, members: list[str], heroes: dict | None = None) -> None:
        """Send START once. The frame is the same for every member, so this process
        builds it once per game (from the start event's heroes, or read from Redis)
        and shares it among its lobbies."""
        if lobby.started:
            return
        frame = self._starts.get(lobby.game)
        if frame is None:
            if heroes is not None:
                frame = self._loop.create_future()
                frame.set_result(P.dumps(P.game_start(lobby.game, members, {
                    u: dict(zip(("id", "attack", "health"), h)) for u, h in heroes.items()})))
            else:
                frame = asyncio.ensure_future(self._start_frame(lobby.game, members))
            self._starts[lobby.game] = frame
        lobby.started = True
        await lobby.ws.send(await asyncio.shield(frame))

    async def _start_frame(self, game: str, members: list[str]) -> str:
        async with self._redis.pipeline(transaction=False) as pipe:
            for u in members:
                pipe.hgetall(self.keys.hero(game, u))
            heroes = {u: h for u, h in zip(members, await pipe.execute()) if h}  # none if already cleaned
        return P.dumps(P.game_start(game, members, heroes))

    async def _notify_turn(self, lobby: _Lobby, turns: int, order: list[str] | None) -> None:
        if turns <= lobby.notified:
            return
        lobby.notified = turns
        if self.settings.server_sleep > 0 and turns > 0:
            await asyncio.sleep(self.settings.server_sleep)
        if self.settings.server_sleep > 0 or turns == 0:
            await self._scripts["waiting"](keys=[self.keys.status(lobby.game)])
        if lobby.v2:
            await lobby.ws.send(P.dumps(P.turn_notice_v2(lobby.game, order or [lobby.user])))
        else:
            await lobby.ws.send(P.dumps(P.game_notice(lobby.game, P.YOUR_TURN)))

    async def _time_out(self, game: str) -> None:
        if self.keys.cluster:  # first stop offering it (the matchmaking slot's half)
            n = await self._redis.get(self.keys.game_participants(game))
            if n is not None:
                await self._scripts["cluster_close"](keys=[self.keys.players_open(n)], args=[game])
        result = await self._scripts["timeout"](keys=[self.keys.status(game), self.keys.game(game)],
                                                args=[game, self.keys.events_channel, P.timestamp(),
                                                      self._lobby_channel])
        if int(result[0]) == 1:
            self._game_over(game, STATUS.TIMED_OUT, None, result[1:])

    # -- the v2 session: one connection for a player's whole life ---------------------
    async def _session(self, ws: ServerConnection) -> None:
        """Requests and the current game's events go through one queue, handled in
        order: a reply is always sent before the notices its action caused."""
        queue: asyncio.Queue = asyncio.Queue()
        reader = asyncio.create_task(self._read_into(ws, queue))
        session = _Session(ws, queue)
        try:
            while True:
                lobby = session.lobby
                item = await self._next_item(lobby, queue)
                if not isinstance(item, dict):  # a request
                    await self._reply(ws, P.SESSION, self._session_request(session, item))
                elif item.get("t") == "closed":
                    return
                elif lobby is not None and item.get("g") in (lobby.game, None) and await self._on_event(lobby, item):
                    self._unregister(lobby)
                    session.lobby = None
        finally:
            reader.cancel()
            if session.lobby is not None:
                self._unregister(session.lobby)

    async def _session_request(self, session: _Session, text) -> list:
        verb, req = P.parse_session(text)
        if verb == P.LOGIN_V2:
            if session.user is not None:
                raise P.ProtocolError("ALREADY LOGGED IN", "ALREADY_LOGGED_IN",
                                      "this session is logged in; open a new one for another user")
            done = await self._log_in(req["USER"])
            if done is None:
                return [P.no_heroes()]
            session.user = done[0]
            return [P.logged_in(*done)]
        if session.user is None:
            raise P.ProtocolError("NOT LOGGED IN", "NOT_LOGGED_IN", "send LOGIN first")
        lobby = session.lobby
        if verb == P.FIND_V2:
            if lobby is not None:
                raise P.ProtocolError("ALREADY IN A GAME", "ALREADY_IN_A_GAME",
                                      "FIND again after this game's COMPLETE or TIMED OUT")
            self._joining += 1
            try:
                game, hero = await self._join(session.user, req["PARTICIPANTS"])
                # registered before anything else runs here: later events are delivered,
                # and a start event that came first was kept in _early
                lobby = session.lobby = _Lobby(game, session.user, session.ws, session.queue, v2=True,
                                               deadline=self._loop.time() + self.settings.lobby_timeout)
                self._register(lobby)
                early = self._early.get(game)  # not popped: another member may be joining too
                if early is not None:
                    session.queue.put_nowait(early)
            finally:
                self._joining -= 1
                if not self._joining:
                    self._early.clear()
            return [P.joined(game, hero)]
        if lobby is None:
            raise P.ProtocolError("NOT IN A GAME", "NOT_IN_A_GAME", "FIND a game first")
        if verb == P.ATTACK_V2:
            return [await self._act(lobby.game, session.user, req["ENEMY_TOKEN"])]
        return await self._hero({"GAME_TOKEN": lobby.game, "USER_TOKEN": req["USER_TOKEN"]})


@dataclass(eq=False)
class _Session:
    """A v2 connection: its user once logged in, and the game it follows."""

    ws: ServerConnection
    queue: asyncio.Queue
    user: str | None = None
    lobby: _Lobby | None = None
