"""The ``simlib`` command as a user runs it: real processes, real servers, real Redis."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import redis

from conftest import ctrl_c_default, tool_missing
from simlib.config import variables

ROOT = Path(__file__).resolve().parents[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any Redis/WebSocket setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_", "WEBSOCKET_", "SERVER_SLEEP", "LOBBY_TIMEOUT", "CLIENT_GAMES"))}
    env.update(extra)
    return env


def simlib(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 240):
    return subprocess.run([sys.executable, "-m", "simlib", *args], env=env or clean_env(), cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def one_line_error(proc) -> str:
    """Assert the process failed the way a user mistake must: exit 2, one line, no traceback."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("simlib: error: "), proc.stderr
    return lines[-1]


def readme_commands() -> dict[str, set[str]]:
    """The README's table of commands: each command with the options its row names."""
    section = (ROOT / "README.md").read_text().split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ")[0] for line in section.splitlines() if line.startswith("| `simlib ")]
    return {re.match(r"\| `simlib ([\w-]+)", row)[1]: set(re.findall(r"--[\w-]+", row)) for row in rows}


def test_help_explains_commands_and_variables():
    """`simlib --help` lists exactly the README's commands, each with a line of help, and every variable
    with the help and default simlib.config declares; each command's --help has the options its README row names."""
    proc = simlib("--help")
    assert proc.returncode == 0, proc.stderr
    commands, env = proc.stdout.split("environment (also read from a .env file in the current folder):\n")
    readme = readme_commands()
    assert sorted(re.findall(r"^    ([\w-]+) {2,}\S", commands, re.M)) == sorted(readme)
    entries = dict(re.findall(r"^  ([A-Z][A-Z0-9_]*) +(.*?)(?=^  [A-Z]|\Z)", env, re.M | re.S))
    flat = "".join  # wrapped lines: compare the words, not where the lines break
    assert {name: flat(text.split()) for name, text in entries.items()} == {
        v.name: flat(f"{v.help} [default: {v.default}]".split()) for v in variables()}
    defaults = {v.name: v.default for v in variables()}
    for command, options in readme.items():
        sub = simlib(command, "--help", timeout=60)
        assert sub.returncode == 0, sub.stderr
        assert options <= set(re.findall(r"--[\w-]+", sub.stdout)), (command, options)
        # an option that defaults to a variable shows that variable's declared default
        for name, shown in re.findall(r"default ([A-Z][A-Z0-9_]*), ([^)\s;]+)\)", " ".join(sub.stdout.split())):
            assert shown == defaults[name], (command, name, shown)


def test_main_job_runs_on_an_embedded_redis(tmp_path):
    """The README's main job, with no Redis configured, ends with a consistent summary."""
    proc = simlib("run", "--players", "10", "--games", "3", "--json", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Embedded Redis at redis://127.0.0.1:" in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["errors"] == 0 and summary["workers"] == 1
    assert summary["completed"] + summary["timed_out"] == summary["games"] > 0
    assert sum(summary["games_by_participants"].values()) == summary["games"]
    assert summary["player_games"] == 10 * 3  # what the progress bar counts, apart from whole games
    assert summary["attacks"] > 0 and summary["top_heroes"]


def test_run_writes_parquet(tmp_path, redis_server):
    """`--out` writes games/players/attacks tables that agree with the summary; stdout is the JSON alone,
    and the progress bar counts player-games, not games."""
    out = tmp_path / "out"
    proc = simlib("run", "--players", "4", "--games", "2", "--workers", "0", "--json",
                  "--out", str(out), env=clean_env(REDIS_URL=redis_server.url, LOBBY_TIMEOUT="1"))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("wrote ")] == [
        f"wrote {out / name}" for name in ("games.parquet", "players.parquet", "attacks.parquet", "forfeits.parquet",
                                           "records.jsonl", "answer_key.json")]
    assert "player-games: 100%" in proc.stderr and "8/8" in proc.stderr
    assert summary["player_games"] == 8
    games = pd.read_parquet(out / "games.parquet")
    attacks = pd.read_parquet(out / "attacks.parquet")
    players = pd.read_parquet(out / "players.parquet")
    assert len(games) == summary["games"] and len(attacks) == summary["attacks"]
    assert len(pd.read_parquet(out / "forfeits.parquet")) == sum(summary["forfeits"].values()) == games["forfeits"].sum()
    assert len(players) == 4 * 2
    assert (games.loc[games["outcome"] == "Completed", "winner"].notna()).all()
    # one vocabulary: an outcome is the status Redis holds for the game (no worker ran: all are there)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    assert games["outcome"].tolist() == [client.get(f"games:{g}:status") for g in games["game"]]
    # either end: a lobby may time out (4 bots, each asking for 2 or 3 players)
    assert set(players["outcome"]) <= {"Completed", "Timed Out"}
    client.close()
    # one set of types: hero ids are integers that may be missing (never floats), one time unit
    import pyarrow.parquet as pq

    schemas = {name: pq.read_schema(out / f"{name}.parquet") for name in ("games", "players", "attacks", "forfeits")}
    assert str(schemas["games"].field("winner_hero").type) == str(schemas["players"].field("hero_id").type) == "int64"
    assert games["winner_hero"].isna().tolist() == (games["outcome"] != "Completed").tolist()
    times = {f"{name}.{field.name}": str(field.type) for name, schema in schemas.items() for field in schema
             if str(field.type).startswith("timestamp")}
    assert set(times) == {"games.started", "games.ended", "players.joined_at", "players.ended_at", "attacks.time",
                          "forfeits.time"}
    assert set(times.values()) == {"timestamp[us, tz=UTC]"}


