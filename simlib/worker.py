"""The clean-up worker: hears "Cleaning Game Records" tasks and expires a game's keys.

For each task ``{"game_token": g, "user_token": u}`` it puts REDIS_EXPIRY on u's hero
hash in g; when u is the game's host it also expires every other key of the game and
removes g from ``games:participants`` and ``games:players:<n>``. Every step is
idempotent, so several workers may handle the same task (pub/sub gives each of them
every message) and the result is the same.

Tasks arrive through a :class:`MessageSource`. :class:`PubSubSource` is Redis pub/sub,
which drops what is published while no worker listens: a fact the tutorial measures.
The interface leaves room for a Redis Streams source (each task to one worker, kept
until acknowledged) to pass the same tests.

A worker also watches the games' deadlines (:mod:`simlib.deadlines`), in a thread of
its own: so lobbies time out and idle players forfeit even when every game server is
gone. When Redis goes away, the worker waits for it and listens again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from typing import Protocol

import redis

from . import aio
from .config import Settings
from .keys import WORKER_LOGGER, Keyspace
from .store import connect
from .sweep import clean, sweep

__all__ = ["Worker", "MessageSource", "PubSubSource", "CLEAN_MESSAGE"]

CLEAN_MESSAGE = "Cleaning Game Records"
_DRAIN = "simlib:drain:"
log = logging.getLogger(WORKER_LOGGER)


class MessageSource(Protocol):
    """Where tasks come from. ``receive`` blocks up to ``timeout`` seconds and returns
    one decoded message, or None when nothing came."""

    def receive(self, timeout: float) -> dict | str | None: ...

    def close(self) -> None: ...


class PubSubSource:
    """Redis pub/sub on one channel; subscribed (and so listening) once constructed."""

    def __init__(self, url: str, channel: str):
        self.channel = channel
        # Messages are read as bytes and decoded here: a payload that is not UTF-8 must
        # be one ignored message, not an exception out of the parser (which, without
        # hiredis, would leave the connection stuck on that message). A plain connection
        # to the one node named by ``url`` serves a cluster too: classic pub/sub
        # messages reach every node.
        self._pool = redis.ConnectionPool.from_url(url, decode_responses=False)
        self._pubsub = redis.Redis(connection_pool=self._pool).pubsub()
        self._pubsub.subscribe(channel)
        # wait for the confirmation, so that "constructed" means "listening"
        confirm = self._pubsub.get_message(timeout=5.0)
        if not confirm or confirm.get("type") != "subscribe":
            raise RuntimeError(f"could not subscribe to {channel!r}")

    def receive(self, timeout: float) -> dict | str | None:
        message = self._pubsub.get_message(timeout=timeout)
        if message is None or message["type"] != "message":
            return None
        try:
            data = message["data"].decode("utf-8")
        except UnicodeDecodeError:
            return {}
        if data.startswith(_DRAIN):
            return data
        try:
            decoded = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            return {}
        return decoded if isinstance(decoded, dict) else {}

    def close(self) -> None:
        self._pubsub.close()
        self._pool.disconnect()


class Worker:
    """``run()`` blocks until :meth:`stop`; ``run(burst=True)`` returns after ``idle``
    quiet seconds; :meth:`run_async` is the asyncio twin. :attr:`ready` is set once the
    worker listens."""

    def __init__(self, settings: Settings, *, name: str | None = None, source: MessageSource | None = None):
        self.settings = settings
        self.keys = Keyspace(cluster=settings.redis_cluster)
        self.name = name or f"worker-{uuid.uuid4().hex[:6]}"
        self.ready = threading.Event()
        self.handled = 0  # clean-up tasks applied
        self.received = 0  # messages read from the source (drain markers not counted)
        self.swept = 0  # finished games cleaned by a sweep (tasks missed while Redis was away)
        self.deadlines: dict[str, int] = {}  # deadlines this worker applied, by kind (once stopped)
        self._source = source
        self._stopping = threading.Event()
        self._drain_token: str | None = None
        self._client: redis.Redis | None = None

    def run(self, burst: bool = False, idle: float = 1.0, deadlines: bool = True) -> int:
        """Handle tasks until stopped (or, with ``burst``, until ``idle`` quiet seconds).
        Returns the number of clean-up tasks handled. ``deadlines``: also apply the
        games' deadlines while running."""
        self._client = connect(self.settings)
        source = self._source or PubSubSource(self.settings.redis_url, self.settings.worker_channel)
        watcher = _DeadlineThread(self.settings) if deadlines else None
        log.info("Worker %s listening on %s", self.name, self.settings.worker_channel)
        self.ready.set()
        retry, missed = 0.1, False
        try:
            while not self._stopping.is_set():
                try:
                    message = source.receive(timeout=idle if burst else 0.5)
                    retry = 0.1
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    # Redis is away (it restarts, say): wait for it, then listen again. What
                    # is published meanwhile is lost to pub/sub, as to any subscriber: so
                    # once it listens again, the worker sweeps for games whose task it missed.
                    log.warning("Worker %s lost Redis (%s); listening again in %.1f s", self.name, exc, retry)
                    if self._stopping.wait(retry):
                        break
                    retry = min(retry * 2, 2.0)
                    missed = True
                    continue
                if missed and self._sweep_after_gap():
                    missed = False
                if message is None:
                    if burst:
                        break
                    continue
                if isinstance(message, str):  # a drain marker: plumbing, not a received message
                    if message == self._drain_token:
                        break
                    continue
                self.received += 1
                if message.get("log_message") == CLEAN_MESSAGE and isinstance(message.get("task"), dict):
                    try:
                        self.clean(message["task"])
                    except (redis.ConnectionError, redis.TimeoutError) as exc:
                        log.warning("Worker %s could not clean %s: %s", self.name, message["task"], exc)
        finally:
            if watcher is not None:
                self.deadlines = watcher.stop()
            source.close()
            self._client.close()
            self.ready.clear()
        return self.handled

    def _sweep_after_gap(self) -> bool:
        """After listening again: clean the finished games whose tasks went by meanwhile."""
        try:
            swept = sweep(self._client, self.keys, self.settings.redis_expiry)
        except (redis.ConnectionError, redis.TimeoutError):
            return False
        self.swept += swept
        log.info("Worker %s listens again; swept %d finished game(s) whose tasks it missed", self.name, swept)
        return True

    async def run_async(self, burst: bool = False, idle: float = 1.0) -> int:
        import asyncio  # noqa: PLC0415

        return await asyncio.to_thread(self.run, burst, idle)

    def stop(self, drain: bool = True) -> None:
        """Stop. With ``drain``, first handle every task published before this call:
        a marker goes through the channel and the worker stops when it reads it."""
        # the drain marker travels the channel: only a pub/sub source will read it
        if drain and self.ready.is_set() and self._source is None:
            self._drain_token = f"{_DRAIN}{self.name}:{uuid.uuid4().hex}"
            try:
                with connect(self.settings) as client:
                    if client.publish(self.settings.worker_channel, self._drain_token) > 0:
                        return
            except Exception:  # Redis gone: stop without draining
                pass
        self._stopping.set()

    def clean(self, task: dict) -> None:
        """Apply one task; idempotent, and harmless for keys already gone."""
        game, user = task.get("game_token"), task.get("user_token")
        if not isinstance(game, str) or not isinstance(user, str):
            log.warning("Ignoring malformed task %r", task)
            return
        host = clean(self._client, self.keys, self.settings.redis_expiry, game, user)
        self.handled += 1
        log.debug("Cleaned %s for %s%s", game, user, " (host)" if host else "")


class _DeadlineThread:
    """A :class:`~simlib.deadlines.DeadlineWatcher` on an event loop of its own thread."""

    def __init__(self, settings: Settings):
        from .deadlines import DeadlineWatcher  # noqa: PLC0415
        from .gamedb import open_gamedb  # noqa: PLC0415

        self._make = lambda: DeadlineWatcher(open_gamedb(settings))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self.applied: dict[str, int] = {}
        self._thread = threading.Thread(target=lambda: aio.run(self._main()), name="deadlines", daemon=True)
        self._thread.start()
        self._started.wait(10)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        watcher = self._make()
        self.applied = watcher.applied
        task = asyncio.create_task(watcher.run())
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            task.cancel()
            await watcher.db.aclose()

    def stop(self) -> dict[str, int]:
        """Stop the watcher (bounded); returns what it applied."""
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop already ended
                pass
        self._thread.join(5)
        return dict(self.applied)
