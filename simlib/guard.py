"""Child processes that end with their owner, even a killed one.

The kit starts long-lived programs that are not Python (the embedded Valkey server,
nginx for notebook 08). ``atexit`` stops them when the owner exits normally, but a
notebook kernel that is restarted, or a run that gets SIGKILL, runs no exit code. So
each such program runs under a small ``sh`` guard that holds the read end of a pipe
whose only writer is the owner: when that pipe ends (the owner closed it, or the kernel
closed it because the owner died) the guard sends the program SIGTERM, and removes the
program's private folder once it has ended. The guard exits with the program's status,
so waiting on the guard is waiting on the program.

A forked copy of the owner (``multiprocessing`` on Linux) neither holds a program up
(its copy of the pipe is closed at the fork) nor stops it or removes its folder when it
exits (:func:`owned`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import weakref
from pathlib import Path

__all__ = ["spawn", "owned", "end", "kill_group", "new_folder", "remove_folder"]

_GUARD = Path(__file__).with_name("guard.sh")  # the script, shipped with the package
_LIVE: weakref.WeakSet[subprocess.Popen] = weakref.WeakSet()  # guards this process may own


def _drop_pipes_in_child() -> None:
    """In a forked child (multiprocessing's default on Linux) close the copies of the
    guards' pipes: only the owner may hold a program up, not a child that outlives it."""
    for proc in list(_LIVE):
        with contextlib.suppress(OSError, ValueError):
            proc.stdin.close()  # type: ignore[union-attr]  # the child's copy only


os.register_at_fork(after_in_child=_drop_pipes_in_child)


def spawn(args: list[str], *, remove: str | os.PathLike | None = None, **popen_kwargs) -> subprocess.Popen:
    """Start ``args`` under the guard, in its own session (a Ctrl-C meant for the owner
    does not reach it), with stdin /dev/null. ``remove``: the program's private folder,
    which the guard deletes once the program has ended because its owner closed the pipe
    or died (a temporary folder's own clean-up never runs in a killed owner). Other
    keyword arguments go to :class:`subprocess.Popen` (stdout, stderr, text...)."""
    extra = ["--rm", os.fspath(remove)] if remove is not None else []
    proc = subprocess.Popen(["sh", str(_GUARD), *extra, *args], stdin=subprocess.PIPE,
                            start_new_session=True, **popen_kwargs)
    proc._simlib_owner = os.getpid()  # type: ignore[attr-defined]
    _LIVE.add(proc)
    return proc


def owned(proc: subprocess.Popen) -> bool:
    """True in the process that spawned ``proc``; False in a forked copy of it, whose
    exit (and atexit handlers) must not stop what its parent still uses."""
    return getattr(proc, "_simlib_owner", None) == os.getpid()


def end(proc: subprocess.Popen, timeout: float) -> None:
    """Stop a guarded program (SIGTERM by closing its pipe), SIGKILL after ``timeout`` s.
    Does nothing outside its owner (see :func:`owned`)."""
    if not owned(proc):
        return
    with contextlib.suppress(OSError):
        proc.stdin.close()  # type: ignore[union-attr]
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc, signal.SIGKILL, timeout)


def kill_group(proc: subprocess.Popen, signum: int, timeout: float) -> None:
    """Send ``signum`` to the guard's whole process group (the guard, the program and its
    children) and wait at most ``timeout`` s for the guard to end. Does nothing outside
    its owner (see :func:`owned`)."""
    if not owned(proc):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signum)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)
    with contextlib.suppress(OSError):
        proc.stdin.close()  # type: ignore[union-attr]


def new_folder(prefix: str) -> str:
    """A new private folder for a guarded program (pass it as ``spawn(remove=...)``).

    Not a :class:`tempfile.TemporaryDirectory`: its clean-up also runs at the exit of a
    forked copy of the owner, which would delete the folder of a program still in use."""
    return tempfile.mkdtemp(prefix=prefix)


def remove_folder(path: str | os.PathLike, owner_pid: int) -> None:
    """Delete ``path`` if this is the process ``owner_pid`` (not a forked copy of it)."""
    if os.getpid() == owner_pid:
        shutil.rmtree(path, ignore_errors=True)
