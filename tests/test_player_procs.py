"""`--player-procs`: a run's bots spread over `simlib player` processes, with real servers and Redis."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from simlib.launch import start_players
from simlib.player import Recorder, make_bots
from simlib.runner import simulate

from conftest import Tap, ctrl_c_default
from test_cli import ROOT, _children, clean_env, one_line_error, simlib


def run(settings, procs: int, **kw):
    return simulate(settings, players=8, games=2, workers=0, progress=False, player_procs=procs, **kw)


def choices(recorder) -> dict[str, list[int]]:
    """Each bot's participant counts in the order it played, by name suffix (the run id differs)."""
    rows = collections.defaultdict(list)
    for row in sorted(recorder.games, key=lambda row: row["joined_at"]):
        rows[row["name"][-4:]].append(row["participants"])
    return dict(rows)


def test_procs_run_gives_what_one_process_gives(settings, r):
    """8 bots × 2 games over 2 processes: 16 rows, unique names, no errors, every attack, the same shapes."""
    result = run(settings, 2)
    rows = result.recorder.games
    assert len(rows) == 16 and len({row["name"] for row in rows}) == 8
    assert result.recorder.errors == []
    logged = sum(r.llen(key) for key in r.scan_iter(match="games:*:logs", count=1000))
    assert len(result.recorder.attacks) == logged > 0
    latencies = result.recorder.turn_latencies()
    games_with_attacks = len({a["PAYLOAD"]["GAME_TOKEN"] for a in result.recorder.attacks})
    # each action but a game's last brings one turn notice; a notice read before its action's reply
    # (by another bot, maybe in another process) pairs with no action, hence <=
    assert 0 < len(latencies) <= logged - games_with_attacks
    # the processes' times are on one clock: an action and its notice both fall inside the run
    assert all(0 <= latency <= result.seconds for latency in latencies), (max(latencies), result.seconds)
    single = run(settings, 1)
    assert ({k: type(v) for k, v in result.summary().items()}
            == {k: type(v) for k, v in single.summary().items()})
    for frame in ("games_frame", "players_frame", "attacks_frame"):
        assert list(getattr(result, frame)().columns) == list(getattr(single, frame)().columns)


def test_seeded_procs_runs_choose_the_same(settings, game_server):
    """Two seeded runs over 2 processes make the same participant choices per bot."""
    runs = []
    for _ in range(2):
        handle = start_players(game_server.url, 6, 3, seed=3, procs=2, settings=settings)
        assert handle.join(120) and handle.error is None and not handle.failures
        runs.append(choices(handle.recorder))
    assert runs[0] == runs[1] and len(runs[0]) == 6


def test_bots_are_the_same_in_any_process_layout():
    """Bot i is named and seeded by its global index and uses urls[i % len(urls)]."""
    urls = ["ws://a", "ws://b"]
    whole = make_bots(urls, 5, 4, seed=9, prefix="p-")
    share = make_bots(urls, 2, 4, seed=9, prefix="p-", offset=3)
    assert [(b.name, b.url, b.deck) for b in whole[3:]] == [(b.name, b.url, b.deck) for b in share]
    assert [b.url for b in whole] == ["ws://a", "ws://b"] * 2 + ["ws://a"]


def test_stop_finishes_current_games_in_every_process(settings, game_server):
    """stop() on endless bots in 2 processes: they end, every game has an outcome and was reported as progress."""
    progress: list[dict] = []
    seen = threading.Event()
    recorder = Recorder(on_game=lambda row: (progress.append(row), seen.set()))
    handle = start_players(game_server.url, 4, -1, procs=2, settings=settings, recorder=recorder)
    assert seen.wait(60), "no game finished"
    handle.stop()
    assert handle.join(60) and handle.error is None and not handle.failures
    rows = handle.recorder.games
    assert rows and all(row["outcome"] in ("COMPLETE", "TIMED OUT") for row in rows)
    assert sorted(row["game"] + row["name"] for row in progress) == sorted(row["game"] + row["name"] for row in rows)
    assert handle.recorder.errors == []


@pytest.mark.parametrize("procs", ["0", "11"])
def test_player_procs_out_of_range_is_one_line(procs):
    """`--player-procs` below 1 or above --players is a one-line error."""
    assert "--player-procs must be between 1 and --players" in one_line_error(
        simlib("run", "--players", "10", "--player-procs", procs, timeout=60))


def _finished(messages) -> bool:
    return any(str(m["data"].get("log_message", "")).startswith("Game Finished")
               for m in messages if isinstance(m["data"], dict))


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads child processes from /proc")
def test_ctrl_c_with_player_procs_stops_every_process(redis_server, r):
    """Ctrl-C during an endless run over 3 bot processes: exit 130, a clean summary, no process left."""
    tap = Tap(redis_server.url, "lib.server.lobby")
    proc = subprocess.Popen([sys.executable, "-m", "simlib", "run", "--players", "6", "--games", "-1",
                             "--player-procs", "3", "--json", "--no-progress"], cwd=ROOT, start_new_session=True,
                            preexec_fn=ctrl_c_default,
                            env=clean_env(REDIS_URL=redis_server.url, LOBBY_TIMEOUT="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with contextlib.closing(tap), contextlib.ExitStack() as on_failure:
        on_failure.callback(proc.kill)
        tap.collect(lambda _: r.hlen("users") == 6, timeout=60)
        assert r.hlen("users") == 6, "not every bot of the three processes logged in"
        tap.messages.clear()
        assert _finished(tap.collect(_finished, timeout=60)), "no game finished"
        children = _children(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a terminal sends it
        out, err = proc.communicate(timeout=90)
        on_failure.pop_all()
    assert proc.returncode == 130 and "Traceback" not in err, err
    summary = json.loads(out)
    assert summary["interrupted"] and summary["errors"] == 0 and summary["games"] > 0
    assert len(children) == 4  # one server, three bot processes
    assert [c for c in children if Path(f"/proc/{c}").exists()] == []
