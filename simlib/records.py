"""The log records of a game's changes: who joined, each attack or forfeit, each end.

On a single Redis the Lua script that makes a change publishes its record itself, in
the same atomic step, byte for byte as the pub/sub log transport would (``lua/_prelude.lua``
``publish_log``): :attr:`Records.combat_channel` and :attr:`Records.lobby_channel` say
where, '' for "not from the script". Here the same records go to the process's other
log handlers (stdout, a test's), marked ``published`` so the pub/sub handler does not
send them twice; when nobody else wants them, they are not even built.
"""

from __future__ import annotations

import functools
import json
import logging

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

    @functools.cached_property
    def combat_channel(self) -> str:
        """Where scripts publish combat records ('' = they do not)."""
        if self.settings.logger_module == "redis" and game_log.isEnabledFor(logging.INFO):
            return GAME_CHANNEL
        return ""

    @functools.cached_property
    def lobby_channel(self) -> str:
        """Where scripts publish joins, ends and clean-up tasks ('' = they do not).

        Not on a cluster: there a script publishes on its game's node, and the message
        crosses the cluster bus to the worker's node, where it can arrive after the
        worker's drain marker. The log transport publishes on the worker's node, in order."""
        if (self.settings.logger_module == "redis" and lobby_log.isEnabledFor(logging.INFO)
                and not self.settings.redis_cluster):
            return LOBBY_CHANNEL
        return ""

    @property
    def wanted(self) -> bool:
        """Whether a record a script published is still wanted in this process: some other
        handler (stdout, a test's) takes INFO, or the script did not publish it."""
        return any(h.level <= logging.INFO and not isinstance(h, RedisPubSubHandler)
                   for h in logging.getLogger(ROOT).handlers) or not self.lobby_channel

    def _lobby(self, text: str, *args, task: dict) -> None:
        lobby_log.info(text, *args, extra={"published": bool(self.lobby_channel)}, task=task)

    def user_created(self, name: str, token: str) -> None:
        lobby_log.info("User Created: %s", name, task={"user": name, "user_token": token})

    def joined(self, game: str, user: str, hero: int, joined: int, n: int) -> None:
        if self.wanted:
            self._lobby("Player Joined Game: %s", game, task={
                "game_token": game, "user_token": user, "hero_id": hero, "joined": joined, "participants": n})

    def left(self, game: str, user: str) -> None:
        if self.wanted:
            self._lobby("Player Left Game: %s", game, task={"game_token": game, "user_token": user})

    def combat(self, record: str) -> None:
        """An attack or forfeit record, as the script wrote it to the game's log."""
        if self.wanted:
            text = "Player Forfeited: %s" if '"ACTION": "FORFEIT"' in record else "Attack Completed: %s"
            game_log.info(text, record, extra={"published": bool(self.combat_channel)})

    def events(self, events) -> None:
        """The end of each game among these events (as the scripts published them): its
        record and one clean-up task per member, for the worker."""
        if not self.wanted:
            return
        for text in events:
            if '"complete"' not in text and '"timeout"' not in text:
                continue
            event = json.loads(text)
            if event.get("t") == "complete":
                self.game_over(event["g"], STATUS.COMPLETED, event["u"], event["m"])
            elif event.get("t") == "timeout":
                self.game_over(event["g"], STATUS.TIMED_OUT, None, event["m"])

    def game_over(self, game: str, status: str, winner: str | None, members: list[str]) -> None:
        members = sorted(members)
        self._lobby("Game Finished: %s", status,
                    task={"game_token": game, "status": status, "winner": winner, "members": members})
        for user in members:  # on WORKER_CHANNEL, where the pub/sub worker listens
            lobby_log.info("Cleaning Game Records", extra={"published": bool(self.lobby_channel),
                                                           "channel": self.settings.worker_channel},
                           task={"game_token": game, "user_token": user})
