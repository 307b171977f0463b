"""Start the parts from Python (a notebook, the runner, a test) as threads or processes.

Each ``start_*`` returns a :class:`Handle` with ``stop()`` and a bounded ``join()``;
nothing here waits forever. A process is the ``simlib`` command itself, given the
settings as environment variables: no live client or event loop is ever inherited,
and a script that starts one needs no ``if __name__ == "__main__"`` guard.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from . import aio
from .config import Settings
from .logs import setup_logging
from .store import child_env

__all__ = ["Handle", "start_server", "start_worker", "start_players"]

#: The line a part started with ``--announce`` prints once it is ready.
READY = "SIMLIB-READY"


class Handle:
    """A running part. ``stop()`` asks it to finish; ``join(timeout)`` waits at most
    ``timeout`` seconds and returns True once it has ended."""

    def __init__(self, name: str, kind: str, stop: Callable[[], None], join: Callable[[float | None], None],
                 alive: Callable[[], bool], part: Any = None, **info):
        self.name, self.kind, self.part = name, kind, part
        self._stop, self._join, self._alive = stop, join, alive
        self.error: BaseException | None = None
        self.__dict__.update(info)

    def stop(self) -> None:
        if self._alive():
            self._stop()

    def join(self, timeout: float | None = 30.0) -> bool:
        self._join(timeout)
        return not self._alive()

    @property
    def alive(self) -> bool:
        return self._alive()

    def __enter__(self) -> "Handle":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        self.join(30)

    def __repr__(self) -> str:
        extra = f" port={self.port}" if hasattr(self, "port") else ""
        return f"<Handle {self.name} ({self.kind}) {'running' if self.alive else 'ended'}{extra}>"


def _thread_handle(name: str, part, target: Callable[[], Any], **info) -> Handle:
    handle: Handle
    # An Event, not Thread.join: on Python 3.11 a join interrupted by Ctrl-C marks the
    # thread as stopped while it still runs, and every later join returns at once.
    done = threading.Event()

    def body():
        try:
            target()
        except BaseException as exc:  # kept on the handle for the caller to see
            handle.error = exc
        finally:
            done.set()

    thread = threading.Thread(target=body, name=name, daemon=True)
    handle = Handle(name, "thread", part.stop, done.wait, lambda: not done.is_set(), part=part, **info)
    thread.start()
    return handle


# -- public starters ------------------------------------------------------------------

def start_server(settings: Settings, *, host: str = "127.0.0.1", port: int | None = 0, mode: str = "thread",
                 name: str | None = None, timeout: float = 30.0, stdout_level: str | None = None) -> Handle:
    """Start a game server and return once it listens; ``handle.port`` is its port.

    ``stdout_level`` sets the terminal log level (a thread shares this process's
    logging, which is set up here from ``settings``)."""
    from .server import GameServer  # noqa: PLC0415

    port = settings.server_port if port is None else port
    if mode == "thread":
        setup_logging(settings, stdout_level=stdout_level)  # threads share this process's logging
        server = GameServer(settings, host=host, port=port, name=name)
        handle = _thread_handle(server.name, server, lambda: aio.run(server.serve()), host=host)
        if not server.ready.wait(timeout):
            handle.stop()
            raise RuntimeError(f"game server did not start: {handle.error or 'timed out'}")
        handle.port = server.port
        handle.url = f"ws://{host}:{server.port}"
        return handle
    name = name or f"server-{port}"
    args = ["server", "--host", host, "--port", str(port)]
    return _process_handle(name, args, settings, stdout_level, timeout, host=host)


def start_worker(settings: Settings, *, mode: str = "thread", name: str | None = None,
                 timeout: float = 30.0, stdout_level: str | None = None) -> Handle:
    """Start a clean-up worker and return once it listens (so no task is missed)."""
    from .worker import Worker  # noqa: PLC0415

    if mode == "thread":
        setup_logging(settings, stdout_level=stdout_level)
        worker = Worker(settings, name=name)
        handle = _thread_handle(worker.name, worker, worker.run)
        if not worker.ready.wait(timeout):
            handle.stop()
            raise RuntimeError(f"worker did not start: {handle.error or 'timed out'}")
        return handle
    name = name or "worker"
    return _process_handle(name, ["worker"], settings, stdout_level, timeout)


def _process_handle(name: str, args: list[str], settings: Settings, stdout_level: str | None, timeout: float,
                    **info) -> Handle:
    """Run ``simlib <args> --announce`` and wait (bounded) for its ready line.

    The child's other output is passed through to this process's stdout."""
    if not settings.redis_url:
        raise RuntimeError("a part started as a process needs settings with a redis_url")
    cmd = [sys.executable, "-m", "simlib.cli", *args, "--announce"]
    if stdout_level:
        cmd += ["--stdout-level", stdout_level]
    # stdin is a pipe we never write to: when this process ends, the child sees EOF and
    # stops. Its own session keeps a terminal's Ctrl-C away from it: the launcher stops
    # its parts in order (bots first), which a simultaneous SIGINT to all would defeat.
    proc = subprocess.Popen(cmd, env=child_env(settings), stdout=subprocess.PIPE, stderr=None,
                            stdin=subprocess.PIPE, text=True, start_new_session=True)
    ready = threading.Event()
    announced: list[str] = []

    def pump():
        for line in proc.stdout:  # type: ignore[union-attr]
            if not ready.is_set() and line.startswith(READY):
                announced.append(line.split()[1] if len(line.split()) > 1 else "")
                ready.set()
                continue
            sys.stdout.write(line)
        ready.set()  # the child ended before it was ready: wake the waiter

    threading.Thread(target=pump, name=f"{name}-stdout", daemon=True).start()
    if not ready.wait(timeout) or not announced:
        proc.kill()
        proc.wait(5)
        raise RuntimeError(f"{name} did not start within {timeout:g} s (exit code {proc.returncode})")

    def join(t):
        try:
            proc.wait(t)
        except subprocess.TimeoutExpired:
            pass

    handle = Handle(name, "process", proc.terminate, join, lambda: proc.poll() is None, pid=proc.pid, **info)
    if args[0] == "server":
        handle.port = int(announced[0])
        handle.url = f"ws://{info.get('host', '127.0.0.1')}:{handle.port}"
    return handle


def start_players(urls: list[str] | str, players: int, games: int, *, seed: int | None = None,
                  style: str = "fast", recorder=None, name_prefix: str | None = None,
                  two_share: float = 0.6) -> Handle:
    """Start ``players`` bots in one thread (one event loop); bot i uses ``urls[i % len]``.

    ``handle.recorder`` fills as games end; ``handle.bots`` are the bots.
    """
    from .player import BOTS, Recorder, play_all, run_id  # noqa: PLC0415

    urls = [urls] if isinstance(urls, str) else list(urls)
    recorder = recorder or Recorder()
    prefix = name_prefix or f"bot-{run_id()}-"
    cls = BOTS[style]
    bots = [cls(urls[i % len(urls)], f"{prefix}{i:04d}", games, seed=seed, index=i, recorder=recorder,
                two_share=two_share) for i in range(players)]

    class _Group:
        def stop(self):
            for b in bots:
                b.stop()

    group = _Group()
    handle: Handle
    failures: list = []

    def target():
        failures.extend(aio.run(play_all(bots)))

    handle = _thread_handle(f"{prefix}players", group, target, recorder=recorder, bots=bots, failures=failures)
    return handle