def redis_cli() -> str | None:
    """The real redis-cli, to compare `simlib cli` with; without it that comparison is left out
    (and under CI=true the test fails: .ci/run installs redis-tools)."""
    found = shutil.which("redis-cli")
    if found is None:
        tool_missing("redis-cli is not installed (Debian: apt-get install redis-tools)", skip=False)
    return found


def _cli(url: str, *words: str) -> str:
    proc = simlib("cli", *words, env=clean_env(REDIS_URL=url))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_article_walkthrough_after_a_run_without_worker():
    """After `run --players 10 --games 5 --workers 0` the article's redis-cli walkthrough answers."""
    from simlib.store import EmbeddedRedis

    with EmbeddedRedis() as server:
        # the default LOBBY_TIMEOUT (5 s): the walkthrough is promised for a default run
        proc = simlib("run", "--players", "10", "--games", "5", "--workers", "0", "--no-progress",
                      env=clean_env(REDIS_URL=server.url))
        assert proc.returncode == 0, proc.stderr
        url = server.url
        listed = int(_cli(url, "LLEN", "games:players:2"))
        client = redis.Redis.from_url(url, decode_responses=True)
        members = [client.scard(f"games:{g}") for g in client.lrange("games:players:2", 0, -1)]
        client.close()
        # Each bot asks for 2 players in 3 of its 5 games (a deck: 60 %), so 30 seats: two to a game,
        # one in a lobby that timed out. How many lobbies time out depends on timing, so the count of
        # games is 15 plus half of those: at least 15, as the README promises for LRANGE ... 12 12.
        assert listed == len(members) and sum(members) == 10 * 3 and set(members) <= {1, 2}
        assert listed >= 15
        game = _cli(url, "LRANGE", "games:players:2", "12", "12")
        assert len(game) == 36
        assert _cli(url, "GET", f"games:{game}:status") == "Completed"
        members = _cli(url, "SMEMBERS", f"games:{game}").splitlines()
        assert len(members) == 2
        player = _cli(url, "SRANDMEMBER", f"games:{game}")
        assert player in members
        healths = []
        for member in members:
            fields = _cli(url, "HGETALL", f"games:{game}:superheros:{member}").splitlines()
            hero = dict(zip(fields[::2], fields[1::2]))
            assert set(hero) == {"id", "attack", "health"}
            healths.append(int(hero["health"]))
        assert sorted(h > 0 for h in healths) == [False, True]  # one loser at 0, one winner
        hero_id = _cli(url, "HGET", f"games:{game}:superheros:{player}", "id")
        record = json.loads(_cli(url, "HGET", "superheros", hero_id))
        assert "full-name" in record["biography"]
        real = redis_cli()
        if real:  # the same answer from the real redis-cli
            answer = subprocess.run([real, "-u", url, "LRANGE", "games:players:2", "12", "12"],
                                    capture_output=True, text=True, timeout=10)
            assert answer.stdout.strip() == game


