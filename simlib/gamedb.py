"""Every Redis call a game makes, for the game server and the deadline watcher.

Each state change is one Lua script (``simlib/lua``, see :mod:`simlib.scripts`), so a
join, an attack, a forfeit or a time-out is atomic. :class:`GameDB` is the single-Redis
version: its scripts also keep the global indexes (the games lists, the deadlines) in
the same step. :class:`ClusterGameDB` is the Redis Cluster version: a script may touch
one hash slot only, so it updates the global keys in steps of their own.

A script that changes a game returns the events it published on the events channel
(exactly as published); methods here return them for the caller to deliver to its own
followers at once, and write the game's records for this process's log handlers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass, field

import redis
import redis.asyncio

from . import mux
from . import protocol as P
from .config import Settings
from .keys import Keyspace
from .records import Records
from .scripts import SCRIPTS, load_script
from .store import connect, connect_async

__all__ = ["GameDB", "ClusterGameDB", "Joined", "Expired", "open_gamedb"]

log = logging.getLogger("lib.server.lobby")


@dataclass
class Joined:
    game: str
    hero: int
    joined: int
    deadline: int  # ms on the Redis clock: when the lobby times out
    events: list[str] = field(default_factory=list)


@dataclass
class Expired:
    """What applying a deadline did: kind is GONE, LATER, TIMEOUT or FORFEIT."""

    kind: str
    deadline: int  # the next deadline (ms), 0 if none
    record: str = ""
    events: list[str] = field(default_factory=list)


def _events(items) -> list[str]:
    return [e for e in items if e]


def _refused(result) -> P.ProtocolError:
    return P.ProtocolError(result[1], result[2], None)


class GameDB:
    """The game's Redis calls on one Redis. ``server`` is the id of the game server whose
    v2 sessions log in through it (its lease key is kept by :meth:`heartbeat`);
    ``roster`` a roster file to load again when ``superheros`` is found empty (after
    Redis restarted empty, say), or None to answer "no heroes" then."""

    def __init__(self, settings: Settings, *, stats: dict | None = None, server: str = "",
                 roster: str | None = None):
        self.settings = settings
        self.keys = Keyspace(cluster=settings.redis_cluster)
        self.stats = stats if stats is not None else {}
        self.server = server
        self.roster = roster
        self.records = Records(settings)
        self._reloading: asyncio.Lock | None = None
        self._redis = connect_async(settings, stats=self.stats)
        self._mux = self._calls()
        self._scripts = {name: (self._mux or self._redis).register_script(load_script(name, settings.redis_cluster))
                         for name in SCRIPTS}
        self.run = settings.run_id  # learnt from Redis by open() when not set
        self.turn_ms = round((settings.server_sleep + settings.turn_timeout) * 1000)
        self.lobby_ms = round(settings.lobby_timeout * 1000)

    def _calls(self) -> mux.Mux | None:
        # the scripts (every state change) go over one pipelined connection
        return mux.for_url(self.settings.redis_url, stats=self.stats)

    async def aclose(self) -> None:
        if self._mux is not None:
            await self._mux.aclose()
        if isinstance(self._redis, redis.asyncio.RedisCluster):  # closes its nodes' pools itself
            await self._redis.aclose()
        else:
            await self._redis.aclose(close_connection_pool=True)

    async def open(self) -> None:
        """Learn the run id (RUN_ID, else the one Redis keeps: made if missing)."""
        if not self.run:
            await self._redis.set(self.keys.run, uuid.uuid4().hex[:12], nx=True)
            self.run = await self._redis.get(self.keys.run)

    def _context(self) -> list:
        """ARGV[1..11] of every script that changes a game (``context`` in _prelude.lua)."""
        lobby = self.records.lobby_channel
        return [P.timestamp(), self.keys.events_channel, self.records.combat_channel, lobby,
                "1" if self.settings.server_sleep > 0 else "0", self.turn_ms, self.lobby_ms,
                self.settings.worker_channel if lobby else "", self._task_stream, self.run or "",
                self.keys.seq(self.run or "")]

    @property
    def _task_stream(self) -> str:
        """Where scripts add clean-up tasks ('' = not to a stream)."""
        return self.keys.tasks if self.settings.task_transport == "streams" else ""

    def _game_keys(self, game: str, *more: str) -> list[str]:
        """The KEYS of a game script: the status key (it routes the call on a cluster),
        then the global keys the script keeps itself (single Redis only)."""
        return [self.keys.status(game), self.keys.deadlines, *more]

    # -- users -------------------------------------------------------------------------
    async def log_in(self, name: str, session: bool = False) -> tuple[str, bool] | None:
        """The user's token and whether this login created it; None when no heroes are
        loaded. ``session``: a v2 session logs in and holds the name while it lives
        (ProtocolError ``USER IN USE`` when a live session holds it already)."""
        for _attempt in range(2):
            result = await self._login(name, session)
            if int(result[0]) != -1 or not await self.reload_roster():
                break
        code = int(result[0])
        if code == -1:
            return None
        if code == -2:
            raise P.ProtocolError("USER IN USE", "USER_IN_USE",
                                  "a live session is logged in with this name; choose another")
        token, created = result[1], code == 1
        if created:
            self.records.user_created(name, token)
        return token, created

    def _new_user_token(self, name: str) -> str:
        """A token for a new user: chance, or in a seeded run made from the seed and the name
        (so the turn order, the sorted tokens, repeats)."""
        if not self.settings.run_seed:
            return str(uuid.uuid4())
        digest = hashlib.sha1(f"{self.settings.run_seed}:user:{name}".encode()).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))

    async def _login(self, name: str, session: bool) -> list:
        k = self.keys
        return await self._scripts["login"](keys=[k.users, k.user_tokens, k.sessions, k.superheros],
                                            args=[name, self._new_user_token(name), self.server if session else ""])

    async def log_out(self, name: str) -> None:
        """A v2 session ended: its name is free again."""
        await self._scripts["logout"](keys=[self.keys.sessions], args=[name, self.server])

    async def heartbeat(self, ttl: float) -> None:
        """Keep this server's lease for ``ttl`` seconds: while it lives, its sessions' names
        are theirs. A server that dies loses them ``ttl`` seconds later."""
        await self._redis.set(self.keys.server_lease(self.server), "1", px=round(ttl * 1000))

    async def reclaim(self, sessions: dict[str, str]) -> None:
        """After Redis came back (perhaps empty): this server's live v2 sessions (name ->
        token) hold their names and tokens again, so they play on without logging in."""
        k = self.keys
        for name, token in sessions.items():
            async with self._redis.pipeline(transaction=True) as pipe:  # one slot: {users}
                pipe.hsetnx(k.users, name, token)
                pipe.sadd(k.user_tokens, token)
                pipe.hset(k.sessions, name, self.server)
                await pipe.execute()

    async def reload_roster(self) -> bool:
        """Load ``roster`` into an empty ``superheros``; True when heroes are there now."""
        if self.roster is None:
            return False
        if self._reloading is None:
            self._reloading = asyncio.Lock()
        async with self._reloading:
            if await self._redis.exists(self.keys.superheros):
                return True
            count = await asyncio.to_thread(self._load_roster)
            log.warning("superheros was empty (Redis restarted?): loaded %d heroes again", count)
            return count > 0

    def _load_roster(self) -> int:
        from .roster import build_db, load_roster  # noqa: PLC0415

        with connect(self.settings) as client:
            return build_db(client, load_roster(None if self.roster == "default" else self.roster), self.keys)

    # -- joining -----------------------------------------------------------------------
    async def join(self, user: str, n: int) -> Joined:
        """Seat ``user`` in a lobby for ``n`` players (opening one if none is open)."""
        for _attempt in range(2):
            try:
                joined = await self._join(user, n)
                break
            except P.ProtocolError as exc:
                if exc.code != "NO_HEROES" or not await self.reload_roster():
                    raise
        self.records.joined(joined.game, user, joined.hero, joined.joined, n)
        self.records.events(joined.events)
        return joined

    async def _join(self, user: str, n: int) -> Joined:
        k = self.keys
        result = await self._scripts["join"](
            keys=[k.players(n), k.deadlines, k.participants, k.superheros, k.user_tokens, k.game_count(self.run)],
            args=[*self._context(), user, n, str(uuid.uuid4()), self.settings.run_seed])
        if result[0] == "ERR":
            raise _refused(result)
        return Joined(result[1], int(result[2]), int(result[3]), int(result[4]), _events(result[5:]))

    # -- playing -------------------------------------------------------------------------
    async def act(self, game: str, user: str, enemy: str | None) -> tuple[str, str | None]:
        """Apply one action; (the record as logged, the event it published or None)."""
        result = await self._scripts["action"](keys=self._game_keys(game),
                                               args=[*self._context(), game, user, enemy or ""])
        kind = result[0]
        if kind == "ERR":
            raise _refused(result)
        if kind == "NA":
            return result[1], None
        self.stats["attacks"] = self.stats.get("attacks", 0) + 1
        self.records.combat(result[1])
        self.records.events([result[2]])
        await self._globals(game, [result[2]])
        return result[1], result[2]

    async def quit(self, game: str, user: str, reason: str = "DISCONNECTED") -> list[str]:
        """``user`` left ``game``: its seat back while the lobby fills, a forfeit in a game
        in progress. Returns the events published."""
        result = await self._scripts["quit"](keys=self._game_keys(game, self.keys.participants),
                                             args=[*self._context(), game, user, reason])
        kind = result[0]
        events = _events(result[2:] if kind == "FORFEIT" else result[1:])
        if kind == "LEFT":
            self.records.left(game, user)
            await self._left(game, user)
        elif kind == "FORFEIT":
            self.records.combat(result[1])
        elif kind == "TIMEOUT":
            await self._closed(game)
        self.records.events(events)
        await self._globals(game, events)
        return events

    async def expire(self, game: str) -> Expired:
        """Apply ``game``'s deadline if it is due (any process may: the first one does)."""
        result = await self._scripts["expire"](keys=self._game_keys(game), args=[*self._context(), game])
        done = Expired(result[0], int(result[1]), result[2], _events(result[3:]))
        if done.kind == "FORFEIT":
            self.records.combat(done.record)
        elif done.kind == "TIMEOUT":
            await self._closed(game)
        self.records.events(done.events)
        await self._globals(game, done.events, done)
        return done

    async def due(self, limit: int = 100) -> tuple[int, int, list[str]]:
        """(now on the Redis clock, the earliest deadline or -1, games due) in ms."""
        result = await self._scripts["due"](keys=[self.keys.deadlines], args=[limit])
        return int(result[0]), int(result[1]), list(result[2:])

    async def mark_waiting(self, game: str) -> None:
        await self._scripts["waiting"](keys=[self.keys.status(game)])

    # hooks for the cluster variant (a single Redis's scripts did it all) ----------------
    async def _globals(self, game: str, events: list[str], expired: Expired | None = None) -> None:
        """What a script could not do itself on a cluster (global keys in other slots)."""

    async def _left(self, game: str, user: str) -> None:
        pass

    async def _closed(self, game: str) -> None:
        pass

    # -- reading -------------------------------------------------------------------------
    async def state(self, game: str, user: str | None = None) -> dict:
        """Status, order, turns taken and members in one round trip; with ``user``, also
        check membership (ProtocolError if the game or the membership is unknown)."""
        k = self.keys
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(k.status(game))
            pipe.lrange(k.order(game), 0, -1)
            pipe.llen(k.logs(game))
            pipe.smembers(k.game(game))
            status, order, turns, members = await pipe.execute()
        if user is not None:
            check_member(status, user in members)
        return {"status": status, "order": order, "turns": turns, "members": sorted(members)}

    async def hero(self, game: str, user: str) -> dict:
        """``user``'s hero in ``game`` (any member may ask about any member)."""
        k = self.keys
        async with self._redis.pipeline(transaction=False) as pipe:  # one round trip
            pipe.get(k.status(game))
            pipe.sismember(k.game(game), user)
            pipe.hgetall(k.hero(game, user))
            status, member, hero = await pipe.execute()
        check_member(status, member)
        if not hero:  # the worker's expiry got there first
            raise P.ProtocolError("HERO NOT AVAILABLE", "HERO_GONE", "this game's hero records have been cleaned up")
        return hero

    async def heroes(self, game: str, members: list[str]) -> dict[str, dict]:
        """Each member's hero (those not cleaned up yet)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for u in members:
                pipe.hgetall(self.keys.hero(game, u))
            return {u: h for u, h in zip(members, await pipe.execute()) if h}


def check_member(status: str | None, member: bool) -> None:
    """Reject a request naming a game that does not exist, or a user not in it."""
    if status is None:
        raise P.ProtocolError("UNKNOWN GAME TOKEN", "UNKNOWN_GAME_TOKEN", "GAME_TOKEN does not name a game")
    if not member:
        raise P.ProtocolError("USER NOT IN THIS GAME", "NOT_A_MEMBER", "USER_TOKEN is not a member of this game")


class ClusterGameDB(GameDB):
    """The same calls on a Redis Cluster, where a script touches one hash slot only. The
    global keys live in other slots than a game's, so they are kept in steps of their own:

    * a join takes two atomic steps, a seat beside ``games:players:<n>`` and then the
      game's own keys (``docs/keyspace.md``);
    * the deadlines index is updated after each script from the events it published
      (a deadline is always in its game's own key; the index only helps find it, and an
      index entry that is early or stale is corrected when it comes due);
    * with TASK_TRANSPORT=streams, a finished game's clean-up tasks are added to the
      tasks stream after the script that ended it (the sweep finds a game whose tasks a
      dying server never added);
    * the lobby records go through the log transport (see :class:`Records`).
    """

    def _calls(self) -> None:  # redis-py routes each script to its slot's node
        return None

    @property
    def _task_stream(self) -> str:  # in another slot: added after the script (_globals)
        return ""

    def _game_keys(self, game: str, *more: str) -> list[str]:
        return [self.keys.status(game)]

    async def _login(self, name: str, session: bool) -> list:
        if not await self._redis.exists(self.keys.superheros):  # another slot: checked on its own
            return [-1]
        k = self.keys
        return await self._scripts["login"](keys=[k.users, k.user_tokens, k.sessions],
                                            args=[name, self._new_user_token(name), self.server if session else ""])

    async def _join(self, user: str, n: int) -> Joined:
        k = self.keys
        if not await self._redis.sismember(k.user_tokens, user):
            raise P.ProtocolError("UNKNOWN USER TOKEN", "UNKNOWN_USER_TOKEN",
                                  "USER_TOKEN does not name a user; log in first")
        if not await self._redis.exists(k.superheros):
            raise P.ProtocolError("LIST OF SUPERHEROS NOT AVAILABLE", "NO_HEROES", None)
        for _attempt in range(5):
            fresh = str(uuid.uuid4())
            # indexed ahead of the lobby it may open, so that lobby is found even if this
            # server dies between the steps; an index entry for no game is dropped when due
            await self._redis.zadd(k.deadlines, {fresh: round(time.time() * 1000) + self.lobby_ms})
            game, seat, opened = await self._scripts["cluster_seat"](keys=[k.players(n), k.players_open(n)],
                                                                     args=[user, n, fresh])
            if game != fresh:
                await self._redis.zrem(k.deadlines, fresh)
            result = await self._scripts["cluster_join"](
                keys=[k.status(game)],
                args=[*self._context(), game, user, n, "1" if int(opened) else "0", *await self._hero_candidates()])
            if result[0] == "CLOSED":  # it timed out between the steps: stop offering it, try again
                self.records.events(_events(result[1:]))
                await self._globals(game, _events(result[1:]))
                await self._scripts["cluster_close"](keys=[k.players_open(n)], args=[game, ""])
                continue
            if result[0] == "ERR":
                raise _refused(result)
            joined = Joined(game, int(result[2]), int(result[3]), int(result[4]), _events(result[5:]))
            await self._redis.zadd(k.deadlines, {game: joined.deadline})
            if int(seat):  # a new member (seat 0: already seated, nothing changed)
                await self._redis.zincrby(k.participants, 1, game)
            await self._globals(game, joined.events)
            return joined
        raise P.ProtocolError("NO OPEN GAME", "NO_OPEN_GAME", "no lobby could be joined; try again")

    _roster: list[tuple[str, str, str]] | None = None

    async def _hero_candidates(self, count: int = 12) -> list:
        """Random heroes as (id, attack, health) for cluster_join.lua, which keeps the first
        one the game has not taken. The roster is read once per server (``superheros``
        is in another slot than any game)."""
        if not self._roster:
            raw = await self._redis.hgetall(self.keys.superheros)
            self._roster = [(hid, *map(str, (json.loads(v)["powerstats"][f] for f in ("attack", "health"))))
                            for hid, v in raw.items()]
        if not self._roster:
            raise P.ProtocolError("LIST OF SUPERHEROS NOT AVAILABLE", "NO_HEROES", None)
        picks = random.sample(self._roster, min(count, len(self._roster)))
        return [x for hero in picks for x in hero]

    async def _globals(self, game: str, events: list[str], expired: Expired | None = None) -> None:
        k = self.keys
        if expired is not None and expired.kind == "LATER":
            await self._redis.zadd(k.deadlines, {game: expired.deadline})
        elif expired is not None and expired.kind == "GONE":
            await self._redis.zrem(k.deadlines, game)
        for text in events:
            event = json.loads(text)
            if "d" in event:
                await self._redis.zadd(k.deadlines, {event["g"]: int(event["d"])})
            elif event.get("t") in ("complete", "timeout"):
                await self._redis.zrem(k.deadlines, event["g"])
                if self.settings.task_transport == "streams":
                    for user in sorted(event["m"]):
                        await self._redis.xadd(k.tasks, {"game_token": event["g"], "user_token": user})

    async def _left(self, game: str, user: str) -> None:
        await self._redis.zincrby(self.keys.participants, -1, game)
        await self._unseat(game, user)

    async def _closed(self, game: str) -> None:
        await self._unseat(game, "")

    async def _unseat(self, game: str, user: str) -> None:
        n = await self._redis.get(self.keys.game_participants(game))
        if n is not None:
            await self._scripts["cluster_close"](keys=[self.keys.players_open(n)], args=[game, user])


def open_gamedb(settings: Settings, **kwargs) -> GameDB:
    """The :class:`GameDB` for these settings (the cluster variant with REDIS_CLUSTER=1)."""
    return (ClusterGameDB if settings.redis_cluster else GameDB)(settings, **kwargs)
