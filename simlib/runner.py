"""One runner for the CLI and the notebooks: Redis, roster, workers, servers, bots.

:func:`simulate` starts everything (an embedded Redis when none is configured), plays
``players × games`` games with a progress bar, stops every part in order (bots, then
servers, then workers once they have drained the clean-up tasks) and returns a
:class:`RunResult` whose ``*_frame()`` methods give pandas DataFrames.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import threading
import time
import uuid
from pathlib import Path

from .config import TWO_SHARE, Settings
from .game import STATUS
from .keys import Keyspace
from .launch import Handle, start_players, start_server, start_worker
from .logs import flush_logs
from .player import STOP_GRACE, Recorder
from .roster import build_db, load_roster
from .store import EmbeddedRedis, connect, ensure_redis
from .stream import RunTap

__all__ = ["simulate", "RunResult", "ensure_roster", "ENDLESS_KEEP"]

#: rows and attacks an endless run (games=-1) keeps in memory for its tables
ENDLESS_KEEP = 100_000


def ensure_roster(client, keys: Keyspace | None = None) -> int:
    """Load the default roster when ``superheros`` is empty; returns the hero count."""
    keys = keys or Keyspace()
    count = client.hlen(keys.superheros)
    if count == 0:
        count = build_db(client, load_roster(), keys)
    return count


@dataclasses.dataclass
class RunResult:
    """What a run produced: the bots' records plus the run's shape and timing."""

    recorder: Recorder
    settings: Settings
    players: int
    games: int
    servers: int
    workers: int
    seed: int | None
    started: float
    ended: float
    hero_names: dict[str, str]
    server_connections: list[int] = dataclasses.field(default_factory=list)
    interrupted: bool = False
    #: FORFEIT records of the run's games, as published on lib.server.game
    forfeits: list[dict] = dataclasses.field(default_factory=list)
    drop_rate: float = 0.0
    _frames: dict | None = dataclasses.field(default=None, repr=False, compare=False)
    #: where records.jsonl was written while the run played (simulate(out=...))
    out: Path | None = None

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    def attacks_frame(self):
        return self.frames()["attacks"]

    def players_frame(self):
        return self.frames()["players"]

    def forfeits_frame(self):
        return self.frames()["forfeits"]

    def games_frame(self):
        return self.frames()["games"]

    def frames(self) -> dict:
        """Every table of the run by name (games, players, attacks, forfeits), built once."""
        if self._frames is None:
            from .explore import run_frames  # noqa: PLC0415

            self._frames = run_frames(self.recorder.games, self.recorder.attacks, self.forfeits, self.hero_names)
        return self._frames

    def summary(self) -> dict:
        """The headline figures as plain data. When every row was kept, the games are the
        tables' (one rule for a game's outcome and its winner, explore.run_frames); an
        endless run counts them as they come (Recorder.counts) and names the top heroes
        of the games it kept."""
        from .explore import OUTCOMES  # noqa: PLC0415 (pandas only when asked)

        players = self.players_frame()  # who won is decided once, for the tables
        wins = collections.Counter(str(int(h)) for h in players.loc[players["won"], "hero_id"])
        if self.recorder.keep is None:
            games = self.games_frame()
            outcome = collections.Counter(games["outcome"])
            totals = {"games": len(games), "player_games": len(self.recorder.games),
                      "games_by_participants": dict(sorted(collections.Counter(games["participants"].tolist()).items())),
                      "completed": outcome.get(STATUS.COMPLETED, 0), "timed_out": outcome.get(STATUS.TIMED_OUT, 0),
                      "attacks": len(self.recorder.attacks), "errors": len(self.recorder.errors),
                      "dropped": int((players["outcome"] == OUTCOMES["DROPPED"]).sum())}
        else:
            c = self.recorder.counts
            totals = {"games": c["games"], "player_games": c["player_games"],
                      "games_by_participants": {int(k.split(":")[1]): v for k, v in sorted(c.items())
                                                if k.startswith("size:")},
                      "completed": c["completed"], "timed_out": c["timed_out"], "attacks": c["attacks"],
                      "errors": c["errors"], "dropped": c["dropped"]}
        return {
            "seconds": round(self.seconds, 2),
            "players": self.players, "servers": self.servers, "workers": self.workers, "seed": self.seed,
            **totals,
            "attacks_per_s": round(totals["attacks"] / self.seconds, 1) if self.seconds > 0 else 0.0,
            "forfeits": dict(sorted(collections.Counter(f["STATUS"]["DETAILS"]["REASON"] for f in self.forfeits).items())),
            "drop_rate": self.drop_rate,
            "top_heroes": [(self.hero_names.get(h, h), n) for h, n in wins.most_common(5)],
            "interrupted": self.interrupted,
        }

    def report(self) -> str:
        """The summary as a few lines of text."""
        s = self.summary()
        sizes = ", ".join(f"{n}-player: {c}" for n, c in s["games_by_participants"].items()) or "none"
        lines = [
            f"{'Interrupted' if s['interrupted'] else 'Finished'} in {s['seconds']:.1f} s: "
            f"{s['players']} players, {s['servers']} server(s), {s['workers']} worker(s)",
            f"games     {s['games']} ({sizes}); {s['player_games']} player-games (the progress bar's count)",
            f"outcome   {s['completed']} completed, {s['timed_out']} timed out",
            f"attacks   {s['attacks']} ({s['attacks_per_s']:.1f} per second)",
        ]
        if s["forfeits"] or s["dropped"]:
            reasons = ", ".join(f"{n} {reason.lower()}" for reason, n in s["forfeits"].items()) or "none"
            lines.append(f"forfeits  {sum(s['forfeits'].values())} ({reasons}); games walked away from: {s['dropped']}")
        if s["top_heroes"]:
            lines.append("top heroes by wins: " + ", ".join(f"{name} ({n})" for name, n in s["top_heroes"]))
        if s["errors"]:
            lines.append(f"errors    {s['errors']} (first: {self.recorder.errors[0]})")
        return "\n".join(lines)

    def write(self, directory: str | Path) -> list[Path]:
        """The run's files in ``directory``: the tables as Parquet, and, when the records were
        written there while the run played, the answer key made from them."""
        paths = self.to_parquet(directory)
        if self.out is not None and Path(self.out) == Path(directory):
            from .answers import ANSWER_FILE, answer_key  # noqa: PLC0415
            from .stream import RECORDS_FILE, read_records  # noqa: PLC0415

            key = answer_key(record for _channel, _data, record in read_records(directory) if record)
            key["run"] = self.settings.run_id
            (Path(directory) / ANSWER_FILE).write_text(json.dumps(key, indent=1))
            paths += [Path(directory) / RECORDS_FILE, Path(directory) / ANSWER_FILE]
        return paths

    def to_parquet(self, directory: str | Path) -> list[Path]:
        """Write games, players, attacks and forfeits as Parquet files; returns their paths."""
        from .explore import write_parquet  # noqa: PLC0415

        return write_parquet(self.frames(), directory)


def simulate(settings: Settings | None = None, *, players: int = 10, games: int | None = None, workers: int = 1,
             servers: int = 1, seed: int | None = None, style: str = "fast", progress: bool = True,
             server_mode: str = "process", stop: threading.Event | None = None,
             two_share: float = TWO_SHARE, stdout_level: str | None = "WARNING", player_procs: int = 1,
             drop_rate: float = 0.0, out: str | Path | None = None, rate: float | None = None) -> RunResult:
    """Run a whole simulation and return its result (see module doc).

    ``games`` defaults to CLIENT_GAMES; -1 plays until ``stop`` is set (or Ctrl-C).
    ``player_procs`` > 1 spreads the bots over that many processes (more cores).
    Server ``i`` listens on WEBSOCKET_PORT + i when WEBSOCKET_PORT is set, else on a free port.
    ``stdout_level`` keeps server processes quiet on the terminal under the progress
    bar; pub/sub still gets every record at LOG_LEVEL. ``drop_rate``: each bot walks away
    from a game mid-way with this probability (forfeits and abandoned lobbies). ``out``:
    a folder where the run's records are written as they come (``records.jsonl``, every
    message on ``lib.*`` in ``seq`` order); :meth:`RunResult.write` adds the tables and the
    answer key. Each run gets a run id of its own (unless RUN_ID is set). ``rate``: hold the
    run to that many attacks per second (the bots are paced, and the servers do not pause
    between turns); with ``games=-1`` the run is then a steady stream until stopped.

    A run always ends: bots give up after repeated failures, and once they are done the
    run waits (bounded) for the deadlines of its last games, so every game it played is
    Completed or Timed Out when it returns. Ctrl-C stops it within seconds.
    """
    settings = settings or Settings.from_env()
    if not settings.run_id:  # this run's records are numbered on their own
        settings = settings.replace(run_id=uuid.uuid4().hex[:12])
    if seed is not None:  # the servers draw each game's token and heroes from it
        settings = settings.replace(run_seed=str(seed))
    if rate is not None:
        if rate <= 0:
            raise ValueError("rate must be more than 0 attacks per second")
        settings = settings.replace(server_sleep=0.0)  # the pacing is the bots'; a pause would only cap it
    games = settings.client_games if games is None else games
    if players < 1 or servers < 1 or workers < 0:
        raise ValueError("need at least 1 player and 1 server, and 0 or more workers")
    if games == 0 or games < -1:
        raise ValueError("games must be a positive number, or -1 for no limit")
    if not 1 <= player_procs <= players:
        raise ValueError("player_procs must be between 1 and players")
    if not 0 <= drop_rate <= 1:
        raise ValueError("drop_rate must be between 0 and 1")
    embedded: EmbeddedRedis | None = None
    handles: dict[str, list[Handle]] = {"players": [], "servers": [], "workers": []}
    # an endless run keeps its newest 100,000 rows and attacks (exact totals aside): its
    # memory stays flat however long it streams; records.jsonl (--out) keeps everything
    recorder = Recorder(keep=ENDLESS_KEEP if games < 0 else None)
    bar = None
    tap = None
    interrupted = False
    settings, embedded = ensure_redis(settings)
    try:
        keys = Keyspace(cluster=settings.redis_cluster)
        with connect(settings) as client:
            # a run that loads the roster owns it: its servers load it again if Redis
            # comes back without it (a restart of a Redis that keeps nothing)
            owns_roster = embedded is not None or client.hlen(keys.superheros) == 0
            ensure_roster(client, keys)
            hero_names = {h: json.loads(v).get("name", h) for h, v in client.hgetall(keys.superheros).items()}
        if settings.logger_module == "redis":
            tap = RunTap(settings, settings.run_id, Path(out) if out is not None else None, keep=recorder.keep)

        # workers first, so that no clean-up task is published before someone listens
        handles["workers"] = [start_worker(settings, name=f"worker-{i}", stdout_level=stdout_level)
                              for i in range(workers)]
        base = settings.websocket_port or 0  # not configured: free ports, nothing to collide with
        handles["servers"] = [
            start_server(settings, port=base + i if base else 0, mode=server_mode, name=f"server-{i}",
                         stdout_level=stdout_level, roster="default" if owns_roster else None)
            for i in range(servers)]
        urls = [h.url for h in handles["servers"]]

        if progress:
            from tqdm.auto import tqdm  # noqa: PLC0415

            # one tick per game a bot finished: a 2-player game counts twice (the summary's
            # "games" are whole games)
            bar = tqdm(total=players * games if games > 0 else None, unit="player-game", desc="player-games",
                       dynamic_ncols=True, leave=True)
            lock = threading.Lock()

            def tick(_row):
                with lock:
                    bar.update(1)
            recorder.on_game = tick
        started = time.time()
        bots = start_players(urls, players, games, seed=seed, style=style, recorder=recorder,
                             two_share=two_share, procs=player_procs, settings=settings, drop_rate=drop_rate,
                             rate=rate)
        handles["players"] = [bots]
        try:
            while not bots.join(0.5):  # bounded waits keep Ctrl-C responsive
                if stop is not None and stop.is_set():
                    bots.stop()
            _settle(settings, keys, {row["game"] for row in recorder.games})
        except KeyboardInterrupt:
            interrupted = True
            bots.stop()
            bots.join(STOP_GRACE + 2)
        ended = time.time()
        if bots.error is not None:
            raise bots.error
        connections = [getattr(h.part, "connections", None) for h in handles["servers"]]
        _stop_all(handles, quick=interrupted)  # the parts' last records go out as they stop
        flush_logs()
        forfeits = []
        if tap is not None:
            with connect(settings) as client:  # every record the run numbered is taken before the tap stops
                tap.wait_for(int(client.get(keys.seq(settings.run_id)) or 0), timeout=10)
            forfeits, tap = tap.stop(), None
        played = {row["game"] for row in recorder.games}
        return RunResult(recorder, settings, players, games, servers, workers, seed, started, ended, hero_names,
                         [c for c in connections if c is not None], interrupted,
                         [f for f in forfeits if f["PAYLOAD"]["GAME_TOKEN"] in played], drop_rate,
                         out=Path(out) if out is not None else None)
    finally:
        if bar is not None:
            bar.close()
        if tap is not None:
            tap.stop()
        _stop_all(handles, quick=interrupted)
        if embedded is not None:
            embedded.stop()


def _settle(settings: Settings, keys: Keyspace, games: set[str]) -> None:
    """Wait until none of ``games`` has a deadline left (a lobby a bot walked away from,
    a turn nobody will take): each is applied at its deadline by a server or a worker.
    Bounded by the longest wait the rules allow; sleeps until the next such deadline."""
    if not games:
        return
    limit = time.monotonic() + 2 * max(settings.lobby_timeout, settings.server_sleep + settings.turn_timeout) + 2
    wake = threading.Event()
    with connect(settings) as client:
        ordered = sorted(games)
        while time.monotonic() < limit:
            scores = [s for s in client.zmscore(keys.deadlines, ordered) if s is not None]
            if not scores:
                return
            seconds, micros = client.time()
            wait = (min(scores) - (seconds * 1000 + micros / 1000)) / 1000 + 0.05
            wake.wait(min(max(wait, 0.05), max(limit - time.monotonic(), 0)))


def _stop_all(handles: dict[str, list[Handle]], quick: bool = False) -> None:
    """Bots, then servers (which flush their last clean-up tasks), then workers, which
    drain every task published before their stop. Each waits a bounded time (short after
    Ctrl-C); a process that does not end in it is killed."""
    for group in ("players", "servers", "workers"):
        for h in handles[group]:
            with contextlib.suppress(Exception):
                h.stop()
        for h in handles[group]:
            if not h.join(2 if quick else 30) and getattr(h, "kill", None) is not None:
                h.kill()
