"""Bot players. They speak protocol v1 to any server (or a load balancer in front).

* :class:`V1Bot` plays exactly as the original bots did: login, find and the hero and
  action requests each on a connection of their own, opened per step.
* :class:`FastBot` speaks the same v1 frames but keeps its connections open for its
  whole life, and skips the hero look-up when it has a single opponent, so a turn
  costs one action round trip (plus one hero round trip in larger games).
* :class:`SessionBot` speaks the v2 session protocol: one connection for its whole
  life; turn notices name the living enemies, so a turn is one round trip.

Every random choice (participant counts, targets) comes from the bot's own
``random.Random``, seeded from ``seed`` and the bot's index, so a seeded bot makes
the same choices run after run. Names carry a run id, so bots never share a user.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from . import aio
from . import protocol as P
from .config import TWO_SHARE

__all__ = ["Bot", "V1Bot", "FastBot", "SessionBot", "Recorder", "Pacer", "participant_deck", "BotError", "play_all",
           "make_bots", "STOP_GRACE", "wait_for_settings"]


class BotError(RuntimeError):
    """The server answered something a v1 client cannot go on from."""


def participant_deck(games: int, rng: random.Random, two_share: float = TWO_SHARE) -> list[int]:
    """Participant counts for ``games`` games: ``round(games * two_share)`` twos, the
    rest threes, in random order. A deck (rather than a coin per game) keeps a run's
    mix predictable, so a 10-bot, 5-game run always opens enough 2-player games for
    the article's walkthrough (``LRANGE games:players:2 12 12``)."""
    twos = round(games * two_share)
    deck = [2] * twos + [3] * (games - twos)
    rng.shuffle(deck)
    return deck


