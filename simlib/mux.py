"""One pipelined Redis connection for the game server's hot path (its Lua scripts).

redis-py's asyncio client takes a connection from its pool for each command and keeps it
until the reply is read; at a thousand scripts a second that bookkeeping was the largest
cost in the server's event loop (py-spy: about 40 % of it, for 1.3 script calls per
attack). Redis answers the commands of one connection in the order they came, so a single
connection can carry every caller's commands at once:

* a call appends its encoded command to a buffer and waits on a future; the buffer is
  written once per turn of the event loop, so callers of the same turn share one write
  (automatic pipelining);
* replies are parsed by hiredis as they arrive, each resolving the oldest future.

Errors keep redis-py's types (``redis.ResponseError`` for an error reply,
``redis.ConnectionError`` when the connection drops), so callers handle both clients
alike. A call after a drop connects again. Only plain ``redis://`` URLs are taken
(:func:`for_url` returns None otherwise, and the caller keeps redis-py).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
import redis

__all__ = ["Mux", "MuxScript", "for_url"]


class _Protocol(asyncio.Protocol):
    def __init__(self, mux: Mux):
        self.mux = mux

    def data_received(self, data: bytes) -> None:
        self.mux._feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.mux._lost(exc)


class Mux:
    """Commands from any number of tasks over one connection, replies matched in order."""

    def __init__(self, host: str, port: int, *, username: str | None = None, password: str | None = None,
                 db: int = 0, stats: dict | None = None):
        self.host, self.port = host, port
        self._auth = [username, password] if username and password else [password] if password else []
        self._db = db
        self.stats = stats if stats is not None else {}
        self._transport: asyncio.Transport | None = None
        self._reader: hiredis.Reader | None = None
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self._out: list[bytes] = []
        self._flushing = False
        self._connecting: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def execute(self, *args) -> Any:
        """Send one command; its reply (str, int, list, None), or raise what Redis said."""
        if self._transport is None:
            await self._connect()
        return await self._send(args)

    def _send(self, args) -> asyncio.Future:
        fut = self._loop.create_future()
        self._waiters.append(fut)
        self._out.append(hiredis.pack_command(args))
        self.stats["commands"] = self.stats.get("commands", 0) + 1
        if not self._flushing:
            self._flushing = True
            self._loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._flushing = False
        if self._out and self._transport is not None:
            self._transport.write(b"".join(self._out))
            self.stats["round_trips"] = self.stats.get("round_trips", 0) + 1
        self._out.clear()

    async def _connect(self) -> None:
        if self._connecting is not None:  # another caller is connecting: wait for it
            await asyncio.shield(self._connecting)
            return
        self._loop = asyncio.get_running_loop()
        self._connecting = self._loop.create_future()
        try:
            try:
                transport, _ = await self._loop.create_connection(lambda: _Protocol(self), self.host, self.port)
            except OSError as exc:
                raise redis.ConnectionError(f"cannot connect to Redis at {self.host}:{self.port}: {exc}") from None
            self._reader = hiredis.Reader(encoding="utf-8", replyError=redis.ResponseError)
            self._transport = transport
            if self._auth:
                await self._send(("AUTH", *self._auth))
            if self._db:
                await self._send(("SELECT", self._db))
            self._connecting.set_result(None)
        except BaseException as exc:
            self._connecting.set_exception(exc)
            self._connecting.exception()  # retrieved: waiters get it through shield
            raise
        finally:
            self._connecting = None

    def _feed(self, data: bytes) -> None:
        reader = self._reader
        try:
            reader.feed(data)
            reply = reader.gets()
            while reply is not False:
                fut = self._waiters.popleft()
                if not fut.done():  # a caller that was cancelled still had its reply come
                    if isinstance(reply, redis.ResponseError):
                        fut.set_exception(reply)
                    else:
                        fut.set_result(reply)
                reply = reader.gets()
        except hiredis.ProtocolError as exc:  # the stream is unreadable: start afresh
            self._transport.abort()
            self._lost(exc)

    def _lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._out.clear()
        waiters, self._waiters = self._waiters, collections.deque()
        for fut in waiters:
            if not fut.done():
                fut.set_exception(redis.ConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    async def aclose(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def register_script(self, source: str) -> MuxScript:
        return MuxScript(self, source)


class MuxScript:
    """A Lua script called by its SHA (loaded on first use, or after a SCRIPT FLUSH);
    called like redis-py's: ``await script(keys=[...], args=[...])``."""

    def __init__(self, mux: Mux, source: str):
        self.mux = mux
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, keys=(), args=()) -> Any:
        try:
            return await self.mux.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except redis.ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self.mux.execute("EVAL", self.source, len(keys), *keys, *args)


def for_url(url: str, stats: dict | None = None) -> Mux | None:
    """A :class:`Mux` for a plain ``redis://host:port[/db]`` URL (with optional
    user and password); None for TLS, Unix sockets and anything else."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        return None
    db = parts.path.strip("/")
    return Mux(parts.hostname, parts.port or 6379, username=unquote(parts.username) if parts.username else None,
               password=unquote(parts.password) if parts.password else None, db=int(db) if db.isdigit() else 0,
               stats=stats)
