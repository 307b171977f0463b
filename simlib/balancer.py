"""nginx in front of local game servers: the compose deployment's load balancer, run natively.

Why this is library code: the load-balanced topology (several server processes behind
one WebSocket address) is part of what the kit teaches, not only something a test
checks. The test suite (``tests/test_compose.py``) and the tutorial (notebook 8) start
it the same way, from the very ``compose/nginx.conf`` that Docker Compose mounts (the
template the nginx image's entrypoint renders), so what they show is what the compose
deployment does.

:func:`render_nginx_conf` copies compose/nginx.conf with four of its lines changed and
nothing else: the ``listen`` address (a loopback port), the container DNS ``resolver``
and the ``set $superhero_server`` target (an ``upstream`` block of loopback servers
instead; one shared round-robin over every nginx worker), and the ``access_log`` line
(a file in the work folder with the fields :func:`read_access_log` reads, plus temp
paths there, so that nginx runs unprivileged). :func:`start_nginx` runs the Debian
``nginx`` binary on it in the foreground and returns a :class:`NginxHandle` with the
same ``stop()`` and bounded ``join()`` as the parts ``simlib.launch`` starts.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path

from . import guard
from .launch import Handle
from .store import free_port

__all__ = [
    "ACCESS_LOG_FIELDS",
    "NGINX_CONF",
    "NginxHandle",
    "check_nginx_conf",
    "nginx_available",
    "nginx_binary",
    "read_access_log",
    "render_nginx_conf",
    "start_nginx",
    "upstream_port",
]

#: The compose deployment's nginx configuration, the template of every rendered copy.
NGINX_CONF = Path(__file__).resolve().parent.parent / "compose" / "nginx.conf"
#: What the rendered configuration logs per connection, '|'-separated, and the nginx
#: variable behind each field (``user`` is the name in a ``ws://name:x@host`` URL).
ACCESS_LOG_FIELDS = {"msec": "msec", "request_time": "request_time", "user": "remote_user", "uri": "uri",
                     "status": "status", "upstream": "upstream_addr"}
# The address of Docker's embedded DNS, as a container's /etc/resolv.conf names it.
_DOCKER_DNS = "127.0.0.11"
# compose/nginx.conf is a template: the nginx image's entrypoint fills this in (compose/nginx-resolver.envsh)
_LOCAL_RESOLVERS = "${NGINX_RESOLVER}"
_RESOLVER = r"^([ \t]*)resolver \$\{NGINX_RESOLVER\} [^;\n]*;$"
_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
_INSTALL_HINT = "Debian/Ubuntu: apt-get install nginx-light; macOS: brew install nginx"


def nginx_binary() -> str | None:
    """Path of the nginx binary (PATH first, then the usual sbin folders), or None."""
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                          if os.access(p, os.X_OK)), None)


def nginx_available() -> bool:
    """True when an nginx binary is installed here."""
    return nginx_binary() is not None


def _need_binary() -> str:
    binary = nginx_binary()
    if binary is None:
        raise FileNotFoundError(f"nginx is not installed ({_INSTALL_HINT})")
    return binary


def _replace_one(text: str, pattern: str, make: Callable[[re.Match], str], template: Path) -> str:
    new, count = re.subn(pattern, make, text, flags=re.M)
    if count != 1:
        raise ValueError(f"{template}: expected one line matching {pattern!r}, found {count}")
    return new


def render_nginx_conf(upstream_ports: Iterable[int] | None, listen_port: int, workdir: str | Path, *,
                      template: Path = NGINX_CONF) -> Path:
    """compose/nginx.conf made runnable here; returns the path of the copy, ``workdir/nginx.conf``.

    It listens on 127.0.0.1:``listen_port``; its temp files and access log
    (``workdir/access.log``) go under ``workdir``. With ``upstream_ports``, the container
    DNS lookup becomes an upstream block of loopback servers; with None it is kept, with
    the resolver Docker's nginx container gets (127.0.0.11, as the image's entrypoint
    writes it): a copy to check with ``nginx -t``, not to run outside Docker."""
    workdir = Path(workdir)
    text = template.read_text()
    text = _replace_one(text, r"^([ \t]*)listen 5678;$", lambda m: f"{m[1]}listen 127.0.0.1:{listen_port};",
                        template)
    fields = "|".join(f"${v}" for v in ACCESS_LOG_FIELDS.values())
    local = [f"log_format probe '{fields}';", f'access_log "{workdir}/access.log" probe;']
    local += [f'{kind}_temp_path "{workdir}/{kind}";' for kind in _TEMP_PATHS]
    text = _replace_one(text, r"^([ \t]*)access_log /dev/stdout websocket;$",
                        lambda m: "\n".join(m[1] + line for line in local), template)
    if upstream_ports is None:
        text = _replace_one(text, _RESOLVER, lambda m: m[0].replace(_LOCAL_RESOLVERS, _DOCKER_DNS), template)
    else:
        upstream = ["upstream superhero_servers {", "    zone superhero_servers 64k;",
                    *(f"    server 127.0.0.1:{port};" for port in upstream_ports), "}"]
        text = _replace_one(text, _RESOLVER, lambda m: "\n".join(m[1] + line for line in upstream), template)
        text = _replace_one(text, r"^([ \t]*)set \$superhero_server superhero_server:5678;$",
                            lambda m: f"{m[1]}set $superhero_server superhero_servers;", template)
    path = workdir / "nginx.conf"
    path.write_text(text)
    return path


def _nginx_args(binary: str, workdir: Path, conf: Path, *more: str) -> list[str]:
    return [binary, "-p", f"{workdir}/", "-e", "stderr", "-c", str(conf), *more]


def check_nginx_conf(conf: str | Path, workdir: str | Path | None = None,
                     timeout: float = 30.0) -> subprocess.CompletedProcess:
    """``nginx -t`` on a rendered configuration (``workdir`` defaults to its folder).

    Returns the finished process: exit code 0 and "test is successful" on stderr when
    nginx accepts the file."""
    conf = Path(conf)
    workdir = Path(workdir) if workdir is not None else conf.parent
    return subprocess.run(_nginx_args(_need_binary(), workdir, conf, "-t", "-g", f"pid {workdir}/nginx.pid;"),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def read_access_log(path: str | Path) -> list[dict[str, str]]:
    """The rendered configuration's access log, one dict per connection (keys:
    :data:`ACCESS_LOG_FIELDS`). nginx writes a line when a connection closes."""
    return [dict(zip(ACCESS_LOG_FIELDS, line.split("|"))) for line in Path(path).read_text().splitlines()]


def upstream_port(upstream_addr: str) -> int:
    """The port of the server nginx used last for a request ('a:1, b:2' after a retry)."""
    return int(upstream_addr.split(",")[-1].strip().rsplit(":", 1)[1])


class NginxHandle(Handle):
    """nginx running in the foreground as a child process, in its own process group,
    under :mod:`simlib.guard` (it ends with its owner, even a killed one).

    ``stop()`` asks for a graceful stop (SIGQUIT: open connections finish and are
    logged), ``join(timeout)`` waits at most ``timeout`` seconds, ``kill()`` ends the
    whole group at once; leaving a ``with`` block does all three as needed. Attributes:
    ``url`` (``ws://127.0.0.1:<port>``), ``port``, ``upstream_ports``, ``conf``,
    ``access_log`` (complete once nginx has ended), ``returncode`` and ``stderr``
    (nginx's own log). A work folder made by :func:`start_nginx` is removed with the
    handle, not at ``stop()``, so the access log can still be read after it."""

    def __init__(self, proc: subprocess.Popen, conf: Path, port: int, upstream_ports: list[int],
                 lines: list[str]):
        self.proc, self._lines = proc, lines
        super().__init__(f"nginx-{port}", "process", self._quit, self._wait, lambda: proc.poll() is None,
                         pid=proc.pid, port=port, url=f"ws://127.0.0.1:{port}", upstream_ports=upstream_ports,
                         conf=conf, access_log=conf.parent / "access.log")
        atexit.register(self.close)

    def _quit(self) -> None:
        if not guard.owned(self.proc):  # a forked copy leaves its parent's nginx be
            return
        # self.proc is the guard (simlib.guard); the master's pid is in nginx's pid file
        try:
            master = int((self.conf.parent / "nginx.pid").read_text())
        except (OSError, ValueError):  # not written yet: stop it the guard's way (SIGTERM)
            guard.end(self.proc, 0)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(master, signal.SIGQUIT)

    def _wait(self, timeout: float | None) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL to nginx's process group: the master and every worker, at once."""
        if self.proc.poll() is None:
            guard.kill_group(self.proc, signal.SIGKILL, 5)

    def close(self, timeout: float = 15.0) -> None:
        """Stop gracefully, wait at most ``timeout`` s, then kill. Idempotent."""
        self.stop()
        if not self.join(timeout):
            self.kill()
        atexit.unregister(self.close)

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    @property
    def stderr(self) -> str:
        return "".join(self._lines)

    def entries(self) -> list[dict[str, str]]:
        """The access log so far (see :func:`read_access_log`); complete once nginx has ended."""
        return read_access_log(self.access_log) if self.access_log.exists() else []


def start_nginx(upstream_ports: Iterable[int], listen_port: int = 0, *, workdir: str | Path | None = None,
                timeout: float = 15.0) -> NginxHandle:
    """Run nginx with the rendered compose configuration in front of loopback servers.

    ``listen_port`` 0 picks a free port (retried if another process takes it first).
    ``workdir`` holds the configuration, temp files and access log; default, a new
    temporary folder. Returns once nginx has opened its listening socket (bounded by
    ``timeout``); raises ``FileNotFoundError`` when nginx is not installed (see
    :func:`nginx_available`) and ``RuntimeError`` when it does not start."""
    binary = _need_binary()
    upstream_ports = [int(p) for p in upstream_ports]
    if not upstream_ports:
        raise ValueError("nginx needs at least one upstream server port")
    own = workdir is None  # a folder of our own: removed with the handle, or by the guard if we are killed
    folder = Path(workdir if workdir is not None else guard.new_folder("simlib-nginx-"))
    error = ""
    for _attempt in range(5 if listen_port == 0 else 1):  # a free port can be taken between probe and bind
        port = listen_port or free_port()
        folder.mkdir(parents=True, exist_ok=True)  # a failed attempt's guard may have removed it
        conf = render_nginx_conf(upstream_ports, port, folder)
        lines: list[str] = []
        (folder / "nginx.pid").unlink(missing_ok=True)  # a stale one would name another process
        # guarded: it ends with its owner even a killed one; its own process group, so the
        # workers can be reached if the master hangs
        proc = guard.spawn(
            _nginx_args(binary, folder, conf, "-g",
                        f"daemon off; master_process on; pid {folder}/nginx.pid; error_log stderr notice;"),
            remove=folder if own else None, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        handle = NginxHandle(proc, conf, port, upstream_ports, lines)
        ready = threading.Event()

        def pump(p=proc, out=lines, ev=ready):
            for line in p.stderr:  # type: ignore[union-attr]
                out.append(line)
                if "start worker process" in line:  # logged once the listening socket is open
                    ev.set()
            ev.set()  # nginx ended: wake the waiter

        threading.Thread(target=pump, name=f"nginx-{port}-stderr", daemon=True).start()
        if ready.wait(timeout) and proc.poll() is None:
            if own:
                weakref.finalize(handle, guard.remove_folder, folder, os.getpid())
            return handle
        handle.close(5)
        error = handle.stderr.strip() or f"no sign of a worker within {timeout:g} s"
        if "Address already in use" not in error:
            break
    if own:
        guard.remove_folder(folder, os.getpid())
    raise RuntimeError(f"nginx did not start:\n{error}")