@dataclass
class Recorder:
    """Collects what bots saw, thread-safely: one row per bot-game, one per attack.

    ``keep``: hold at most that many of the newest rows, attacks and turns (an endless run
    would otherwise grow without end); the totals in :attr:`counts` stay exact."""

    games: list[dict] = field(default_factory=list)
    attacks: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    on_game: Callable[[dict], None] | None = None
    #: monotonic time of each attack reply, for rates over a window
    attack_times: list[float] = field(default_factory=list)
    #: (game, monotonic time) of each turn notice: with ``attack_times``, what
    #: :meth:`turn_latencies` is derived from
    turns: list[tuple[str, float]] = field(default_factory=list)
    keep: int | None = None
    #: exact totals: player_games, games, size:<n>, completed, timed_out, dropped, attacks, errors
    counts: collections.Counter = field(default_factory=collections.Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: recent games -> whether a player saw it end (a game's rows come close together)
    _recent: collections.OrderedDict = field(default_factory=collections.OrderedDict, repr=False)

    def __post_init__(self) -> None:
        if self.keep is not None:
            for name in ("games", "attacks", "attack_times", "turns"):
                setattr(self, name, collections.deque(getattr(self, name), maxlen=self.keep))
            self.errors = collections.deque(self.errors, maxlen=1000)

    def _count(self, row: dict) -> None:
        c = self.counts
        c["player_games"] += 1
        c["dropped"] += row["outcome"] == "DROPPED"
        ended = row["outcome"] in (P.COMPLETE, P.TIMED_OUT)
        seen = self._recent.get(row["game"])
        if seen is None:
            c["games"] += 1
            c[f"size:{row['participants']}"] += 1
            self._recent[row["game"]] = False
            if len(self._recent) > 200_000:
                self._recent.popitem(last=False)
        if ended and not seen:
            c["completed" if row["outcome"] == P.COMPLETE else "timed_out"] += 1
            self._recent[row["game"]] = True

    def game(self, row: dict) -> None:
        with self._lock:
            self.games.append(row)
            self._count(row)
        if self.on_game is not None:
            self.on_game(row)

    def attack(self, record: dict) -> None:
        now = time.monotonic()
        with self._lock:
            self.attacks.append(record)
            self.attack_times.append(now)
            self.counts["attacks"] += 1

    def turn(self, game: str) -> None:
        """A turn notice arrived (its latency is derived later, from the event times)."""
        now = time.monotonic()
        with self._lock:
            self.turns.append((game, now))

    def turn_latencies(self, start: float = float("-inf"), end: float = float("inf")) -> list[float]:
        """Seconds from each action's reply to the next turn notice in that game, for the
        notices that arrived between ``start`` and ``end`` (monotonic time). The events
        are put in time order across bots, and across processes after :meth:`merge`
        (monotonic time is one clock for a whole machine): a game's players may sit in
        different processes, each of which saw only half of a turn."""
        with self._lock:
            events = sorted([(t, 0, a["PAYLOAD"]["GAME_TOKEN"]) for a, t in zip(self.attacks, self.attack_times)]
                            + [(t, 1, game) for game, t in self.turns])
        acted: dict[str, float] = {}
        latencies = []
        for t, is_turn, game in events:
            if not is_turn:
                acted[game] = t
            elif game in acted:
                latency = t - acted.pop(game)
                if start <= t <= end:
                    latencies.append(latency)
        return latencies

    def error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)
            self.counts["errors"] += 1

    _SHARED = ("games", "attacks", "errors", "attack_times", "turns")

    def dump(self, path: str | Path) -> None:
        """Write the records as JSON, for the process that launched these bots to :meth:`merge`."""
        with self._lock:
            data = {k: list(getattr(self, k)) for k in self._SHARED}
            data["counts"] = dict(self.counts)
            Path(path).write_text(json.dumps(data))

    def merge(self, paths: Iterable[str | Path]) -> None:
        """Add the records (and the totals) other processes dumped. (A game whose players
        sat in two processes is counted once per process in ``counts["games"]``; the rows
        tell the exact number.)"""
        with self._lock:
            for path in paths:
                data = json.loads(Path(path).read_text())
                for k in self._SHARED:
                    getattr(self, k).extend(data[k])
                self.counts.update(data.get("counts", {}))


class Pacer:
    """Holds the bots of one process to ``rate`` attacks per second: each attack takes the
    next slot of an evenly spaced schedule, so the stream is steady, with no burst (at
    most half a second of slots is saved up through a lull)."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate
        self._next: float | None = None

    async def wait(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._next is None or self._next < now - 0.5:
            self._next = now
        slot, self._next = self._next, self._next + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


#: Retried with back-off: what a network, a server going away or a refusal can cause.
FAILURES = (OSError, WebSocketException, ConnectionClosed, BotError, TimeoutError)
#: Seconds a stopped bot may go on with its current game before it leaves anyway.
STOP_GRACE = 5.0


class Bot:
    """Common game loop; subclasses decide how connections are used.

    Nothing a bot waits for is unbounded: a reply within ``wait`` seconds, a frame of its
    game within ``wait`` seconds. A bot that meets a failure (a server gone, Redis away,
    a refusal, silence) counts an error, records the game it was in as ``ERROR``, and
    goes on after a back-off, on the next of its ``urls`` when its server is gone. After
    ``max_failures`` failures in a row it gives up (so a run always ends). With
    ``drop_rate`` P it walks away from a game with probability P (seeded), in the lobby
    or on one of its turns, and records that game as ``DROPPED``.
    """

    style = "base"

    def __init__(self, urls: list[str] | str, name: str, games: int = 10, *, seed: int | str | None = None,
                 index: int = 0, recorder: Recorder | None = None, two_share: float = TWO_SHARE,
                 open_timeout: float = 10.0, wait: float = 60.0, drop_rate: float = 0.0, max_failures: int = 8,
                 deck: list[int] | None = None, pacer: Pacer | None = None):
        self.urls = [u.rstrip("/") for u in ([urls] if isinstance(urls, str) else urls)]
        self.url = self.urls[0]
        self.name = name
        self.games = games
        self.rng = random.Random(f"{seed}:{index}" if seed is not None else None)
        self.pacer = pacer  # shared by the bots of a paced run (--rate)
        self.deck = deck if deck is not None else participant_deck(games, self.rng, two_share) if games > 0 else None
        self.two_share = two_share
        self.recorder = recorder or Recorder()
        self.open_timeout = open_timeout
        self.wait = wait
        self.drop_rate = drop_rate
        # drops and back-off jitter draw from their own streams: the seeded choices of a
        # run (participants, targets) stay the same whatever the faults
        self._drops = random.Random(f"{seed}:{index}:drop" if seed is not None else None)
        self._jitter = random.Random()
        self.max_failures = max_failures
        self.token: str | None = None
        self._stopping = False
        self._row: dict | None = None  # the game being played
        self._drop_at: int | None = None  # walk away at this many turns (0: in the lobby)
        self._stack = contextlib.AsyncExitStack()
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def stop(self, grace: float | None = None) -> None:
        """Finish the current game, then leave; with ``grace``, leave after that many
        seconds even mid-game. Safe from any thread."""
        self._stopping = True
        if grace is not None and self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._cancel_after, grace)

    def _cancel_after(self, grace: float) -> None:
        if self._task is not None and not self._task.done():
            self._loop.call_later(grace, self._task.cancel)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def run(self) -> None:
        aio.run(self.play())

    async def play(self) -> None:
        self._task, self._loop = asyncio.current_task(), asyncio.get_running_loop()
        played = failures = 0
        try:
            await self._open()
            while not self._stopping and (self.games < 0 or played < self.games):
                n = self.deck[played] if self.deck else (2 if self.rng.random() < self.two_share else 3)
                self._drop_at = self._drop_point()
                try:
                    await self._one_game(n)
                    failures = 0
                except FAILURES as exc:
                    if self._stopping:
                        return
                    failures += 1
                    self.recorder.error(f"{self.name}: {type(exc).__name__}: {exc}")
                    if self._row is not None:  # it was in a game: that game ends here for it
                        self._finish("ERROR")
                    if failures >= self.max_failures:
                        raise BotError(f"{self.name} gave up after {failures} failures in a row: {exc}") from exc
                    await self._recover(exc, failures)
                    continue
                played += 1
        finally:
            await self._close()

    def _drop_point(self) -> int | None:
        """Where this game is walked away from: None (played to the end), 0 (in the lobby,
        before START), or k (on the k-th turn, without acting)."""
        if self.drop_rate <= 0 or self._drops.random() >= self.drop_rate:
            return None
        return self._drops.choice([0, 1, 1, 2, 3])

    async def _recover(self, exc: BaseException, failures: int) -> None:
        """Back off, drop what may be broken, and move to the next server when this one is gone."""
        await self._close()
        self._stack = contextlib.AsyncExitStack()
        if not isinstance(exc, BotError):  # the connection failed: maybe the server is gone
            self.urls.append(self.urls.pop(0))
            self.url = self.urls[0]
        await asyncio.sleep(min(0.1 * 2 ** (failures - 1), 2.0) * (0.5 + self._jitter.random()))
        await self._open()

    # connection policy (overridden) ------------------------------------------------
    async def _open(self) -> None:
        """Open what the bot keeps for its whole life (into ``self._stack``)."""

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            await self._stack.aclose()

    def _logged_in(self, reply: dict) -> str:
        """The token a login reply carries (kept as ``self.token``), or BotError."""
        token = P.login_token(reply)
        if not token:
            raise BotError(f"{self.name}: login refused: {reply.get('STATUS')}")
        self.token = token
        return token

    def _connect(self, route: str):
        # proxy=None: bots talk to the URL they were given, directly. (websockets would
        # otherwise read the proxy settings from the environment on every connection: a
        # tenth of a v1 bot's CPU, which opens a connection per step.)
        return connect(self.url + route, max_size=P.MAX_FRAME, compression=None,
                       open_timeout=self.open_timeout, close_timeout=2, ping_interval=None, proxy=None)

    async def _recv(self, ws: ClientConnection) -> dict:
        """The next frame, within ``wait`` seconds (else BotError)."""
        try:
            async with asyncio.timeout(self.wait):
                return json.loads(await ws.recv())
        except TimeoutError:
            raise BotError(f"{self.name}: no word from the server for {self.wait:g} s") from None

    async def _request(self, ws: ClientConnection, frame: dict) -> dict:
        await ws.send(P.dumps(frame))
        return await self._recv(ws)

    async def _login(self) -> str:
        raise NotImplementedError

    async def _find(self, n: int) -> dict:
        raise NotImplementedError

    async def _heroes(self, game: str, users: list[str]) -> dict[str, dict]:
        raise NotImplementedError

    async def _attack(self, game: str, enemy: str | None) -> dict:
        raise NotImplementedError

    # one game ------------------------------------------------------------------------
    def _game_row(self, n: int, reply: dict) -> dict:
        """The row this bot keeps of the game a find reply put it in (BotError if refused)."""
        game = reply.get("PAYLOAD", {}).get("GAME_TOKEN")
        if not game:
            if reply.get("ERROR", {}).get("CODE") == "UNKNOWN_USER_TOKEN":
                self.token = None  # Redis lost the user (it restarted empty): log in again
            raise BotError(f"{self.name}: find was refused: {reply.get('STATUS')}")
        self._row = {"game": game, "user": self.token, "name": self.name, "participants": n, "bot": self.style,
                     "hero_id": reply["PAYLOAD"].get("HERO_ID"), "outcome": None, "members": [],
                     "attacks": 0, "damage": 0, "joined_at": time.time(), "ended_at": None, "errors": 0,
                     "drop_at": self._drop_at}
        return self._row

    def _finish(self, outcome: str) -> None:
        """The current game is over for this bot: record its row."""
        row, self._row = self._row, None
        if row is not None:
            row["outcome"] = row["outcome"] or outcome
            row["ended_at"] = time.time()
            self.recorder.game(row)

    def _action_reply(self, row: dict, record: dict) -> str | None:
        """Count an action reply: an attack record, a "no enemy left", or a refusal;
        returns the refusal's code (None when the action was taken)."""
        status = record.get("STATUS")
        action = status.get("ACTION") if isinstance(status, dict) else None
        if action == "ATTACK":
            self.recorder.attack(record)
            row["attacks"] += 1
            row["damage"] += int(status["DETAILS"]["ENEMY_DAMAGE"])
            return None
        if action == "NA":
            return None
        code = record.get("ERROR", {}).get("CODE") if isinstance(record.get("ERROR"), dict) else None
        if code != "ENEMY_DEAD":  # an enemy that forfeited meanwhile: the bot just picks again
            row["errors"] += 1
            self.recorder.error(f"{self.name}: action refused: {record}")
        return code or "REFUSED"

    async def _one_game(self, n: int) -> None:
        await self._login()
        row = self._game_row(n, await self._find(n))
        game = row["game"]
        if self._drop_at == 0:  # walks away before even opening the lobby
            self._finish("DROPPED")
            return
        async with self._connect(P.LOBBY) as lobby:
            await lobby.send(P.dumps(P.lobby_request(game, row["user"])))
            await self._follow(lobby, row, lambda notice: self._take_turn(game, row))

    async def _follow(self, frames: ClientConnection, row: dict, on_turn) -> None:
        """Play one game from the frames the server pushes (a v1 lobby, or a v2 session,
        which also carries the action replies) until it ends, the bot walks away, or the
        connection closes."""
        turns = 0
        while True:
            try:
                frame = await self._recv(frames)
            except ConnectionClosed as exc:
                raise BotError(f"{self.name}: the server closed the connection mid-game ({exc})") from None
            status = frame.get("STATUS")
            what = status.get("GAME") if isinstance(status, dict) else status
            if what == "START":
                row["members"] = frame["PAYLOAD"]["PARTICIPANTS"]
                row["heroes"] = frame["PAYLOAD"]["PARTICIPANTS_HEROS"]
            elif what == P.YOUR_TURN:
                turns += 1
                if self._drop_at == turns:  # walks away on this turn, without acting
                    self._finish("DROPPED")
                    return
                self.recorder.turn(row["game"])
                await on_turn(frame)
            elif isinstance(status, dict) and "ACTION" in status:
                await self._on_reply(row, frame)
            elif what in (P.COMPLETE, P.TIMED_OUT):
                row["outcome"] = what
                self._finish(what)
                return
            elif what == P.GAME_LOST:
                self._finish(what)
                raise BotError(f"{self.name}: game {row['game']} was lost with Redis")
            elif not await self._on_other(row, frame):
                row["errors"] += 1
                self.recorder.error(f"{self.name}: the server said {frame}")

    async def _on_reply(self, row: dict, frame: dict) -> None:
        """An action reply among the pushed frames (v2)."""
        self._action_reply(row, frame)

    async def _on_other(self, row: dict, frame: dict) -> bool:
        """Any other frame among the pushed ones; True when it was expected."""
        return False

    async def _alive_enemies(self, game: str, others: list[str]) -> list[str]:
        """The v1 way: ask for every other participant's hero, keep the living."""
        heroes = await self._heroes(game, others)
        return [u for u in others if int(heroes.get(u, {}).get("health", 0)) > 0]

    async def _take_turn(self, game: str, row: dict) -> None:
        others = [u for u in row["members"] if u != self.token]
        for _attempt in range(3):  # an enemy may forfeit between the look-up and the attack
            alive = await self._alive_enemies(game, others)
            enemy = self.rng.choice(alive) if alive else None
            if self.pacer is not None:
                await self.pacer.wait()
            if self._action_reply(row, await self._attack(game, enemy)) != "ENEMY_DEAD":
                return
            others = [u for u in others if u != enemy]


class V1Bot(Bot):
    """The original bots' connection pattern: a new connection for every step."""

    style = "v1"

    async def _login(self) -> str:
        async with self._connect(P.LOGIN) as ws:
            reply = await self._request(ws, P.login_request(self.name))
            if P.is_user_created(reply):
                reply = await self._recv(ws)
        return self._logged_in(reply)

    async def _find(self, n: int) -> dict:
        async with self._connect(P.FIND) as ws:
            return await self._request(ws, P.find_request(self.token, n))

    async def _heroes(self, game: str, users: list[str]) -> dict[str, dict]:
        heroes = {}
        async with self._connect(P.HERO) as ws:
            for u in users:
                reply = await self._request(ws, P.hero_request(game, u))
                heroes[u] = reply.get("PAYLOAD", {}).get("HERO", {})
        return heroes

    async def _attack(self, game: str, enemy: str | None) -> dict:
        async with self._connect(P.ACTION) as ws:
            return await self._request(ws, P.action_request(game, self.token, enemy))


class FastBot(V1Bot):
    """v1 frames over connections kept open for the bot's whole life (each opened when
    first needed, so none idles before its first request)."""

    style = "fast"

    async def _open(self) -> None:
        self._ws: dict[str, ClientConnection] = {}

    async def _route(self, route: str) -> ClientConnection:
        ws = self._ws.get(route)
        if ws is None:
            ws = self._ws[route] = await self._stack.enter_async_context(self._connect(route))
        return ws

    async def _login(self) -> str:
        return self.token or await super()._login()

    async def _alive_enemies(self, game: str, others: list[str]) -> list[str]:
        # Facing one opponent, a turn notice means it still lives (else the game would be
        # over): no need to ask. Facing several, ask which are alive.
        if len(others) == 1:
            return others
        return await super()._alive_enemies(game, others)

    async def _find(self, n: int) -> dict:
        return await self._request(await self._route(P.FIND), P.find_request(self.token, n))

    async def _heroes(self, game: str, users: list[str]) -> dict[str, dict]:
        ws = await self._route(P.HERO)
        for u in users:  # pipelined: all requests, then all replies
            await ws.send(P.dumps(P.hero_request(game, u)))
        heroes = {}
        for u in users:
            heroes[u] = (await self._recv(ws)).get("PAYLOAD", {}).get("HERO", {})
        return heroes

    async def _attack(self, game: str, enemy: str | None) -> dict:
        return await self._request(await self._route(P.ACTION), P.action_request(game, self.token, enemy))


class SessionBot(Bot):
    """Speaks the v2 session protocol: one connection for the bot's whole life, on which
    it logs in once, finds games, hears its turns and attacks. A turn notice names the
    living members, so a turn costs exactly one round trip: the attack."""

    style = "v2"

    async def _open(self) -> None:
        self._ws = None  # opened (and logged in) when first needed

    async def _session(self) -> ClientConnection:
        if self._ws is None:
            ws = await self._stack.enter_async_context(self._connect(P.SESSION))
            for attempt in range(20):
                reply = await self._request(ws, P.v2_login(self.name))
                # this bot's own session of a moment ago may still hold the name (a drop)
                if reply.get("ERROR", {}).get("CODE") != "USER_IN_USE" or attempt == 19:
                    break
                await asyncio.sleep(0.05 * (attempt + 1))
            self._logged_in(reply)
            self._ws = ws
        return self._ws

    async def _one_game(self, n: int) -> None:
        ws = await self._session()
        row = self._game_row(n, await self._request(ws, P.v2_find(n)))
        self._targets: list[str] = []
        self._aimed: str | None = None
        if self._drop_at == 0:
            await self._walk_away()
            return

        async def attack(notice: dict) -> None:  # the reply comes back among the pushed frames
            self._targets = [u for u in notice["PAYLOAD"].get("ORDER", []) if u != self.token]
            await self._aim(ws)

        await self._follow(ws, row, attack)
        if row["outcome"] == "DROPPED":
            await self._walk_away()
        elif self._aimed is not None:  # the game ended (a forfeit) while an attack was on its way:
            self._aimed = None          # its answer comes next, whatever it says
            await self._recv(ws)

    async def _aim(self, ws: ClientConnection) -> None:
        self._aimed = self.rng.choice(self._targets) if self._targets else None
        if self.pacer is not None:
            await self.pacer.wait()
        await ws.send(P.dumps(P.v2_attack(self._aimed)))

    async def _on_reply(self, row: dict, frame: dict) -> None:
        self._aimed = None
        self._action_reply(row, frame)

    async def _on_other(self, row: dict, frame: dict) -> bool:
        """A refusal of this bot's attack comes among the pushes too: an enemy that
        forfeited meanwhile (ENEMY_DEAD) means aim again at one of the others."""
        if self._aimed is None or not isinstance(frame.get("ERROR"), dict):
            return False
        if self._action_reply(row, frame) == "ENEMY_DEAD":
            self._targets = [u for u in self._targets if u != self._aimed]
            await self._aim(self._ws)
        else:
            self._aimed = None
        return True

    async def _walk_away(self) -> None:
        """Close the session mid-game (the server forfeits it, or gives its seat back)."""
        ws, self._ws = self._ws, None
        with contextlib.suppress(Exception):
            await ws.close()
        self._finish("DROPPED")


BOTS = {"v1": V1Bot, "fast": FastBot, "v2": SessionBot}


def wait_for_settings(settings) -> float:
    """The longest silence a bot accepts from its server mid-game, for servers with these
    settings: longer than a lobby filling plus a few turns each left to its deadline."""
    return 2 * (settings.lobby_timeout + 3 * (settings.server_sleep + settings.turn_timeout)) + 5


def run_id() -> str:
    return os.urandom(3).hex()


def bot_prefix(seed: int | None) -> str:
    """The name prefix of a run's bots: made up, or with a seed the seed's (so a seeded run's
    users, and their tokens, are the same run after run)."""
    return f"bot-s{seed}-" if seed is not None else f"bot-{run_id()}-"


def make_bots(urls: list[str], players: int, games: int, *, style: str = "fast", seed: int | None = None,
              prefix: str | None = None, offset: int = 0, recorder: Recorder | None = None,
              two_share: float = TWO_SHARE, wait: float = 60.0, drop_rate: float = 0.0,
              rate: float | None = None) -> list[Bot]:
    """Bots ``offset`` to ``offset + players - 1`` of a run. Bot i is named by i, seeded from
    ``seed`` and i, and plays on ``urls[i % len(urls)]``, so a run's bots are the same bots
    whether one process plays them all or several play a share each. Each bot knows every
    URL, its own first, and moves to the next when its server is gone. With a seed, every
    bot asks for the same participant counts in the same order (one deck for the run), so
    bots that play together keep meeting in the same games. ``rate``: these bots' attacks
    per second, in all (one :class:`Pacer` for them)."""
    prefix = prefix or bot_prefix(seed)
    pacer = Pacer(rate) if rate else None
    deck = participant_deck(games, random.Random(f"{seed}:deck"), two_share) if seed is not None and games > 0 else None
    return [BOTS[style](urls[i % len(urls):] + urls[:i % len(urls)], f"{prefix}{i:04d}", games, seed=seed,
                        index=i, recorder=recorder, two_share=two_share, wait=wait, drop_rate=drop_rate, deck=deck,
                        pacer=pacer)
            for i in range(offset, offset + players)]


async def play_all(bots: list[Bot]) -> list[BaseException]:
    """Play every bot to the end in this event loop; return the failures (not raised): the
    bots that gave up. A bot stopped with a grace period and cancelled is no failure."""
    async def guarded(bot: Bot):
        try:
            await bot.play()
        except asyncio.CancelledError:
            if not bot.stopping:
                raise
        except (*FAILURES, asyncio.TimeoutError) as exc:
            if bot.stopping:  # told to stop, and its server went away first: not a failure
                return None
            bot.recorder.error(f"{bot.name}: {type(exc).__name__}: {exc}")
            return exc
        return None

    tasks = [asyncio.create_task(guarded(b), name=b.name) for b in bots]
    results = await asyncio.gather(*tasks)
    return [r for r in results if r is not None]
