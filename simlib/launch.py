"""Start the parts from Python (a notebook, the runner, a test) as threads or processes.

Each ``start_*`` returns a :class:`Handle` with ``stop()`` and a bounded ``join()``;
nothing here waits forever. A process is the ``simlib`` command itself, given the
settings as environment variables: no live client or event loop is ever inherited,
and a script that starts one needs no ``if __name__ == "__main__"`` guard.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import aio
from .config import TWO_SHARE, Settings
from .logs import setup_logging
from .store import child_env

__all__ = ["Handle", "PartStartError", "start_server", "start_worker", "start_players"]

#: The line a part started with ``--announce`` prints once it is ready.
READY = "SIMLIB-READY"
#: The line such a part prints instead of ``simlib: error: ...``, for the launcher to say once.
FAILED = "SIMLIB-FAILED"
#: The line a ``simlib player --progress-lines`` prints, with the row as JSON, per finished game.
GAME = "SIMLIB-GAME"


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


class PartStartError(RuntimeError):
    """A part did not get ready (its own error says why); shown to users as one line."""


def _start_thread(name: str, part, target: Callable[[], Any], ready: threading.Event, timeout: float,
                  what: str, **info) -> Handle:
    """Run ``target`` in a thread and return once ``ready`` is set, or raise
    :class:`PartStartError` as soon as the thread ends without getting there."""
    wake = threading.Event()
    threading.Thread(target=lambda: ready.wait(timeout) and wake.set(), name=f"{name}-ready", daemon=True).start()
    handle = _thread_handle(name, part, target, wake=wake, **info)
    wake.wait(timeout)
    if not ready.is_set():
        handle.stop()
        raise PartStartError(f"{what} did not start: {handle.error or f'not ready within {timeout:g} s'}")
    return handle


def _thread_handle(name: str, part, target: Callable[[], Any], wake: threading.Event | None = None,
                   **info) -> Handle:
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
            if wake is not None:
                wake.set()

    thread = threading.Thread(target=body, name=name, daemon=True)
    handle = Handle(name, "thread", part.stop, done.wait, lambda: not done.is_set(), part=part, **info)
    thread.start()
    return handle


# -- public starters ------------------------------------------------------------------

def start_server(settings: Settings, *, host: str = "127.0.0.1", port: int | None = 0, mode: str = "thread",
                 name: str | None = None, timeout: float = 30.0, stdout_level: str | None = None,
                 roster: str | None = None) -> Handle:
    """Start a game server and return once it listens; ``handle.port`` is its port.

    ``stdout_level`` sets the terminal log level (a thread shares this process's
    logging, which is set up here from ``settings``). ``roster``: a roster file (or
    ``"default"``) the server loads again when it finds Redis without heroes."""
    from .server import GameServer  # noqa: PLC0415

    port = settings.server_port if port is None else port
    if mode == "thread":
        setup_logging(settings, stdout_level=stdout_level)  # threads share this process's logging
        server = GameServer(settings, host=host, port=port, name=name, roster=roster)
        handle = _start_thread(server.name, server, lambda: aio.run(server.serve()), server.ready, timeout,
                               "the game server", host=host)
        handle.port = server.port
        handle.url = f"ws://{host}:{server.port}"
        return handle
    name = name or f"server-{port}"
    args = ["server", "--host", host, "--port", str(port), *(["--roster", roster] if roster else [])]
    return _process_handle(name, args, settings, stdout_level, timeout, host=host)


def start_worker(settings: Settings, *, mode: str = "thread", name: str | None = None,
                 timeout: float = 30.0, stdout_level: str | None = None, claim_idle: float = 30.0,
                 sweep_every: float = 0.0) -> Handle:
    """Start a clean-up worker and return once it listens (so no task is missed).
    ``claim_idle`` and ``sweep_every`` as for ``simlib worker``."""
    from .worker import Worker  # noqa: PLC0415

    if mode == "thread":
        setup_logging(settings, stdout_level=stdout_level)
        worker = Worker(settings, name=name, claim_idle=claim_idle, sweep_every=sweep_every)
        return _start_thread(worker.name, worker, worker.run, worker.ready, timeout, "the worker")
    name = name or "worker"
    args = ["worker", "--claim-idle", repr(claim_idle), "--sweep-every", repr(sweep_every)]
    return _process_handle(name, args, settings, stdout_level, timeout)


class _Child:
    """``simlib <args> --announce`` as a child process; a thread reads its stdout, keeps
    the ready line and passes every other line to ``on_line`` (default: this process's
    stderr: a part's log lines are diagnostics, and this process's stdout is its own)."""

    def __init__(self, name: str, args: list[str], settings: Settings, stdout_level: str | None = None,
                 on_line: Callable[[str], Any] | None = None):
        cmd = [sys.executable, "-m", "simlib.cli", *args, "--announce"]
        if stdout_level:
            cmd += ["--stdout-level", stdout_level]
        self.name = name
        # stdin is a pipe we never write to: when this process ends, the child sees EOF and
        # stops. Its own session keeps a terminal's Ctrl-C away from it: the launcher stops
        # its parts in order (bots first), which a simultaneous SIGINT to all would defeat.
        self.proc = subprocess.Popen(cmd, env=child_env(settings), stdout=subprocess.PIPE, stderr=None,
                                     stdin=subprocess.PIPE, text=True, start_new_session=True)
        self._ready = threading.Event()
        self._announced: list[str] = []
        self._failure: str | None = None  # the part's own one-line error
        self._ended_early = False
        self.pump = threading.Thread(target=self._read, args=(on_line,), name=f"{name}-stdout", daemon=True)
        self.pump.start()

    def _read(self, on_line) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            if line.startswith(FAILED):
                self._failure = line[len(FAILED):].strip()
                if self._ready.is_set():  # failed after it got ready: say it now
                    sys.stderr.write(f"simlib: error: {self.name}: {self._failure}\n")
                continue
            if not self._ready.is_set() and line.startswith(READY):
                self._announced.append(line.split()[1] if len(line.split()) > 1 else "")
                self._ready.set()
                continue
            (on_line or sys.stderr.write)(line)
        self._ended_early = not self._ready.is_set()
        self._ready.set()  # the child ended before it was ready: wake the waiter

    def ready(self, timeout: float) -> str:
        """Wait (bounded) for the ready line and return what it announced; a child that
        does not get there is killed."""
        if not self._ready.wait(timeout) or not self._announced:
            self.proc.kill()
            self.proc.wait(5)
            code = self.proc.returncode
            raise PartStartError(f"{self.name} did not start: " + (
                self._failure if self._failure else
                f"it exited with code {code} (its own error is above)" if self._ended_early
                else f"not ready within {timeout:g} s"))
        return self._announced[0]

    def join(self, timeout: float | None) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)


def _process_handle(name: str, args: list[str], settings: Settings, stdout_level: str | None, timeout: float,
                    **info) -> Handle:
    """Run ``simlib <args> --announce`` and wait (bounded) for its ready line.

    The child's other output is passed through to this process's stderr."""
    if not settings.redis_url:
        raise RuntimeError("a part started as a process needs settings with a redis_url")
    child = _Child(name, args, settings, stdout_level)
    announced = child.ready(timeout)
    proc = child.proc
    handle = Handle(name, "process", proc.terminate, child.join, lambda: proc.poll() is None, pid=proc.pid,
                    kill=proc.kill, **info)
    if args[0] == "server":
        handle.port = int(announced)
        handle.url = f"ws://{info.get('host', '127.0.0.1')}:{handle.port}"
    return handle


def start_players(urls: list[str] | str, players: int, games: int, *, seed: int | None = None,
                  style: str = "fast", recorder=None, name_prefix: str | None = None,
                  two_share: float = TWO_SHARE, procs: int = 1, settings: Settings | None = None,
                  timeout: float = 30.0, drop_rate: float = 0.0, rate: float | None = None) -> Handle:
    """Start ``players`` bots; bot i plays on ``urls[i % len]`` (and knows the others, for
    when its server is gone). ``procs`` = 1: in one thread (one event loop), and
    ``handle.recorder`` fills as games end. ``procs`` > 1: spread over that many ``simlib
    player`` processes (with ``settings``' environment, default from the environment),
    which play the same bots as one thread would; ``recorder.on_game`` is called as they
    finish games, and ``handle.recorder`` holds their records once all have ended.
    ``stop()`` lets every bot finish its current game (at most STOP_GRACE seconds).
    ``drop_rate``: each bot walks away from a game with this probability. ``rate``: the
    bots' attacks per second in all (each process paces its share).
    """
    from .player import Recorder, bot_prefix, make_bots, play_all, wait_for_settings  # noqa: PLC0415

    if not 1 <= procs <= players:
        raise ValueError(f"procs must be between 1 and players ({players}), got {procs}")
    urls = [urls] if isinstance(urls, str) else list(urls)
    recorder = recorder or Recorder()
    prefix = name_prefix or bot_prefix(seed)
    settings = settings or Settings.from_env()
    if procs > 1:
        return _player_processes(urls, players, games, procs, recorder, prefix, settings,
                                 timeout, ["--bot", style, "--two-share", repr(two_share), "--drop-rate", repr(drop_rate)]
                                 + ([f"--seed={seed}"] if seed is not None else [])
                                 + (["--rate", repr(rate / procs)] if rate else []))
    bots = make_bots(urls, players, games, style=style, seed=seed, prefix=prefix, recorder=recorder,
                     two_share=two_share, wait=wait_for_settings(settings), drop_rate=drop_rate, rate=rate)

    class _Group:
        def stop(self):
            from .player import STOP_GRACE  # noqa: PLC0415

            for b in bots:
                b.stop(grace=STOP_GRACE)

    failures: list = []

    def target():
        failures.extend(aio.run(play_all(bots)))

    return _thread_handle(f"{prefix}players", _Group(), target, recorder=recorder, bots=bots, failures=failures)


def _player_processes(urls: list[str], players: int, games: int, procs: int, recorder, prefix: str,
                      settings: Settings, timeout: float, options: list[str]) -> Handle:
    """Bots ``players * k // procs`` up to the next share in child k. A child prints one
    line per finished game (the caller's progress) and dumps its records to a file when
    it ends; a thread waits for every child, then merges the files into ``recorder``.
    The handle is a thread handle, so it waits on an Event (see :func:`_thread_handle`)."""
    tmp = tempfile.TemporaryDirectory(prefix="simlib-players-")
    records = [Path(tmp.name, f"{k}.json") for k in range(procs)]

    def on_line(line: str) -> None:
        if not line.startswith(GAME):
            sys.stderr.write(line)
        elif recorder.on_game is not None:
            recorder.on_game(json.loads(line[len(GAME):]))

    children: list[_Child] = []
    try:
        for k in range(procs):
            lo, hi = players * k // procs, players * (k + 1) // procs
            args = ["player", "--players", str(hi - lo), f"--games={games}", "--name-prefix", prefix,
                    "--index-offset", str(lo), "--progress-lines", "--record", str(records[k]), *options,
                    *(x for url in urls for x in ("--url", url))]
            children.append(_Child(f"{prefix}players-{k}", args, settings, on_line=on_line))
        for child in children:  # all started first: they start up side by side
            child.ready(timeout)
    except BaseException:  # one did not start, or Ctrl-C: the others finish their games (SIGTERM)
        for child in children:
            child.proc.terminate()
        for child in children:
            child.join(30)
        tmp.cleanup()
        raise

    class _Group:
        def stop(self):  # a child takes SIGTERM as "finish the current game"
            for child in children:
                child.proc.terminate()

    failures: list = []

    def target():
        try:
            for child in children:
                child.join(None)
                child.pump.join()  # every progress line read
                if child.proc.returncode:
                    failures.append(RuntimeError(f"{child.name} exited with code {child.proc.returncode}"))
            recorder.merge(path for path in records if path.exists())
            missing = [c.name for c, path in zip(children, records) if not path.exists()]
            if missing:
                raise RuntimeError(f"{', '.join(missing)} ended without writing records")
        finally:
            tmp.cleanup()

    return _thread_handle(f"{prefix}players", _Group(), target, recorder=recorder, failures=failures,
                          pids=[c.proc.pid for c in children])