@pytest.mark.parametrize("args,env,words", [
    (("run",), {"SERVER_SLEEP": "fast"}, "SERVER_SLEEP must be a number"),
    (("worker",), {}, "the worker needs a shared Redis"),
    (("build-db",), {}, "build-db needs a shared Redis"),
    (("cli",), {"REDIS_URL": "redis://127.0.0.1:1/0"}, "give a command"),
    (("cli", "PING"), {"REDIS_URL": "redis://127.0.0.1:1/0"}, "cannot reach Redis"),
    (("run",), {"REDIS_URL": "notaurl"}, "REDIS_URL must be a URL such as redis://localhost:6379/0"),
    (("run",), {"REDIS_URL": "localhost:6379"}, "got 'localhost:6379'"),
    (("server",), {"REDIS_URL": "redis://127.0.0.1:abc/0"}, "got 'redis://127.0.0.1:abc/0'"),
    (("worker",), {"REDIS_URL": "http://127.0.0.1/"}, "REDIS_URL must be a URL"),
    (("run", "--keep", "--workers", "1"), {}, "--keep keeps every game in Redis, so it runs no clean-up worker"),
])
def test_user_mistakes_end_with_one_line(args, env, words):
    """Bad settings or a missing Redis end with one `simlib: error:` line and exit 2."""
    assert words in one_line_error(simlib(*args, env=clean_env(**env), timeout=60))


@pytest.mark.parametrize("args,line", [
    (("run", "--games", "abc"), "simlib run: error: argument --games: must be a whole number, got 'abc'"),
    (("run", "--workers", "-1"), "simlib run: error: argument --workers: must be between 0 and 64, got -1"),
    (("run", "--two-share", "x"), "simlib run: error: argument --two-share: must be a number between 0 and 1, got 'x'"),
    (("player", "--seed", "x"), "simlib player: error: argument --seed: must be a whole number, got 'x'"),
])
def test_bad_options_say_what_is_wanted(args, line):
    """A bad option value is refused by argparse in words: no function name, no list of 65 choices."""
    proc = simlib(*args, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == line


def test_keep_runs_no_worker_and_keeps_every_game(tmp_path):
    """`run --keep`: no worker, the summary (JSON on stdout), then an embedded Redis that still holds
    every game, with no expiry, until Ctrl-C."""
    import queue
    import signal
    import threading

    proc = subprocess.Popen([sys.executable, "-m", "simlib", "run", "--keep", "--players", "4", "--games", "2",
                             "--json", "--no-progress"], env=clean_env(LOBBY_TIMEOUT="1"), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=ctrl_c_default)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stderr], daemon=True).start()
    try:
        url = None
        while url is None:
            line = lines.get(timeout=120)  # bounded: queue.Empty fails the test
            if line.startswith("Redis stays up at "):
                url = line.split()[4]
        summary = json.loads("".join(iter(proc.stdout.readline, "}\n")) + "}")
        assert summary["workers"] == 0 and summary["games"] > 0
        client = redis.Redis.from_url(url, decode_responses=True)
        games = client.lrange("games:players:2", 0, -1) + client.lrange("games:players:3", 0, -1)
        assert len(games) == summary["games"]
        assert sum(client.get(f"games:{g}:status") == "Completed" for g in games) == summary["completed"]
        assert {client.ttl(k) for k in client.scan_iter("games:*")} == {-1}
        client.close()
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()


def test_unwritable_out_is_refused_before_the_run(tmp_path):
    """`--out` where no folder can be made fails in one line before anything starts (no embedded Redis)."""
    (tmp_path / "a-file").write_text("")
    proc = simlib("run", "--out", str(tmp_path / "a-file" / "out"), timeout=60)
    assert f"--out {tmp_path / 'a-file' / 'out'}: cannot write there" in one_line_error(proc)
    assert "Embedded Redis" not in proc.stderr


