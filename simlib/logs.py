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
import uuid

import redis

from .config import Settings

__all__ = ["RedisPubSubHandler", "setup_logging", "message_for", "resolve_run", "TaskAdapter", "SEQ_MARK"]

ROOT = "lib"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


#: Where a record's ``seq`` goes, until it is numbered (a number no record holds).
SEQ_MARK = -7_294_530_118_327


def message_for(record: logging.LogRecord, fmt: str = "simlib", run: str | None = None) -> str:
    """The pub/sub message of a record.

    ``simlib``: JSON encoded once, ``{"level", "timestamp" (UTC, ms), "name", "log_message",
    "task"?}``. ``article``: exactly as the original simulator wrote it: the logger name
    prefixed ``redis.``, the timestamp local and with microseconds, the message text as
    given, and the whole object encoded twice (a JSON string of the JSON). With ``run``,
    the envelope also carries ``run`` and ``seq`` (:data:`SEQ_MARK` until numbered)."""
    task = getattr(record, "task", None)
    if fmt == "article":
        msg = {"level": record.levelname, "timestamp": _dt.datetime.fromtimestamp(record.created).isoformat(),
               "name": f"redis.{record.name}", "log_message": record.msg}
    else:
        msg = {"level": record.levelname,
               "timestamp": _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc)
               .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
               "name": record.name, "log_message": record.getMessage()}
    if task is not None:
        msg["task"] = task
    if run is not None:
        msg["run"], msg["seq"] = run, SEQ_MARK
    return json.dumps(json.dumps(msg)) if fmt == "article" else json.dumps(msg)


def resolve_run(client, settings: Settings) -> str:
    """The run id of this deployment: RUN_ID, else the one Redis keeps (made if missing)."""
    if settings.run_id:
        return settings.run_id
    from .keys import Keyspace  # noqa: PLC0415

    key = Keyspace().run
    client.set(key, uuid.uuid4().hex[:12], nx=True)
    return client.get(key)


class RedisPubSubHandler(logging.Handler):
    """Publishes each record on the channel named after its logger, numbered.

    ``emit`` only enqueues; a daemon thread drains the queue and publishes each batch with
    one script call (``lua/publish.lua``), which numbers the records from the run's
    counter as it publishes them. ``flush`` waits (bounded) until the queue is sent.
    """

    def __init__(self, settings: Settings, level: int = logging.NOTSET, batch: int = 500):
        # the client first: a URL redis-py refuses raises here, before logging.Handler
        # registers this handler for a close() at exit that would find it half built
        if settings.redis_cluster:  # the counter may be on any node: route the script by it
            from redis.cluster import RedisCluster  # noqa: PLC0415

            client = RedisCluster.from_url(settings.redis_url, decode_responses=True)
        else:
            client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        super().__init__(level)
        self.settings = settings
        self.url = settings.redis_url
        #: what makes two handlers the same (setup_logging keeps one per process)
        self.key = (settings.redis_url, settings.log_format, settings.run_id, settings.redis_cluster)
        self.fmt = settings.log_format
        self.batch = batch
        self.run: str | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._sent = threading.Condition()
        self._enqueued = 0
        self._published = 0
        self._closed = False
        self._client = client
        from .scripts import load_script  # noqa: PLC0415

        self._publish = client.register_script(load_script("publish", settings.redis_cluster))
        self._thread = threading.Thread(target=self._pump, name="redis-log-publisher", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "published", False):  # a Lua script already published it
            return
        with self._sent:
            self._enqueued += 1
        self._queue.put(record)

    def _pump(self) -> None:
        mark = str(SEQ_MARK)
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
                if self.run is None:
                    self.run = resolve_run(self._client, self.settings)
                args = []
                for record in items:  # the channel is the logger's name, unless the record names one
                    try:
                        head, tail = message_for(record, self.fmt, self.run).split(mark, 1)
                    except Exception:
                        self.handleError(record)
                        continue
                    args += [getattr(record, "channel", None) or record.name, head, tail]
                if args:
                    from .keys import Keyspace  # noqa: PLC0415

                    self._publish(keys=[Keyspace().seq(self.run)], args=args)
            except Exception as exc:  # Redis gone (or a cluster unreachable): say so once per batch, keep going
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
            wanted = (settings.redis_url, settings.log_format, settings.run_id, settings.redis_cluster)
            if not any(h.key == wanted for h in have):
                for h in have:
                    root.removeHandler(h)
                    h.close()
                root.addHandler(RedisPubSubHandler(settings, level=settings.log_level))
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
