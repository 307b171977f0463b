"""The clean-up worker: handles "Cleaning Game Records" tasks, expiring finished games.

For each task ``{"game_token": g, "user_token": u}`` it runs :class:`~simlib.sweep.Cleaner`:
REDIS_EXPIRY on u's hero hash in g; when u is the game's host, on every other key of the
game too (archiving the game first, the first time), which removes g from
``games:participants`` and ``games:players:<n>``. Every step is idempotent.

Tasks arrive through a :class:`MessageSource`, chosen by TASK_TRANSPORT:

* :class:`PubSubSource` (``pubsub``, the article's): every worker hears every task, and
  what is published while no worker listens is lost. A fact the tutorial measures.
* :class:`StreamSource` (``streams``): the scripts add each task to the stream
  ``simlib:tasks``; the consumer group ``workers`` hands each to one worker, which
  acknowledges it in the same atomic step that does it. A task whose worker died stays
  pending until another worker claims it (XAUTOCLAIM, after ``claim_idle`` seconds), and
  the stream is trimmed only below what every worker has acknowledged.

A worker also applies the games' deadlines (:mod:`simlib.deadlines`) in a thread of its
own, so lobbies time out and idle players forfeit even when every game server is gone;
it can sweep for finished games whose task never came (:func:`simlib.sweep.sweep`) on
an interval; and when Redis goes away it waits for it, listens again, and sweeps.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import threading
import time
import uuid
from typing import Protocol

import redis

from . import aio
from .config import Settings
from .keys import TASKS_GROUP, WORKER_LOGGER, Keyspace
from .logs import SEQ_MARK, message_for, resolve_run
from .scripts import load_script
from .store import connect
from .sweep import Cleaner, sweep

__all__ = ["Worker", "MessageSource", "PubSubSource", "StreamSource", "CLEAN_MESSAGE", "DRAIN_MESSAGE"]

CLEAN_MESSAGE = "Cleaning Game Records"
#: The log message of a worker's drain marker (a JSON record like any other on the channel).
DRAIN_MESSAGE = "Worker Draining"
log = logging.getLogger(WORKER_LOGGER)


class MessageSource(Protocol):
    """Where tasks come from. ``receive`` blocks up to ``timeout`` seconds and returns one
    decoded message (a dict; a stream task carries its entry id under ``"id"``), or None
    when nothing came."""

    def receive(self, timeout: float) -> dict | None: ...

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

    def receive(self, timeout: float) -> dict | None:
        message = self._pubsub.get_message(timeout=timeout)
        if message is None or message["type"] != "message":
            return None
        try:
            decoded = json.loads(message["data"].decode("utf-8"))
            if isinstance(decoded, str):  # LOG_FORMAT=article: the object was encoded twice
                decoded = json.loads(decoded)
        except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested too deep
            return {}
        return decoded if isinstance(decoded, dict) else {}

    def more(self, limit: int) -> list[dict]:
        """What has already arrived, up to ``limit`` messages, without waiting."""
        out = []
        while len(out) < limit:
            message = self.receive(timeout=0)
            if message is None:
                break
            out.append(message)
        return out

    def close(self) -> None:
        self._pubsub.close()
        self._pool.disconnect()


class StreamSource:
    """The tasks stream, read as one consumer of the workers' group (created if missing).
    Tasks another consumer left pending for ``claim_idle`` seconds are claimed first (at
    start, and again every ``claim_idle`` seconds)."""

    def __init__(self, client: redis.Redis, keys: Keyspace, consumer: str, claim_idle: float = 30.0,
                 batch: int = 100):
        self.client, self.keys, self.consumer = client, keys, consumer
        self.claim_idle = claim_idle
        self.batch = batch
        self.claimed = 0  # tasks taken over from other consumers
        self._backlog: collections.deque = collections.deque()
        try:
            client.xgroup_create(keys.tasks, TASKS_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._next_claim = self._next_trim = 0.0

    #: seconds between trims of the acknowledged entries
    TRIM_EVERY = 5.0

    def _claim(self) -> None:
        start = "0-0"
        while True:
            start, entries, *deleted = self.client.xautoclaim(
                self.keys.tasks, TASKS_GROUP, self.consumer, min_idle_time=int(self.claim_idle * 1000),
                start_id=start, count=self.batch)
            self._backlog.extend(e for e in entries if e[1])
            self.claimed += sum(1 for e in entries if e[1])
            if deleted and deleted[0]:  # trimmed away (never expected): nothing to do but let go
                self.client.xack(self.keys.tasks, TASKS_GROUP, *deleted[0])
            if start == "0-0":
                break
        self._next_claim = time.monotonic() + self.claim_idle

    def receive(self, timeout: float) -> dict | None:
        if not self._backlog and time.monotonic() >= self._next_claim:
            self._claim()
        if not self._backlog and time.monotonic() >= self._next_trim:  # between batches: keep it bounded
            self.trim()
            self._next_trim = time.monotonic() + self.TRIM_EVERY
        if not self._backlog:
            reply = self.client.xreadgroup(TASKS_GROUP, self.consumer, {self.keys.tasks: ">"}, count=self.batch,
                                           block=max(int(timeout * 1000), 1))
            for _stream, entries in reply or ():
                self._backlog.extend(entries)
        return self._next() if self._backlog else None

    def more(self, limit: int) -> list[dict]:
        """The rest of the batch already read, up to ``limit`` tasks, without waiting."""
        out = []
        while self._backlog and len(out) < limit:
            out.append(self._next())
        return out

    def _next(self) -> dict:
        """The oldest entry read, as a task message."""
        entry_id, fields = self._backlog.popleft()
        return {"log_message": CLEAN_MESSAGE, "task": fields, "id": entry_id}

    def pending(self) -> int:
        """Tasks handed to some consumer and not acknowledged yet."""
        return self.client.xpending(self.keys.tasks, TASKS_GROUP)["pending"]

    def trim(self) -> int:
        """Drop the entries every consumer has acknowledged (below the oldest pending one,
        and never past what the group has been handed); returns how many went."""
        groups = {g["name"]: g for g in self.client.xinfo_groups(self.keys.tasks)}
        group = groups.get(TASKS_GROUP)
        if group is None:
            return 0
        floor = group["last-delivered-id"]
        pending = self.client.xpending(self.keys.tasks, TASKS_GROUP)
        if pending["pending"]:
            floor = min(floor, pending["min"], key=lambda i: tuple(int(x) for x in i.split("-")))
        return self.client.xtrim(self.keys.tasks, minid=floor, approximate=False)

    def close(self) -> None:
        pass


class Worker:
    """``run()`` blocks until :meth:`stop`; ``run(burst=True)`` returns after ``idle``
    quiet seconds. :attr:`ready` is set once the worker listens. ``claim_idle``: with
    streams, take over tasks another worker left pending this long. ``sweep_every``:
    also sweep for finished games with no expiry every so many seconds (0: only after a
    lost connection)."""

    def __init__(self, settings: Settings, *, name: str | None = None, source: MessageSource | None = None,
                 claim_idle: float = 30.0, sweep_every: float = 0.0):
        self.settings = settings
        self.keys = Keyspace(cluster=settings.redis_cluster)
        self.name = name or f"worker-{uuid.uuid4().hex[:6]}"
        self.ready = threading.Event()
        self.handled = 0  # clean-up tasks applied
        self.received = 0  # messages read from the source (drain markers not counted)
        self.swept = 0  # finished games cleaned by a sweep (tasks missed, or never sent)
        self.deadlines: dict[str, int] = {}  # deadlines this worker applied, by kind (once stopped)
        self.claim_idle = claim_idle
        self.sweep_every = sweep_every
        self._source = source
        self._stopping = threading.Event()
        self._draining = threading.Event()
        self._drain_token: str | None = None
        self._client: redis.Redis | None = None
        self._cleaner: Cleaner | None = None
        self._source_in_use: MessageSource | None = None
        self._drain_until: float | None = None
        self.transport = settings.task_transport if source is None else "custom"

    @property
    def archived(self) -> int:
        """Games this worker archived."""
        return self._cleaner.archived if self._cleaner is not None else 0

    def _open_source(self) -> MessageSource:
        if self._source is not None:
            return self._source
        if self.transport == "streams":
            return StreamSource(self._client, self.keys, self.name, self.claim_idle)
        return PubSubSource(self.settings.redis_url, self.settings.worker_channel)

    def run(self, burst: bool = False, idle: float = 1.0, deadlines: bool = True) -> int:
        """Handle tasks until stopped (or, with ``burst``, until ``idle`` quiet seconds).
        Returns the number of clean-up tasks handled. ``deadlines``: also apply the
        games' deadlines while running."""
        self._client = connect(self.settings)
        self._cleaner = Cleaner(self._client, self.settings)
        source = self._source_in_use = self._open_source()
        watcher = _DeadlineThread(self.settings) if deadlines else None
        where = self.keys.tasks if self.transport == "streams" else self.settings.worker_channel
        log.info("Worker %s listening on %s (%s)", self.name, where, self.transport)
        self.ready.set()
        retry, missed = 0.1, False
        next_sweep = time.monotonic() + self.sweep_every if self.sweep_every else None
        try:
            while not self._stopping.is_set():
                try:
                    message = source.receive(timeout=idle if burst or self._draining.is_set() else 0.5)
                    retry = 0.1
                    if missed and self._sweep("sweeps for the tasks it missed (Redis lost, or a task refused)"):
                        missed = False
                    if next_sweep is not None and time.monotonic() >= next_sweep:
                        self._sweep(f"sweeps (every {self.sweep_every:g} s)")
                        next_sweep = time.monotonic() + self.sweep_every
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
                if message is None:
                    if burst or self._draining.is_set() and not self._claimable_soon(source):
                        break  # quiet: nothing left to drain
                    continue
                more = getattr(source, "more", None)
                batch = [message, *(more(self.BATCH - 1) if more is not None else [])]
                try:
                    drained = self._handle(batch)
                except redis.RedisError as exc:  # Redis gone, or a script refused: the sweep retries them
                    log.warning("Worker %s could not clean %d task(s): %s", self.name, len(batch), exc)
                    missed = True
                    continue
                if drained:
                    break
        except Exception:
            log.exception("Worker %s stopped on an unexpected error", self.name)
            raise
        finally:
            if watcher is not None:
                self.deadlines = watcher.stop()
            if isinstance(source, StreamSource):
                with contextlib.suppress(redis.RedisError):
                    source.trim()
            source.close()
            self._client.close()
            self.ready.clear()
        return self.handled

    #: messages read and handled together (what has already arrived: no waiting for more)
    BATCH = 100

    def _handle(self, batch: list[dict]) -> bool:
        """Apply the tasks among these messages, in one round trip; True when this worker's
        drain marker was among them (the tasks before it are done, nothing after it is)."""
        tasks, drained = [], False
        for message in batch:
            task = message.get("task")
            if message.get("log_message") == DRAIN_MESSAGE and isinstance(task, dict):
                if task.get("drain") == self._drain_token:  # a marker: plumbing, not a message
                    drained = True
                    break
                continue
            self.received += 1
            if message.get("log_message") != CLEAN_MESSAGE or not isinstance(task, dict):
                continue
            game, user, entry_id = task.get("game_token"), task.get("user_token"), message.get("id", "")
            if not isinstance(game, str) or not isinstance(user, str):
                log.warning("Ignoring malformed task %r", task)
                if entry_id:  # a malformed entry is done with, too
                    self._client.xack(self.keys.tasks, TASKS_GROUP, entry_id)
                continue
            tasks.append((game, user, entry_id))
        self._cleaner.many(tasks)
        self.handled += len(tasks)
        for game, user, entry_id in tasks:
            if entry_id:
                log.info("Task Done", extra={"task": {"id": entry_id, "game_token": game, "user_token": user,
                                                      "worker": self.name}})
        return drained

    def _claimable_soon(self, source: MessageSource) -> bool:
        """Draining a stream: tasks other consumers hold (a dead worker's) will be this
        worker's once idle for claim_idle; it waits that long for them, no longer."""
        if not isinstance(source, StreamSource):
            return False
        if self._drain_until is None:
            self._drain_until = time.monotonic() + self.claim_idle + 1
        return time.monotonic() < self._drain_until and source.pending() > 0

    @property
    def claimed(self) -> int:
        """Stream tasks this worker took over from other consumers."""
        return getattr(self._source_in_use, "claimed", 0)

    def _sweep(self, why: str) -> bool:
        """Clean the finished games that have no expiry (their tasks went by, or never came)."""
        swept = 0
        try:
            while True:  # a pass looks at the oldest games of each list: again, until one finds none
                found = sweep(self._cleaner)
                swept += found
                if not found or self._stopping.is_set():
                    break
        except (redis.ConnectionError, redis.TimeoutError):
            return False
        self.swept += swept
        log.info("Worker %s %s: swept %d finished game(s)", self.name, why, swept)
        return True

    def stop(self, drain: bool = True) -> None:
        """Stop. With ``drain``, first handle every task published before this call: on
        pub/sub a marker goes through the channel and the worker stops when it reads it;
        on a stream, the worker reads until nothing is left for it."""
        if drain and self.ready.is_set() and self._source is None:
            if self.transport == "streams":
                self._draining.set()
                return
            # the drain marker travels the channel, as a record like the others
            self._drain_token = f"{self.name}:{uuid.uuid4().hex}"
            marker = logging.LogRecord(WORKER_LOGGER, logging.INFO, __file__, 0, DRAIN_MESSAGE, None, None)
            marker.task = {"drain": self._drain_token}
            try:
                with connect(self.settings) as client:
                    run = resolve_run(client, self.settings)
                    head, tail = message_for(marker, self.settings.log_format, run).split(str(SEQ_MARK), 1)
                    publish = client.register_script(load_script("publish", self.settings.redis_cluster))
                    publish(keys=[self.keys.seq(run)], args=[self.settings.worker_channel, head, tail])
                    if dict(client.pubsub_numsub(self.settings.worker_channel)).get(self.settings.worker_channel):
                        return
            except Exception:  # Redis gone: stop without draining
                pass
        self._stopping.set()

    def clean(self, task: dict, entry_id: str = "") -> None:
        """Apply one task (and acknowledge it, from a stream); idempotent, and harmless
        for keys already gone."""
        self._handle([{"log_message": CLEAN_MESSAGE, "task": task, "id": entry_id}])


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
        try:
            await watcher.db.open()
        except redis.RedisError:  # Redis away at start: the watcher retries, the run id follows
            pass
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