def test_run_from_a_folder_holding_a_simlib_directory(tmp_path):
    """A clone's parent (a folder with a simlib/ directory) as the current folder: the run's child
    processes still import the installed package."""
    (tmp_path / "simlib").mkdir()
    (tmp_path / "simlib" / "__init__.py").write_text("raise ImportError('the wrong simlib was imported')\n")
    # -P: as the installed `simlib` command, which does not put the current folder on the path
    proc = subprocess.run([sys.executable, "-P", "-m", "simlib", "run", "--players", "2", "--games", "1",
                           "--no-progress"], env=clean_env(LOBBY_TIMEOUT="1"), cwd=tmp_path, capture_output=True,
                          text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "wrong simlib" not in proc.stderr
    assert "; 2 player-games (the progress bar's count)" in proc.stdout


def test_missing_roster_file_is_one_line(redis_server, tmp_path):
    """`build-db --file` on a missing file is a one-line error and leaves the roster alone."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    client.hset("superheros", "1", "{}")
    try:
        line = one_line_error(simlib("build-db", "--file", str(tmp_path / "nope.json"),
                                     env=clean_env(REDIS_URL=redis_server.url)))
        assert "nope.json" in line
        assert client.hgetall("superheros") == {b"1": b"{}"}
    finally:
        client.flushdb()  # a one-hero roster would break the next test that shares this server


def test_busy_port_is_one_line(redis_server):
    """A server asked to listen on a taken port says so in one line, naming where the port came from."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(simlib("server", "--host", "127.0.0.1", "--port", str(port),
                                     env=clean_env(REDIS_URL=redis_server.url), timeout=60))
        from_env = one_line_error(simlib("server", env=clean_env(REDIS_URL=redis_server.url, WEBSOCKET_PORT=str(port),
                                                                  WEBSOCKET_HOST="127.0.0.1"), timeout=60))
    assert line == (f"simlib: error: port {port} on 127.0.0.1 is already in use: choose another with --port, "
                    "or --port 0 for any free port")
    assert "set WEBSOCKET_PORT to a free port" in from_env and "--port" not in from_env


def test_roster_of_the_wrong_shape_is_one_line_in_words(redis_server, tmp_path):
    """A roster file of {"a": 1} names the key and says "a number", not a Python type."""
    path = tmp_path / "heroes.json"
    path.write_text('{"a": 1}')
    line = one_line_error(simlib("build-db", "--file", str(path), env=clean_env(REDIS_URL=redis_server.url)))
    assert line == (f"simlib: error: roster file {path}: the value of 'a' is a number, not a hero object "
                    "(an object with an id, a name and powerstats)")


def test_pull_without_token_is_one_line_and_no_progress_bar(redis_server):
    """`build-db pull` with no API_TOKEN prints its one error line and nothing else."""
    proc = simlib("build-db", "pull", env=clean_env(REDIS_URL=redis_server.url, API_TOKEN=""))
    one_line_error(proc)
    assert [ln for ln in proc.stderr.splitlines() if ln.strip()] == [
        "simlib: error: no API_TOKEN set: get a token at https://superheroapi.com and put it in .env"]


def test_player_without_server_is_one_line():
    """Bots pointed at a port where no server listens stop with one line naming the URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    line = one_line_error(simlib("player", "--url", f"ws://127.0.0.1:{port}", "--games", "1", timeout=60))
    assert f"ws://127.0.0.1:{port}" in line


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads child processes from /proc")
def test_ctrl_c_stops_everything_cleanly(redis_server, r):
    """Ctrl-C during an endless run: games in progress finish, summary, exit 130, no process left."""
    import signal

    from conftest import Tap

    tap = Tap(redis_server.url, "lib.server.lobby")
    proc = subprocess.Popen([sys.executable, "-m", "simlib", "run", "--players", "6", "--games", "-1",
                             "--no-progress"], env=clean_env(REDIS_URL=redis_server.url, LOBBY_TIMEOUT="1"),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=ctrl_c_default)
    try:
        finished = tap.collect(lambda ms: any(str(m["data"].get("log_message", "")).startswith("Game Finished")
                                              for m in ms if isinstance(m["data"], dict)), timeout=60)
        assert finished, "no game finished"
        children = _children(proc.pid)
        assert children, "the run should have started a server process"
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
        out, err = proc.communicate(timeout=90)
    finally:
        tap.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert out.startswith("Interrupted in") and "errors" not in out, out
    assert "Traceback" not in err
    assert [c for c in children if Path(f"/proc/{c}").exists()
            and "simlib" in Path(f"/proc/{c}/cmdline").read_text()] == []


def test_simlib_redis_prints_a_url_that_answers_and_stops_on_ctrl_c():
    """`simlib redis` prints the URL of a server that answers PING; Ctrl-C stops that server."""
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "simlib", "redis"], env=clean_env(), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=ctrl_c_default)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("redis://127.0.0.1:") and not url.startswith("redis://127.0.0.1:6379/")
        client = redis.Redis.from_url(url, socket_connect_timeout=5)
        assert client.ping()
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()


def test_run_on_a_busy_port_is_one_line(redis_server):
    """`simlib run` whose server cannot bind ends with a one-line error, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = simlib("run", "--players", "2", "--games", "1", "--no-progress",
                      env=clean_env(REDIS_URL=redis_server.url, WEBSOCKET_HOST="127.0.0.1", WEBSOCKET_PORT=str(port)),
                      timeout=60)
    line = one_line_error(proc)
    assert "did not start" in line and f"port {port} on 127.0.0.1 is already in use" in line
    assert [ln for ln in proc.stderr.splitlines() if ln.strip()] == [line]  # the server's own line is not repeated


