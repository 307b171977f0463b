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
alike. A command already written when the connection drops fails (it is not sent again:
a script may have run), and so does one whose connection dropped before it was written;
the next call connects again. A reply is only ever matched to a command written on the
same connection: a dropped connection's late callbacks are ignored.

A :class:`Mux` can also carry a subscription (:meth:`Mux.subscribe`): each message is
handed to a callback straight from the socket's data callback, with no task per message,
and ``on_lost`` says when the connection dropped (subscribe again, then catch up).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
import redis

__all__ = ["Mux", "MuxScript", "for_url"]


class _Protocol(asyncio.Protocol):
    """One connection's callbacks; those of a connection that is no longer the mux's
    (it was replaced after a drop) are ignored, so its late news cannot touch the next."""

    def __init__(self, mux: Mux):
        self.mux = mux
        self.lost = False

    def data_received(self, data: bytes) -> None:
        if self.mux._protocol is self:
            self.mux._feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.mux._protocol is self:
            self.mux._lost(exc)


class Mux:
    """Commands from any number of tasks over one connection, replies matched in order."""

    def __init__(self, host: str | None, port: int | None, *, username: str | None = None,
                 password: str | None = None, db: int = 0, stats: dict | None = None, tls: bool = False,
                 path: str | None = None):
        self.host, self.port, self.path, self.tls = host, port, path, tls
        self.on_message: Callable[[str], None] | None = None
        self.on_lost: Callable[[Exception | None], None] | None = None
        self._closing = False
        self._auth = [username, password] if username and password else [password] if password else []
        self._db = db
        self.stats = stats if stats is not None else {}
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
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
        if self._transport is None:  # lost since the caller connected: never queue a reply nobody sends
            fut.set_exception(redis.ConnectionError("connection to Redis lost before the command was sent"))
            return fut
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
            where = self.path or f"{self.host}:{self.port}"
            try:
                if self.path is not None:
                    transport, protocol = await self._loop.create_unix_connection(lambda: _Protocol(self), self.path)
                else:
                    transport, protocol = await self._loop.create_connection(
                        lambda: _Protocol(self), self.host, self.port,
                        ssl=ssl.create_default_context() if self.tls else None)
            except OSError as exc:
                raise redis.ConnectionError(f"cannot connect to Redis at {where}: {exc}") from None
            if protocol.lost:  # dropped before we took it
                raise redis.ConnectionError(f"connection to Redis at {where} closed as it opened")
            self._reader = hiredis.Reader(encoding="utf-8", replyError=redis.ResponseError)
            self._transport, self._protocol = transport, protocol
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
                if self.on_message is not None and type(reply) is list and reply[0] == "message":
                    self.on_message(reply[2])  # [message, channel, data]: no waiter, a push
                    reply = reader.gets()
                    continue
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
        if self._transport is None and not self._waiters:
            return  # already handled (an unreadable stream, then its connection_lost)
        self._transport = self._protocol = None
        self._out.clear()
        waiters, self._waiters = self._waiters, collections.deque()
        for fut in waiters:
            if not fut.done():
                fut.set_exception(redis.ConnectionError(f"connection to Redis lost: {exc or 'closed'}"))
        if self.on_lost is not None and not self._closing:
            self.on_lost(exc)

    async def subscribe(self, channel: str, on_message: Callable[[str], None]) -> None:
        """Subscribe this connection to ``channel``; from now on it carries nothing else.
        ``on_message(data)`` is called for each message, in order."""
        self.on_message = on_message
        await self.execute("SUBSCRIBE", channel)

    async def aclose(self) -> None:
        self._closing = True
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


def for_url(url: str, stats: dict | None = None) -> Mux:
    """A :class:`Mux` for a Redis URL: ``redis://`` or ``rediss://`` (TLS, the system's
    trust store) ``[user:password@]host[:port][/db]``, or ``unix://[:password@]/path[?db=N]``."""
    parts = urlsplit(url)
    auth = {"username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None, "stats": stats}
    if parts.scheme == "unix":
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        db = query.get("db", "0")
        return Mux(None, None, path=parts.path, db=int(db) if db.isdigit() else 0, **auth)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(f"not a Redis URL: {url!r} (redis://, rediss:// or unix://)")
    db = parts.path.strip("/")
    return Mux(parts.hostname, parts.port or 6379, db=int(db) if db.isdigit() else 0,
               tls=parts.scheme == "rediss", **auth)
