"""Child processes that end with their owner, even a killed one.

The kit starts long-lived programs that are not Python (the embedded Valkey server,
nginx for notebook 08). ``atexit`` stops them when the owner exits normally, but a
notebook kernel that is restarted, or a run that gets SIGKILL, runs no exit code. So
each such program runs under a small ``sh`` guard that holds the read end of a pipe
whose only writer is the owner: when that pipe ends (the owner closed it, or the kernel
closed it because the owner died) the guard sends the program SIGTERM. The guard exits
with the program's status, so waiting on the guard is waiting on the program.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

__all__ = ["spawn", "end", "kill_group"]

_GUARD = Path(__file__).with_name("guard.sh")  # the script, shipped with the package


def spawn(args: list[str], **popen_kwargs) -> subprocess.Popen:
    """Start ``args`` under the guard, in its own session (a Ctrl-C meant for the owner
    does not reach it), with stdin /dev/null. Other keyword arguments go to
    :class:`subprocess.Popen` (stdout, stderr, text...)."""
    return subprocess.Popen(["sh", str(_GUARD), *args], stdin=subprocess.PIPE,
                            start_new_session=True, **popen_kwargs)


def end(proc: subprocess.Popen, timeout: float) -> None:
    """Stop a guarded program (SIGTERM by closing its pipe), SIGKILL after ``timeout`` s."""
    with contextlib.suppress(OSError):
        proc.stdin.close()  # type: ignore[union-attr]
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc, signal.SIGKILL, timeout)


def kill_group(proc: subprocess.Popen, signum: int, timeout: float) -> None:
    """Send ``signum`` to the guard's whole process group (the guard, the program and its
    children) and wait at most ``timeout`` s for the guard to end."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signum)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)
    with contextlib.suppress(OSError):
        proc.stdin.close()  # type: ignore[union-attr]
