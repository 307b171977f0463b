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

__all__ = ["Bot", "V1Bot", "FastBot", "SessionBot", "Recorder", "participant_deck", "BotError", "play_all", "make_bots"]


class BotError(RuntimeError):
    """The server answered something a v1 client cannot go on from."""


def participant_deck(games: int, rng: random.Random, two_share: float = 0.6) -> list[int]:
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
    """Collects what bots saw, thread-safely: one row per bot-game, one per attack."""

    games: list[dict] = field(default_factory=list)
    attacks: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    on_game: Callable[[dict], None] | None = None
    #: monotonic time of each attack reply, for rates over a window
    attack_times: list[float] = field(default_factory=list)
    #: (game, monotonic time) of each turn notice: with ``attack_times``, what
    #: :meth:`turn_latencies` is derived from
    turns: list[tuple[str, float]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def game(self, row: dict) -> None:
        with self._lock:
            self.games.append(row)
        if self.on_game is not None:
            self.on_game(row)

    def attack(self, record: dict) -> None:
        now = time.monotonic()
        with self._lock:
            self.attacks.append(record)
            self.attack_times.append(now)

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

    _SHARED = ("games", "attacks", "errors", "attack_times", "turns")

    def dump(self, path: str | Path) -> None:
        """Write the records as JSON, for the process that launched these bots to :meth:`merge`."""
        with self._lock:
            Path(path).write_text(json.dumps({k: getattr(self, k) for k in self._SHARED}))

    def merge(self, paths: Iterable[str | Path]) -> None:
        """Add the records other processes dumped."""
        with self._lock:
            for path in paths:
                data = json.loads(Path(path).read_text())
                for k in self._SHARED:
                    getattr(self, k).extend(data[k])


async def _request(ws: ClientConnection, frame: dict) -> dict:
    await ws.send(P.dumps(frame))
    return json.loads(await ws.recv())


class Bot:
    """Common game loop; subclasses decide how connections are used."""

    style = "base"

    def __init__(self, url: str, name: str, games: int = 10, *, seed: int | str | None = None,
                 index: int = 0, recorder: Recorder | None = None, two_share: float = 0.6,
                 open_timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.name = name
        self.games = games
        self.rng = random.Random(f"{seed}:{index}" if seed is not None else None)
        self.deck = participant_deck(games, self.rng, two_share) if games > 0 else None
        self.two_share = two_share
        self.recorder = recorder or Recorder()
        self.open_timeout = open_timeout
        self.token: str | None = None
        self._stopping = False

    def stop(self) -> None:
        """Finish the current game, then leave."""
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    def run(self) -> None:
        aio.run(self.play())

    async def play(self) -> None:
        played = 0
        try:
            await self._open()
            while not self._stopping and (self.games < 0 or played < self.games):
                n = self.deck[played] if self.deck else (2 if self.rng.random() < self.two_share else 3)
                await self._one_game(n)
                played += 1
        finally:
            await self._close()

    # connection policy (overridden) ------------------------------------------------
    async def _open(self) -> None:
        """Open what the bot keeps for its whole life (into ``self._stack``)."""
        self._stack = contextlib.AsyncExitStack()

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            await self._stack.aclose()

    def _logged_in(self, reply: dict) -> str:
        """The token a login reply carries (kept as ``self.token``), or BotError."""
        token = reply.get("PAYLOAD", {}).get("USER_TOKEN")
        if not token:
            raise BotError(f"{self.name}: login refused: {reply.get('STATUS')}")
        self.token = token
        return token

    def _connect(self, route: str):
        # proxy=None: bots talk to the URL they were given, directly. (websockets would
        # otherwise read the proxy settings from the environment on every connection: a
        # tenth of a v1 bot's CPU, which opens a connection per step.)
        return connect(self.url + route, max_size=P.MAX_FRAME, compression=None,
                       open_timeout=self.open_timeout, ping_interval=None, proxy=None)

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
            raise BotError(f"{self.name}: find was refused: {reply.get('STATUS')}")
        return {"game": game, "user": self.token, "name": self.name, "participants": n, "bot": self.style,
                "hero_id": reply["PAYLOAD"].get("HERO_ID"), "outcome": None, "members": [],
                "attacks": 0, "damage": 0, "joined_at": time.time(), "ended_at": None, "errors": 0}

    def _action_reply(self, row: dict, record: dict) -> None:
        """Count an action reply: an attack record, a "no enemy left", or a refusal."""
        status = record.get("STATUS")
        action = status.get("ACTION") if isinstance(status, dict) else None
        if action == "ATTACK":
            self.recorder.attack(record)
            row["attacks"] += 1
            row["damage"] += int(status["DETAILS"]["ENEMY_DAMAGE"])
        elif action != "NA":
            row["errors"] += 1
            self.recorder.error(f"{self.name}: action refused: {record}")

    async def _one_game(self, n: int) -> None:
        await self._login()
        row = self._game_row(n, await self._find(n))
        game = row["game"]
        token = row["user"]
        async with self._connect(P.LOBBY) as lobby:
            await lobby.send(P.dumps({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": token}}))
            await self._follow(lobby, row, lambda notice: self._take_turn(game, row))
        row["ended_at"] = time.time()
        self.recorder.game(row)

    async def _follow(self, frames, row: dict, on_turn) -> None:
        """Play one game from the frames the server pushes (a v1 lobby, or a v2 session,
        which also carries the action replies) until it ends or the connection closes."""
        async for text in frames:
            frame = json.loads(text)
            status = frame.get("STATUS")
            what = status.get("GAME") if isinstance(status, dict) else status
            if what == "START":
                row["members"] = frame["PAYLOAD"]["PARTICIPANTS"]
                row["heroes"] = frame["PAYLOAD"]["PARTICIPANTS_HEROS"]
            elif what == P.YOUR_TURN:
                self.recorder.turn(row["game"])
                await on_turn(frame)
            elif isinstance(status, dict) and "ACTION" in status:
                self._action_reply(row, frame)
            elif what in (P.COMPLETE, P.TIMED_OUT):
                row["outcome"] = what
                return
            else:
                row["errors"] += 1
                self.recorder.error(f"{self.name}: the server said {frame}")

    async def _alive_enemies(self, game: str, others: list[str]) -> list[str]:
        """The v1 way: ask for every other participant's hero, keep the living."""
        heroes = await self._heroes(game, others)
        return [u for u in others if int(heroes.get(u, {}).get("health", 0)) > 0]

    async def _take_turn(self, game: str, row: dict) -> None:
        others = [u for u in row["members"] if u != self.token]
        alive = await self._alive_enemies(game, others)
        enemy = self.rng.choice(alive) if alive else None
        self._action_reply(row, await self._attack(game, enemy))


class V1Bot(Bot):
    """The original bots' connection pattern: a new connection for every step."""

    style = "v1"

    async def _login(self) -> str:
        async with self._connect(P.LOGIN) as ws:
            reply = await _request(ws, {"PAYLOAD": {"USER": self.name}})
            if reply.get("STATUS") == "USER CREATED":
                reply = json.loads(await ws.recv())
        return self._logged_in(reply)

    async def _find(self, n: int) -> dict:
        async with self._connect(P.FIND) as ws:
            return await _request(ws, {"PAYLOAD": {"USER_TOKEN": self.token, "PARTICIPANTS": n}})

    async def _heroes(self, game: str, users: list[str]) -> dict[str, dict]:
        heroes = {}
        async with self._connect(P.HERO) as ws:
            for u in users:
                reply = await _request(ws, {"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": u}})
                heroes[u] = reply.get("PAYLOAD", {}).get("HERO", {})
        return heroes

    async def _attack(self, game: str, enemy: str | None) -> dict:
        async with self._connect(P.ACTION) as ws:
            return await _request(ws, {"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": self.token,
                                                   "ENEMY_TOKEN": enemy, "ACTION": "ATTACK"}})


class FastBot(V1Bot):
    """v1 frames over connections kept open for the bot's whole life."""

    style = "fast"

    async def _open(self) -> None:
        await super()._open()
        self._ws = {}
        for route in (P.FIND, P.HERO, P.ACTION):
            self._ws[route] = await self._stack.enter_async_context(self._connect(route))

    async def _login(self) -> str:
        return self.token or await super()._login()

    async def _alive_enemies(self, game: str, others: list[str]) -> list[str]:
        # Facing one opponent, a turn notice means it still lives (else the game would be
        # over): no need to ask. Facing several, ask which are alive.
        if len(others) == 1:
            return others
        return await super()._alive_enemies(game, others)

    async def _find(self, n: int) -> dict:
        return await _request(self._ws[P.FIND], {"PAYLOAD": {"USER_TOKEN": self.token, "PARTICIPANTS": n}})

    async def _heroes(self, game: str, users: list[str]) -> dict[str, dict]:
        ws = self._ws[P.HERO]
        for u in users:  # pipelined: all requests, then all replies
            await ws.send(P.dumps({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": u}}))
        heroes = {}
        for u in users:
            heroes[u] = json.loads(await ws.recv()).get("PAYLOAD", {}).get("HERO", {})
        return heroes

    async def _attack(self, game: str, enemy: str | None) -> dict:
        return await _request(self._ws[P.ACTION], {"PAYLOAD": {
            "GAME_TOKEN": game, "USER_TOKEN": self.token, "ENEMY_TOKEN": enemy, "ACTION": "ATTACK"}})


class SessionBot(Bot):
    """Speaks the v2 session protocol: one connection for the bot's whole life, on which
    it logs in once, finds games, hears its turns and attacks. A turn notice names the
    living members, so a turn costs exactly one round trip: the attack."""

    style = "v2"

    async def _open(self) -> None:
        await super()._open()
        self._ws = await self._stack.enter_async_context(self._connect(P.SESSION))
        self._logged_in(await _request(self._ws, {"TYPE": P.LOGIN_V2, "PAYLOAD": {"USER": self.name}}))

    async def _one_game(self, n: int) -> None:
        ws = self._ws
        row = self._game_row(n, await _request(ws, {"TYPE": P.FIND_V2, "PAYLOAD": {"PARTICIPANTS": n}}))

        async def attack(notice: dict) -> None:  # the reply comes back among the pushed frames
            alive = [u for u in notice["PAYLOAD"].get("ORDER", []) if u != self.token]
            enemy = self.rng.choice(alive) if alive else None
            await ws.send(P.dumps({"TYPE": P.ATTACK_V2, "PAYLOAD": {"ENEMY_TOKEN": enemy}}))

        await self._follow(ws, row, attack)
        if row["outcome"] is None:
            raise BotError(f"{self.name}: the server closed the session mid-game")
        row["ended_at"] = time.time()
        self.recorder.game(row)


BOTS = {"v1": V1Bot, "fast": FastBot, "v2": SessionBot}


def run_id() -> str:
    return os.urandom(3).hex()


def make_bots(urls: list[str], players: int, games: int, *, style: str = "fast", seed: int | None = None,
              prefix: str | None = None, offset: int = 0, recorder: Recorder | None = None,
              two_share: float = 0.6) -> list[Bot]:
    """Bots ``offset`` to ``offset + players - 1`` of a run. Bot i is named by i, seeded from
    ``seed`` and i, and uses ``urls[i % len(urls)]``, so a run's bots are the same bots
    whether one process plays them all or several play a share each."""
    prefix = prefix or f"bot-{run_id()}-"
    return [BOTS[style](urls[i % len(urls)], f"{prefix}{i:04d}", games, seed=seed, index=i, recorder=recorder,
                        two_share=two_share) for i in range(offset, offset + players)]


async def play_all(bots: list[Bot], *, stop: asyncio.Event | None = None) -> list[BaseException]:
    """Play every bot to the end in this event loop; return the failures (not raised)."""
    async def guarded(bot: Bot):
        try:
            await bot.play()
        except (OSError, WebSocketException, ConnectionClosed, BotError, asyncio.TimeoutError) as exc:
            if bot.stopping:  # told to stop, and its server went away first: not a failure
                return None
            bot.recorder.error(f"{bot.name}: {type(exc).__name__}: {exc}")
            return exc
        return None

    tasks = [asyncio.create_task(guarded(b), name=b.name) for b in bots]
    if stop is not None:
        async def watch():
            await stop.wait()
            for b in bots:
                b.stop()
        watcher = asyncio.create_task(watch())
    try:
        results = await asyncio.gather(*tasks)
    finally:
        if stop is not None:
            watcher.cancel()
    return [r for r in results if r is not None]
