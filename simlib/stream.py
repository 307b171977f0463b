"""The run's record stream, as a pipeline sees it: every message on ``lib.*``, numbered.

* :class:`RunTap` listens to ``lib.*`` while a run plays: it keeps the run's FORFEIT
  records (for the summary and the tables) and, when asked, writes every message of the
  run to ``records.jsonl`` in ``seq`` order (``{"channel": ..., "data": "<the message
  exactly as published>"}`` per line). Messages arrive nearly in order; a small buffer
  puts them in order as they come, so the file is written as the run goes.
* :func:`decode` reads a message in either format (``simlib``, or ``article``: encoded
  twice), and :func:`read_records` reads a ``records.jsonl`` back.
* :func:`replay` sends a recorded run again, byte for byte and in order: with its own
  spacing, at a fixed rate, or as fast as Redis takes it; on pub/sub or into a stream.
"""

from __future__ import annotations

import collections
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from .config import Settings

__all__ = ["RunTap", "decode", "read_records", "replay", "RECORDS_FILE"]

RECORDS_FILE = "records.jsonl"


def decode(data: str) -> dict | None:
    """A message on ``lib.*`` as a dict (either format), its ``task`` decoded too when the
    original's format carries it as a JSON string; None when it is not a record."""
    try:
        message = json.loads(data)
        if isinstance(message, str):  # LOG_FORMAT=article: the object was encoded twice
            message = json.loads(message)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict):
        return None
    task = message.get("task")
    if isinstance(task, str) and task[:1] == "{":
        with contextlib.suppress(ValueError):
            message = {**message, "task": json.loads(task)}
    return message


def read_records(directory: str | Path) -> Iterator[tuple[str, str, dict]]:
    """``(channel, data, decoded)`` for each line of ``directory/records.jsonl``, in order."""
    with open(Path(directory) / RECORDS_FILE) as lines:
        for line in lines:
            row = json.loads(line)
            yield row["channel"], row["data"], decode(row["data"])


class RunTap:
    """Listens to ``lib.*`` from before a run starts (``start`` returns once subscribed)
    until :meth:`stop`; keeps the run's records with ``run`` = ``run_id``."""

    def __init__(self, settings: Settings, run_id: str, out: Path | None = None, keep: int | None = None):
        self.run_id = run_id
        self.forfeits: collections.deque[dict] = collections.deque(maxlen=keep)  # the newest ``keep``
        self.written = 0
        self.out = None if out is None else Path(out) / RECORDS_FILE
        self._file = None
        self._pending: dict[int, tuple[str, str]] = {}  # seq -> (channel, data), not written yet
        self._next = 1
        self._seen = 0  # the highest seq taken (records are only kept when writing)
        self._taken = threading.Condition()
        self._client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.psubscribe("lib.*")
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._read, name="run-tap", daemon=True)
        if self.out is not None:
            self._file = open(self.out, "w")
        self._thread.start()

    def _read(self) -> None:
        while not self._stopping.is_set():
            try:
                message = self._pubsub.get_message(timeout=0.5)
            except redis.TimeoutError:  # a message only partly arrived: the next read completes it
                continue
            except redis.RedisError:  # Redis away: what is published meanwhile is not seen here
                if self._stopping.wait(0.5):
                    return
                continue
            if message is not None and message["type"] == "pmessage":
                self._take(message["channel"], message["data"])

    def _take(self, channel: str, data: str) -> None:
        record = decode(data)
        if record is None or record.get("run") != self.run_id:
            return
        task = record.get("task")
        if isinstance(task, dict) and task.get("STATUS", {}).get("ACTION") == "FORFEIT":
            self.forfeits.append(task)
        seq = record.get("seq")
        with self._taken:
            if self._file is not None and isinstance(seq, int):
                self._pending[seq] = (channel, data)
                while self._next in self._pending:  # write what is now in order
                    self._write(*self._pending.pop(self._next))
                    self._next += 1
            if isinstance(seq, int) and self._file is None:
                self._seen = max(self._seen, seq)
            self._taken.notify_all()

    def _write(self, channel: str, data: str) -> None:
        self._file.write(json.dumps({"channel": channel, "data": data}) + "\n")
        self.written += 1

    def wait_for(self, last: int, timeout: float = 10.0) -> bool:
        """Wait (bounded) until every record up to ``seq`` = ``last`` has been taken."""
        with self._taken:
            return self._taken.wait_for(lambda: self._next > last or self._seen >= last, timeout)

    def stop(self) -> list[dict]:
        """Stop listening; write what is left in ``seq`` order (a gap means a message
        pub/sub did not deliver here); the FORFEIT records seen."""
        if not self._stopping.is_set():
            self._stopping.set()
            self._thread.join(5)
            with contextlib.suppress(redis.RedisError):
                self._pubsub.close()
                self._client.close()
            if self._file is not None:
                for seq in sorted(self._pending):
                    self._write(*self._pending[seq])
                self._pending.clear()
                self._file.close()
        return list(self.forfeits)


def _when(record: dict | None) -> float | None:
    """A record's time in seconds (its envelope timestamp: ours in UTC, the original's local)."""
    import datetime as _dt  # noqa: PLC0415

    stamp = (record or {}).get("timestamp")
    try:
        moment = _dt.datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return None
    return moment.timestamp()


def replay(client: redis.Redis, rows: list[tuple[str, str, dict | None]], *, speed: float | None = 1.0,
           rate: float | None = None, flat_out: bool = False, stream: str | None = None,
           batch: int = 500) -> tuple[int, float]:
    """Send ``rows`` (``(channel, data, decoded)``, as :func:`read_records` gives them) again,
    in order, each message byte for byte: published on its channel, or added to the Redis
    stream ``stream`` (fields ``channel`` and ``data``). Paced with the run's own spacing
    scaled by ``speed``, or at a fixed ``rate`` per second, or ``flat_out`` (pipelined, as
    fast as Redis takes them). Returns (records sent, seconds taken)."""
    def send(pipe, channel: str, data: str) -> None:
        if stream is None:
            pipe.publish(channel, data)
        else:
            pipe.xadd(stream, {"channel": channel, "data": data})

    pause = threading.Event()  # pacing is what replay is for; nothing sets it
    began = time.monotonic()
    if flat_out:
        for i in range(0, len(rows), batch):
            pipe = client.pipeline(transaction=False)
            for channel, data, _ in rows[i:i + batch]:
                send(pipe, channel, data)
            pipe.execute()
        return len(rows), time.monotonic() - began
    first = next((t for t in (_when(r) for _, _, r in rows) if t is not None), None)
    last_offset = 0.0
    for i, (channel, data, record) in enumerate(rows):
        if rate:
            offset = i / rate
        else:
            moment = _when(record)
            offset = last_offset if moment is None or first is None else max((moment - first) / speed, last_offset)
        last_offset = offset
        wait = began + offset - time.monotonic()
        if wait > 0:
            pause.wait(wait)
        send(client, channel, data)
    return len(rows), time.monotonic() - began
