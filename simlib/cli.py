"""``simlib`` command line: thin wrappers over the package.

A user mistake (a bad setting, a busy port, a missing file, an unreachable Redis)
ends with one ``simlib: error: ...`` line and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import signal
import sys
import threading

from . import __version__
from .config import TWO_SHARE

__all__ = ["main"]

def _env_help() -> str:
    """The environment variables, from their declarations in simlib.config."""
    import textwrap  # noqa: PLC0415

    from .config import variables  # noqa: PLC0415

    lines = ["environment (also read from a .env file in the current folder):"]
    for v in variables():
        lines.append(textwrap.fill(f"{v.help} [default: {v.default}]", 96, initial_indent=f"  {v.name:<19} ",
                                   subsequent_indent=" " * 22))
    return "\n".join(lines) + "\n"


_ENV_HELP = _env_help()


def _default(name: str) -> str:
    """An environment variable's default as the docs show it (declared in simlib.config)."""
    from .config import variables  # noqa: PLC0415

    return next(v.default for v in variables() if v.name == name)


class UserError(Exception):
    """A mistake the user can fix; printed as one line."""


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def _positive(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _games(text: str) -> int:
    value = _whole(text)
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError(f"must be a positive number or -1 (no limit), got {value}")
    return value


def _workers(text: str) -> int:
    value = _whole(text)
    if not 0 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be between 0 and 64, got {value}")
    return value


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


def _positive_float(text: str) -> float:
    value = _number(text, "a number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return value


def _share(text: str) -> float:
    value = _number(text, "a number between 0 and 1")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simlib",
        description="Super Hero Combat data simulator: bot players fight over WebSockets, every step "
                    "lands in Redis and on Redis pub/sub.",
        epilog=_ENV_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"simlib {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a whole simulation and print a summary",
                         description="Start Redis (embedded unless configured), load the roster if needed, start "
                                     "workers, servers and bots, play, then print a summary.",
                         epilog=_ENV_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--players", type=_positive, default=10, help="bot players (default 10)")
    run.add_argument("--games", type=_games, default=None,
                     help=f"games per player (default CLIENT_GAMES, {_default('CLIENT_GAMES')})")
    run.add_argument("--workers", type=_workers, default=None, metavar="W",
                     help="clean-up workers, 0 to 64 (default 1, or 0 with --keep; 0 keeps every game in Redis)")
    run.add_argument("--servers", type=_positive, default=1, help="game server processes (default 1)")
    run.add_argument("--seed", type=_whole, default=None, help="seed for the bots' choices (repeatable runs)")
    run.add_argument("--bot", choices=("fast", "v1", "v2"), default="fast",
                     help="fast: v1 frames over connections kept open (default); v1: a new connection per "
                          "step, as the original bots; v2: the session protocol, one connection per bot")
    run.add_argument("--two-share", type=_share, default=TWO_SHARE, metavar="P",
                     help="share of each bot's games asked as 2-player games (default %(default)s)")
    run.add_argument("--rate", type=_positive_float, default=None, metavar="N",
                     help="hold the run to N attacks per second, steadily (the servers do not pause between turns; "
                          "with --games -1 a stream until Ctrl-C). Needs players enough: each waits its turn, so "
                          "keep players / N under TURN_TIMEOUT")
    run.add_argument("--drop-rate", type=_share, default=0.0, metavar="P",
                     help="each bot walks away from a game mid-way with probability P, seeded with --seed: the "
                          "stream then carries forfeits and abandoned lobbies (default 0)")
    run.add_argument("--out", metavar="DIR", help="also write games/players/attacks as Parquet files to DIR")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.add_argument("--keep", action="store_true",
                     help="keep every game to explore it: no clean-up worker, and an embedded Redis stays up "
                          "after the summary (Ctrl-C to stop)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--server-mode", choices=("process", "thread"), default="process",
                     help="run servers as processes (default, uses more cores) or threads")
    run.add_argument("--player-procs", type=_whole, default=1, metavar="P",
                     help="spread the bots over P processes (default 1: a thread of this one; more use more cores)")

    server = sub.add_parser("server", help="run one game server in the foreground")
    server.add_argument("--host", default=None, help="interface (default WEBSOCKET_HOST)")
    server.add_argument("--port", type=_whole, default=None, help="port (default WEBSOCKET_PORT; 0 = free port)")
    server.add_argument("--roster", metavar="FILE", default=None,
                        help="load this roster file ('default': the kit's own) whenever Redis is found without "
                             "heroes, e.g. after it restarted empty (default: only at start, with an embedded Redis)")
    _launcher_options(server)

    worker = sub.add_parser("worker", help="run the clean-up worker in the foreground",
                            description="Handles clean-up tasks (TASK_TRANSPORT: pubsub or streams), archives each "
                                        "finished game, and applies the games' deadlines.")
    worker.add_argument("--burst", action="store_true", help="exit after a quiet second instead of waiting")
    worker.add_argument("--claim-idle", type=float, default=30.0, metavar="SECONDS",
                        help="streams: take over the tasks another worker left pending this long (default 30)")
    worker.add_argument("--sweep-every", type=float, default=0.0, metavar="SECONDS",
                        help="also sweep for finished games left without expiry every SECONDS (default 0: only "
                             "after losing Redis)")
    _launcher_options(worker)

    sweep = sub.add_parser("sweep", help="clean finished games whose clean-up task was lost (one pass)",
                           description="One pass over the oldest games of each games:players:<n>: every finished "
                                       "game (Completed or Timed Out) whose keys have no expiry is cleaned as the "
                                       "worker would (archived, then expired). Prints how many; safe to repeat.")
    sweep.add_argument("--limit", type=_positive, default=1000, metavar="N",
                       help="look at most at the N oldest games of each list (default 1000)")

    chk = sub.add_parser("check", help="compare a pipeline's results with a run's answer key",
                         description="DIR is a 'simlib run --out DIR' folder (its answer_key.json). RESULTS is your "
                                     "pipeline's output: a JSON object or a two-column CSV (with a header) of game "
                                     "token -> winner user token, or hero (id or name) -> wins. Prints each "
                                     "difference; exit 0 when there is none, 1 otherwise.")
    chk.add_argument("dir", metavar="DIR", help="the run's --out folder")
    chk.add_argument("results", metavar="RESULTS", help="your results: .json or .csv")

    rep = sub.add_parser("replay", help="publish a recorded run again, byte for byte, in order",
                         description="DIR is a 'simlib run --out DIR' folder: every message of its records.jsonl "
                                     "is published again on its channel (or added to a stream), exactly as it was, "
                                     "in seq order. Test a pipeline twice on the same data.")
    rep.add_argument("dir", metavar="DIR", help="the run's --out folder")
    pace = rep.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=None, metavar="X",
                      help="the run's own spacing, X times faster (default: 1, as it happened)")
    pace.add_argument("--rate", type=float, default=None, metavar="N", help="N records per second, evenly")
    pace.add_argument("--max", action="store_true", help="as fast as Redis takes them (pipelined)")
    rep.add_argument("--to-stream", metavar="KEY", default=None,
                     help="add the records to the Redis stream KEY (fields channel, data) instead of publishing")

    archive = sub.add_parser("archive", help="write the archived games (archive:games) as Parquet",
                             description="The worker archives each finished game before its keys expire. This "
                                         "writes what the archive holds as games/players/attacks/forfeits Parquet "
                                         "files, in the shape of 'simlib run --out'.")
    archive.add_argument("--out", metavar="DIR", required=True, help="folder for the Parquet files")
    archive.add_argument("--last", type=_positive, default=None, metavar="N", help="only the newest N games")

    player = sub.add_parser("player", help="run bot players against WEBSOCKET_HOST:WEBSOCKET_PORT")
    player.add_argument("--players", type=_positive, default=1, help="bots in this process (default 1)")
    player.add_argument("--games", type=_games, default=None,
                        help=f"games per bot (default CLIENT_GAMES, {_default('CLIENT_GAMES')})")
    player.add_argument("--seed", type=_whole, default=None, help="seed for the bots' choices")
    player.add_argument("--bot", choices=("fast", "v1", "v2"), default="v1",
                        help="bot style: v1 (default, as the original bots), fast (v1 frames, connections kept "
                             "open) or v2 (session protocol)")
    player.add_argument("--url", action="append", default=None,
                        help="server URL (default ws://WEBSOCKET_HOST:WEBSOCKET_PORT); repeat it to spread "
                             "the bots: bot i uses the i-th URL, round robin")
    player.add_argument("--two-share", type=_share, default=TWO_SHARE, metavar="P",
                        help="share of each bot's games asked as 2-player games (default %(default)s)")
    player.add_argument("--drop-rate", type=_share, default=0.0, metavar="P",
                        help="each bot walks away from a game mid-way with probability P (default 0)")
    player.add_argument("--rate", type=_positive_float, default=None, metavar="N",
                        help="these bots' attacks per second, in all (default: as fast as the game goes)")
    _launcher_options(player)
    # simlib.launch runs a run's bots as several of these: one name prefix and global
    # bot indices keep names unique and seeds per bot; games and records come back
    player.add_argument("--name-prefix", default=None, help=argparse.SUPPRESS)
    player.add_argument("--index-offset", type=int, default=0, help=argparse.SUPPRESS)
    player.add_argument("--progress-lines", action="store_true", help=argparse.SUPPRESS)
    player.add_argument("--record", metavar="PATH", default=None, help=argparse.SUPPRESS)

    db = sub.add_parser("build-db", help="load the hero roster into Redis ('build-db pull' downloads it first)")
    db.add_argument("action", nargs="?", choices=("pull",), help="pull: download from the Super Hero API "
                                                                 "with API_TOKEN, write the roster file, load it")
    db.add_argument("--file", default=None, help="roster file (default data/heroes.json)")

    bench = sub.add_parser("bench", help="measure throughput, latency and Redis cost against this machine's ceiling",
                           description="Runs on a private embedded Redis (a few minutes); prints a Markdown table.")
    bench.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    bench.add_argument("--window", type=float, default=10.0, help="seconds measured per scenario (default 10)")
    bench.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per scenario (default 3)")
    bench.add_argument("--quick", action="store_true", help="two tiny scenarios and small joins (a smoke test)")

    cli = sub.add_parser("cli", help="run one Redis command and print the reply as redis-cli does",
                         description="For machines without redis-cli: 'simlib cli LLEN games:players:2' runs the "
                                     "command against REDIS_URL and prints the reply in redis-cli's format.")
    cli.add_argument("words", nargs=argparse.REMAINDER, metavar="COMMAND [ARG ...]")

    rds = sub.add_parser("redis", help="start an embedded Redis in the foreground and print its URL")
    rds.add_argument("--port", type=_whole, default=0, help="port (default: a free one)")
    return parser


def _terminate(*_):
    raise KeyboardInterrupt


def _launcher_options(parser: argparse.ArgumentParser) -> None:
    """Options simlib.launch uses when it runs a part as a child process."""
    parser.add_argument("--announce", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stdout-level", default=None, help=argparse.SUPPRESS)


def _stop_with_parent(stop) -> None:
    """A launched part reads its stdin, a pipe from the launcher: EOF means the launcher
    is gone (even killed), so the part stops instead of living on as an orphan."""
    def watch():
        with contextlib.suppress(OSError):
            while os.read(0, 4096):  # unbuffered: no lock held at interpreter shutdown
                pass
        stop()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _announce(args, value) -> None:
    if args.announce:
        from .launch import READY  # noqa: PLC0415

        print(f"{READY} {value}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command != "worker":  # SIGTERM cleans up as Ctrl-C does (the worker has its own)
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("\nsimlib: stopped", file=sys.stderr)
        return 130
    except UserError as exc:
        return _fail(args, str(exc))
    except Exception as exc:  # known user-facing failures become one line
        text = _explain(exc)
        if text is None:
            raise
        return _fail(args, text)


def _fail(args, text: str) -> int:
    """Say a user mistake in one line. A part a launcher started (``--announce``) hands
    the line to the launcher instead, which says it once, with the part's name."""
    if getattr(args, "announce", False):
        from .launch import FAILED  # noqa: PLC0415

        print(f"{FAILED} {text}", flush=True)
    else:
        print(f"simlib: error: {text}", file=sys.stderr)
    return 2


def _explain(exc: BaseException) -> str | None:
    from .config import SettingsError  # noqa: PLC0415
    from .roster import RosterError  # noqa: PLC0415
    from .store import RedisUnavailable  # noqa: PLC0415

    from .launch import PartStartError  # noqa: PLC0415

    if isinstance(exc, (SettingsError, RosterError, RedisUnavailable, PartStartError)):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:  # a server says which port, and why
        return f"a port is already in use ({exc.strerror})"
    if isinstance(exc, OSError) and exc.filename:
        return f"cannot write or read {exc.filename}: {exc.strerror}"
    import redis  # noqa: PLC0415

    if isinstance(exc, redis.AuthenticationError):  # a ConnectionError too: test it first
        return f"Redis refused the credentials: {exc}"
    if isinstance(exc, redis.ConnectionError):
        return f"cannot reach Redis: {exc}"
    return None


def _dispatch(args) -> int:
    from .config import Settings  # noqa: PLC0415

    settings = Settings.from_env()
    return {"run": _run, "server": _server, "worker": _worker, "player": _player,
            "build-db": _build_db, "redis": _redis, "cli": _cli, "bench": _bench,
            "sweep": _sweep, "archive": _archive, "check": _check,
            "replay": _replay}[args.command](settings, args)


def _run(settings, args) -> int:
    from .runner import simulate  # noqa: PLC0415
    from .store import ensure_redis  # noqa: PLC0415

    if not 1 <= args.player_procs <= args.players:
        raise UserError(f"--player-procs must be between 1 and --players ({args.players}), got {args.player_procs}")
    if args.keep and args.workers:
        raise UserError("--keep keeps every game in Redis, so it runs no clean-up worker: leave out --workers")
    workers = args.workers if args.workers is not None else 0 if args.keep else 1
    if args.out:
        _writable_folder(args.out)  # before the run, not after it
    settings, embedded = ensure_redis(settings)
    if embedded is not None:
        print(f"Embedded Redis at {embedded.url} (set REDIS_URL to use your own)", file=sys.stderr)
    try:
        from .logs import setup_logging  # noqa: PLC0415

        # pub/sub gets everything; the terminal stays readable, and stdout is the summary's
        setup_logging(settings, stdout_level="WARNING", stream=sys.stderr)
        result = simulate(settings, players=args.players, games=args.games, workers=workers,
                          servers=args.servers, seed=args.seed, style=args.bot, progress=not args.no_progress,
                          server_mode=args.server_mode, two_share=args.two_share, player_procs=args.player_procs,
                          drop_rate=args.drop_rate, out=args.out, rate=args.rate)
        if args.json:
            print(json.dumps(result.summary(), indent=2))
        else:
            print(result.report())
        if args.out:
            for path in result.write(args.out):
                print(f"wrote {path}", file=sys.stderr)  # stdout holds the summary only (JSON with --json)
        if args.keep and embedded is not None:
            sys.stdout.flush()
            print(f"\nRedis stays up at {embedded.url} — try:  redis-cli -u {embedded.url} LLEN games:players:2\n"
                  "Press Ctrl-C to stop it.", file=sys.stderr, flush=True)
            threading.Event().wait()
        if result.interrupted:
            return 130
        return 0 if not result.recorder.errors else 1
    finally:
        if embedded is not None:
            embedded.stop()


def _writable_folder(path: str) -> None:
    """Create ``path`` and write a file in it, or say in one line why that fails."""
    import tempfile  # noqa: PLC0415

    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise UserError(f"--out {path}: cannot write there ({exc.strerror or exc})") from None


def _server(settings, args) -> int:
    from .keys import Keyspace  # noqa: PLC0415
    from .logs import setup_logging  # noqa: PLC0415
    from .runner import ensure_roster  # noqa: PLC0415
    from .server import GameServer  # noqa: PLC0415
    from .store import connect, ensure_redis  # noqa: PLC0415

    settings, embedded = ensure_redis(settings)
    try:
        setup_logging(settings, stdout_level=args.stdout_level)
        if embedded is not None:
            logging.getLogger("lib.server.lobby").info("Embedded Redis at %s (set REDIS_URL to share one)",
                                                       embedded.url)
        with connect(settings) as client:
            if embedded is not None:
                ensure_roster(client)
            elif client.hlen(Keyspace(cluster=settings.redis_cluster).superheros) == 0:
                logging.getLogger("lib.server.lobby").warning("No heroes loaded: run 'simlib build-db' first")
        server = GameServer(settings, host=args.host, port=args.port, roster=args.roster)
        if args.announce:
            threading.Thread(target=lambda: server.ready.wait(60) and _announce(args, server.port),
                             daemon=True).start()
            _stop_with_parent(server.stop)
        from . import aio  # noqa: PLC0415

        aio.tune_gc()
        try:
            server.run()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            fix = ("choose another with --port, or --port 0 for any free port" if args.port is not None
                   and not args.announce else "set WEBSOCKET_PORT to a free port, or 0 for any")
            raise UserError(f"port {server.port} on {server.host} is already in use: {fix}") from None
        return 0
    finally:
        if embedded is not None:
            embedded.stop()


def _need_redis(settings, what: str) -> None:
    if not settings.redis_configured:
        raise UserError(f"{what} needs a shared Redis: start one with 'simlib redis' and set REDIS_URL "
                        "to the URL it prints (an embedded one would vanish when this command ends)")


def _worker(settings, args) -> int:
    from .logs import setup_logging  # noqa: PLC0415
    from .worker import Worker  # noqa: PLC0415

    _need_redis(settings, "the worker")
    setup_logging(settings, stdout_level=args.stdout_level)
    worker = Worker(settings, claim_idle=args.claim_idle, sweep_every=args.sweep_every)

    # SIGTERM (docker stop, a launcher): finish the tasks already published; Ctrl-C: now
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=worker.stop, daemon=True).start())
    if args.announce:
        threading.Thread(target=lambda: worker.ready.wait(60) and _announce(args, worker.name),
                         daemon=True).start()
        _stop_with_parent(lambda: worker.stop(drain=False))
    try:
        handled = worker.run(burst=args.burst)
    except KeyboardInterrupt:
        worker.stop(drain=False)
        handled = worker.handled
    print(f"worker handled {handled} clean-up tasks, archived {worker.archived} games, swept {worker.swept}",
          file=sys.stderr)
    return 0


def _archive(settings, args) -> int:
    from .archive import archive_frames, read_archive  # noqa: PLC0415
    from .explore import write_parquet  # noqa: PLC0415
    from .keys import Keyspace  # noqa: PLC0415
    from .store import connect  # noqa: PLC0415

    _need_redis(settings, "simlib archive")
    _writable_folder(args.out)
    keys = Keyspace(cluster=settings.redis_cluster)
    with connect(settings) as client:
        entries = read_archive(client, keys, args.last)
        names = {h: json.loads(v).get("name", h) for h, v in client.hgetall(keys.superheros).items()}
    for path in write_parquet(archive_frames(entries, names), args.out):
        print(f"wrote {path}", file=sys.stderr)
    print(f"{len(entries)} archived game(s)")
    return 0


def _check(settings, args) -> int:
    from .answers import ANSWER_FILE, ResultsError, check  # noqa: PLC0415

    key_path = os.path.join(args.dir, ANSWER_FILE)
    try:
        with open(key_path) as fh:
            key = json.load(fh)
    except OSError as exc:
        raise UserError(f"no answer key at {key_path} ({exc.strerror}): make one with 'simlib run --out {args.dir}'")
    except ValueError:
        raise UserError(f"{key_path} is not an answer key (not JSON)") from None
    try:
        diffs = check(key, args.results)
    except ResultsError as exc:
        raise UserError(str(exc)) from None
    for line in diffs:
        print(line)
    print(f"{len(diffs)} difference(s) from the answer key" if diffs
          else f"the results agree with the answer key ({len(key['games'])} games)")
    return 1 if diffs else 0


def _replay(settings, args) -> int:
    from .store import connect  # noqa: PLC0415
    from .stream import RECORDS_FILE, read_records, replay  # noqa: PLC0415

    _need_redis(settings, "simlib replay")
    if (args.speed is not None and args.speed <= 0) or (args.rate is not None and args.rate <= 0):
        raise UserError("--speed and --rate must be more than 0")
    try:
        rows = list(read_records(args.dir))
    except FileNotFoundError:
        raise UserError(f"no {RECORDS_FILE} in {args.dir}: record one with 'simlib run --out {args.dir}'") from None
    with connect(settings) as client:
        sent, seconds = replay(client, rows, speed=args.speed or 1.0, rate=args.rate, flat_out=args.max,
                               stream=args.to_stream)
    where = f"into the stream {args.to_stream}" if args.to_stream else "on pub/sub"
    print(f"replayed {sent} records {where} in {seconds:.2f} s ({sent / seconds if seconds else 0:,.0f} per second)")
    return 0


def _sweep(settings, args) -> int:
    from .store import connect  # noqa: PLC0415
    from .sweep import Cleaner, sweep  # noqa: PLC0415

    _need_redis(settings, "simlib sweep")
    with connect(settings) as client:
        swept = sweep(Cleaner(client, settings), limit=args.limit)
    print(f"swept {swept} finished game(s) that had no expiry")
    return 0


def _player(settings, args) -> int:
    from . import aio  # noqa: PLC0415
    from .launch import GAME  # noqa: PLC0415
    from .player import STOP_GRACE, Recorder, make_bots, play_all, wait_for_settings  # noqa: PLC0415
    from .runner import ENDLESS_KEEP  # noqa: PLC0415

    games = settings.client_games if args.games is None else args.games
    urls = args.url or [settings.websocket_url]
    recorder = Recorder(keep=ENDLESS_KEEP if games < 0 else None)  # an endless player's memory stays flat
    if args.progress_lines:
        recorder.on_game = lambda row: print(GAME, json.dumps(row), flush=True)
    bots = make_bots(urls, args.players, games, style=args.bot, seed=args.seed, prefix=args.name_prefix,
                     offset=args.index_offset, recorder=recorder, two_share=args.two_share,
                     wait=wait_for_settings(settings), drop_rate=args.drop_rate, rate=args.rate)
    aio.tune_gc()
    if args.announce:  # the launcher's stop (SIGTERM) or its end: finish the current game (bounded)
        def stop(*_):
            for b in bots:
                b.stop(grace=STOP_GRACE)
        signal.signal(signal.SIGTERM, stop)
        _stop_with_parent(stop)
        _announce(args, len(bots))
    try:
        failures = aio.run(play_all(bots))
    finally:
        if args.record:
            recorder.dump(args.record)
    if not args.announce:  # a launcher reports for its children
        print(f"{args.players} bot(s) played {len(recorder.games)} games, {len(recorder.attacks)} attacks, "
              f"{len(recorder.errors)} errors", file=sys.stderr)
    if failures:
        raise UserError(f"{len(failures)} bot(s) stopped early: {failures[0]} (is a server at {', '.join(urls)}?)")
    return 0


def _build_db(settings, args) -> int:
    from .roster import ROSTER_PATH, build_db, load_roster, pull_roster  # noqa: PLC0415
    from .store import connect  # noqa: PLC0415

    _need_redis(settings, "build-db")
    path = args.file or ROSTER_PATH
    client = connect(settings)  # fail early, before a long download
    if args.action == "pull":
        from tqdm.auto import tqdm  # noqa: PLC0415

        bar = None  # drawn with the first hero: a pull refused at once draws none

        def progress(n: int) -> None:
            nonlocal bar
            if bar is None:
                bar = tqdm(unit="hero", desc="pulling")
            bar.update(n - bar.n)
        try:
            heroes = pull_roster(settings, path, progress=progress)
        finally:
            if bar is not None:
                bar.close()
        print(f"wrote {len(heroes)} heroes to {path}", file=sys.stderr)
    else:
        heroes = load_roster(args.file)
    count = build_db(client, heroes)
    print(f"loaded {count} heroes into 'superheros' at {settings.redis_url}", file=sys.stderr)
    return 0


def _cli(settings, args) -> int:
    from .rediscli import ErrorReply, piped, run_command, terminal  # noqa: PLC0415

    if not args.words:
        raise UserError("give a command, for example: simlib cli LLEN games:players:2")
    _need_redis(settings, "simlib cli")
    reply = run_command(settings.redis_url, args.words)
    sys.stdout.buffer.write((terminal(reply).encode() if sys.stdout.isatty() else piped(reply)) + b"\n")
    return 1 if isinstance(reply, ErrorReply) else 0


def _bench(settings, args) -> int:
    from . import bench  # noqa: PLC0415

    if args.quick:
        result = bench.run_bench(bench.QUICK, warmup=min(args.warmup, 0.5), window=min(args.window, 1.0),
                                 joins=20, finished=2000, progress=lambda m: print(m, file=sys.stderr),
                                 rates=(50,), replay_records=2000)
    else:
        result = bench.run_bench(warmup=args.warmup, window=args.window,
                                 progress=lambda m: print(m, file=sys.stderr))
    print(bench.markdown(result))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _redis(settings, args) -> int:
    from .store import EmbeddedRedis  # noqa: PLC0415

    with EmbeddedRedis(port=args.port or None) as server:
        print(server.url, flush=True)
        print(f"Embedded Redis running. In another terminal:\n  export REDIS_URL={server.url}\n"
              f"  redis-cli -u {server.url} PING\nPress Ctrl-C to stop.", file=sys.stderr, flush=True)
        try:
            server.process.wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
