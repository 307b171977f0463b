"""The log records of a game's changes: who joined, the start, each attack or forfeit,
each end, and the clean-up tasks.

On a single Redis, in our format, the Lua script that makes a change publishes its record
itself, numbered, in the same atomic step, byte for byte as the pub/sub log transport
would (``lua/_prelude.lua`` ``publish_log``): :attr:`Records.combat_channel` and
:attr:`Records.lobby_channel` say where, '' for "not from the script". Here the same
records go to the process's other log handlers (stdout, a test's), marked ``published``
so the pub/sub handler does not send them twice; when nobody else wants them, they are
not even built. Otherwise (a Redis Cluster, where a script may not touch the record
counter's slot, or LOG_FORMAT=article) every record goes through the log transport.

With ``LOG_FORMAT=article`` the records are the original simulator's: ``Starting Match``
and ``Game Timed Out`` once per member with the frame that member got as ``task`` (a
JSON string), ``Attack Completed`` with the record as a JSON string, and ``Cleaning Game
Records`` with its task object; the joins and ends it never published are left out.
"""

from __future__ import annotations

import functools
import json
import logging

from . import protocol as P
from .config import Settings
from .game import STATUS
from .keys import GAME_CHANNEL, LOBBY_CHANNEL
from .logs import ROOT, RedisPubSubHandler, TaskAdapter

__all__ = ["Records", "lobby_log", "game_log"]

lobby_log = TaskAdapter(logging.getLogger(LOBBY_CHANNEL), {})
game_log = TaskAdapter(logging.getLogger(GAME_CHANNEL), {})


class Records:
    """Where a game's records go, for one process's settings."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.article = settings.log_format == "article"

    @property
    def _scripts_publish(self) -> bool:
        return (self.settings.logger_module == "redis" and not self.article and not self.settings.redis_cluster)

    @functools.cached_property
    def combat_channel(self) -> str:
        """Where scripts publish combat records ('' = they do not)."""
        return GAME_CHANNEL if self._scripts_publish and game_log.isEnabledFor(logging.INFO) else ""

    @functools.cached_property
    def lobby_channel(self) -> str:
        """Where scripts publish joins, starts, ends and clean-up tasks ('' = they do not)."""
        return LOBBY_CHANNEL if self._scripts_publish and lobby_log.isEnabledFor(logging.INFO) else ""

    @property
    def wanted(self) -> bool:
        """Whether a record a script published is still wanted in this process: some other
        handler (stdout, a test's) takes INFO, or the script did not publish it."""
        return any(h.level <= logging.INFO and not isinstance(h, RedisPubSubHandler)
                   for h in logging.getLogger(ROOT).handlers) or not self.lobby_channel

    def _lobby(self, text: str, *args, task, channel: str | None = None) -> None:
        extra = {"published": bool(self.lobby_channel)}
        if channel is not None:
            extra["channel"] = channel
        lobby_log.info(text, *args, extra=extra, task=task)

    def user_created(self, name: str, token: str) -> None:
        lobby_log.info("User Created: %s", name, task={"user": name, "user_token": token})

    def joined(self, game: str, user: str, hero: int, joined: int, n: int) -> None:
        if self.wanted and not self.article:
            self._lobby("Player Joined Game: %s", game, task={
                "game_token": game, "user_token": user, "hero_id": hero, "joined": joined, "participants": n})

    def left(self, game: str, user: str) -> None:
        if self.wanted and not self.article:
            self._lobby("Player Left Game: %s", game, task={"game_token": game, "user_token": user})

    def combat(self, record: str) -> None:
        """An attack or forfeit record, as the script wrote it to the game's log."""
        if self.wanted:
            text = "Player Forfeited" if '"ACTION": "FORFEIT"' in record else "Attack Completed"
            game_log.info(text, extra={"published": bool(self.combat_channel)},
                          task=record if self.article else json.loads(record))

    def events(self, events) -> None:
        """The start or the end of each game among these events (as the scripts published
        them): its record, and at an end one clean-up task per member, for the worker."""
        if not self.wanted:
            return
        for text in events:
            if '"t": "turn"' in text or '"t":"turn"' in text:
                continue
            event = json.loads(text)
            kind = event.get("t")
            if kind == "start":
                self.started(event["g"], event["m"], {u: dict(zip(("id", "attack", "health"), map(int, h)))
                                                       for u, h in event["h"].items()})
            elif kind == "complete":
                self.game_over(event["g"], STATUS.COMPLETED, event["u"], event["m"])
            elif kind == "timeout":
                self.game_over(event["g"], STATUS.TIMED_OUT, None, event["m"])

    def started(self, game: str, members: list[str], heroes: dict[str, dict]) -> None:
        members = sorted(members)
        if self.article:  # each member's lobby logged the START frame it sent
            frame = P.dumps(P.game_start(game, members, heroes))
            for _user in members:
                self._lobby("Starting Match", task=frame)
        else:
            self._lobby("Game Started: %s", game, task={"game_token": game, "members": members,
                                                        "heroes": {u: heroes[u] for u in members}})

    def game_over(self, game: str, status: str, winner: str | None, members: list[str]) -> None:
        members = sorted(members)
        if self.article:
            if status == STATUS.TIMED_OUT:  # each member's lobby logged the frame it sent
                frame = P.dumps(P.game_notice(game, P.TIMED_OUT))
                for _user in members:
                    self._lobby("Game Timed Out", task=frame)
        else:
            self._lobby("Game Finished: %s", status,
                        task={"game_token": game, "status": status, "winner": winner, "members": members})
        for user in members:  # on WORKER_CHANNEL, where the pub/sub worker listens
            self._lobby("Cleaning Game Records", task={"game_token": game, "user_token": user},
                        channel=self.settings.worker_channel)
