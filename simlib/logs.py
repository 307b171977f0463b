"""Log transports: stdout, and Redis pub/sub on a channel named after the logger.

Logger names are fixed (``lib.server.lobby``, ``lib.server.game``, ...) because they
double as channel names: the clean-up worker listens on ``lib.server.lobby``. Library
code never configures the root logger; :func:`setup_logging` attaches handlers to the
``lib`` logger only, once per process.

The pub/sub handler never blocks the caller (a game server's event loop): records go
into a queue and one background thread publishes them in pipelined batches.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import queue
import sys
import threading

import redis

from .config import Settings

__all__ = ["RedisPubSubHandler", "setup_logging", "message_for", "TaskAdapter"]

ROOT = "lib"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def message_for(record: logging.LogRecord) -> str:
    """The pub/sub JSON of a record: level, timestamp, name, log_message, task."""
    msg = {
        "level": record.levelname,
        "timestamp": _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc)
        .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "name": record.name,
        "log_message": record.getMessage(),
    }
    task = getattr(record, "task", None)
    if task is not None:
        msg["task"] = task
    return json.dumps(msg)


class RedisPubSubHandler(logging.Handler):
    """Publishes each record on the channel named after its logger.

    ``emit`` only enqueues; a daemon thread drains the queue and sends a pipeline of
    PUBLISH commands per batch. ``flush`` waits (bounded) until the queue is sent.
    """

    def __init__(self, url: str, level: int = logging.NOTSET, batch: int = 500):
        # the client first: a URL redis-py refuses raises here, before logging.Handler
        # registers this handler for a close() at exit that would find it half built
        client = redis.Redis.from_url(url, decode_responses=True)
        super().__init__(level)
        self.url = url
        self.batch = batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._sent = threading.Condition()
        self._enqueued = 0
        self._published = 0
        self._closed = False
        self._client = client
        self._thread = threading.Thread(target=self._pump, name="redis-log-publisher", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "published", False):  # a Lua script already published it
            return
        try:  # the channel is the logger's name, unless the record names one (clean-up tasks)
            payload = (getattr(record, "channel", None) or record.name, message_for(record))
        except Exception:
            self.handleError(record)
            return
        with self._sent:
            self._enqueued += 1
        self._queue.put(payload)

    def _pump(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            items = [item]
            while len(items) < self.batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                items.append(nxt)
            try:
                pipe = self._client.pipeline(transaction=False)
                for channel, message in items:
                    pipe.publish(channel, message)
                pipe.execute()
            except redis.RedisError as exc:  # Redis gone: say so once per batch, keep going
                sys.stderr.write(f"simlib: could not publish {len(items)} log records: {exc}\n")
            with self._sent:
                self._published += len(items)
                self._sent.notify_all()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every record emitted so far is published; False on time-out."""
        with self._sent:
            target = self._enqueued
            return self._sent.wait_for(lambda: self._published >= target, timeout)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.flush()
            self._queue.put(None)
            self._thread.join(5)
            self._client.close()
        super().close()


_lock = threading.Lock()


def setup_logging(settings: Settings, *, stdout_level: str | None = None, stream=None) -> logging.Logger:
    """Attach the transports chosen by LOGGER_MODULE to the ``lib`` logger (idempotent).

    ``stdout_level`` lets the runner keep the terminal quiet under a progress bar while
    pub/sub still receives every record at LOG_LEVEL. ``stream``: where the terminal
    transport writes (stdout; ``simlib run`` keeps stdout for its summary and uses stderr).
    """
    root = logging.getLogger(ROOT)
    with _lock:
        root.setLevel(settings.log_level)
        root.propagate = False
        terminal = next((h for h in root.handlers if getattr(h, "_simlib_stdout", False)), None)
        if terminal is None:
            terminal = logging.StreamHandler(stream or sys.stdout)
            terminal.setFormatter(logging.Formatter(_FORMAT))
            terminal._simlib_stdout = True  # type: ignore[attr-defined]
            terminal.setLevel(stdout_level or settings.log_level)
            root.addHandler(terminal)
        else:
            if stdout_level is not None:  # a later call without it keeps the chosen level
                terminal.setLevel(stdout_level)
            if stream is not None:
                terminal.setStream(stream)
        have = [h for h in root.handlers if isinstance(h, RedisPubSubHandler)]
        if settings.logger_module == "redis" and settings.redis_url:
            if not any(h.url == settings.redis_url for h in have):
                for h in have:
                    root.removeHandler(h)
                    h.close()
                root.addHandler(RedisPubSubHandler(settings.redis_url, level=settings.log_level))
        else:
            for h in have:
                root.removeHandler(h)
                h.close()
    return root


def flush_logs(timeout: float = 5.0) -> None:
    """Wait until queued pub/sub records are sent (used before a process exits)."""
    for h in logging.getLogger(ROOT).handlers:
        if isinstance(h, RedisPubSubHandler):
            h.flush(timeout)


class TaskAdapter(logging.LoggerAdapter):
    """``log.info("Cleaning Game Records", task={...})`` puts ``task`` on the record."""

    def process(self, msg, kwargs):
        task = kwargs.pop("task", None)
        if task is not None:
            kwargs.setdefault("extra", {})["task"] = task
        return msg, kwargs