# -- simlib cli: redis-cli's output ----------------------------------------------------------

# (command, what a pipe gets, what a terminal shows), as redis-cli 7 prints them; the keys
# are set up by CLI_KEYS before each command
CLI_CASES = [
    (["PING"], "PONG\n", "PONG\n"),
    (["SET", "foo", "bar"], "OK\n", "OK\n"),
    (["GET", "status"], "Completed\n", '"Completed"\n'),
    (["GET", "nope"], "\n", "(nil)\n"),
    (["LLEN", "list"], "3\n", "(integer) 3\n"),
    (["LRANGE", "list", "1", "1"], "b c\n", '1) "b c"\n'),
    (["LRANGE", "list", "0", "-1"], "a\nb c\né\n\n", '1) "a"\n2) "b c"\n3) "\\xc3\\xa9\\n"\n'),
    (["SMEMBERS", "nope"], "\n", "(empty array)\n"),
    (["HGETALL", "hash"], "id\n7\nhealth\n0\n", '1) "id"\n2) "7"\n3) "health"\n4) "0"\n'),
    (["HGET", "hash", "id"], "7\n", '"7"\n'),
    (["TYPE", "hash"], "hash\n", "hash\n"),
    (["INCR", "status"], "ERR value is not an integer or out of range\n\n",
     "(error) ERR value is not an integer or out of range\n"),
    (["EVAL", "return {1, {2, 'x'}, {}}", "0"], "1\n2\nx\n\n",
     '1) (integer) 1\n2) 1) (integer) 2\n   2) "x"\n3) (empty array)\n'),
]


def cli_keys(client: redis.Redis) -> None:
    client.delete("foo", "status", "list", "hash", "nope")
    client.set("status", "Completed")
    client.rpush("list", "a", "b c", "é\n")
    client.hset("hash", mapping={"id": "7", "health": "0"})


def in_terminal(cmd: list[str], env: dict) -> str:
    """What ``cmd`` prints when its standard output is a terminal (a pseudo-terminal here)."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.mark.parametrize("words,piped,shown", CLI_CASES, ids=[" ".join(c[0][:2]) for c in CLI_CASES])
def test_simlib_cli_prints_what_redis_cli_prints(r, redis_server, words, piped, shown):
    """`simlib cli` prints each reply as redis-cli does into a pipe and to a terminal (PONG, OK, quoted
    strings, (integer), (nil), nested arrays, errors with their code), and as the real redis-cli when installed."""
    env = clean_env(REDIS_URL=redis_server.url)
    cli_keys(r)
    proc = subprocess.run([sys.executable, "-m", "simlib", "cli", *words], env=env, cwd=ROOT, capture_output=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert proc.stdout.decode() == piped
    assert proc.returncode == (1 if words[0] == "INCR" else 0)
    cli_keys(r)
    assert in_terminal([sys.executable, "-m", "simlib", "cli", *words], env) == shown
    real = redis_cli()
    if real:
        cli_keys(r)
        assert subprocess.run([real, "-u", redis_server.url, *words], capture_output=True,
                              timeout=60).stdout.decode() == piped
        cli_keys(r)
        assert in_terminal([real, "-u", redis_server.url, *words], env) == shown
