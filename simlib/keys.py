"""Every Redis key and channel name the kit uses, built in this one module.

The names are a teaching contract (``docs/keyspace.md``): learners type them into
``redis-cli``. On a Redis Cluster the keys of one game must share a hash slot, so
``Keyspace(cluster=True)`` wraps the game token in braces (``games:{<g>}:status``);
nothing else in the code knows the difference.
"""

from __future__ import annotations

import dataclasses
import re

__all__ = ["Keyspace", "LOBBY_CHANNEL", "GAME_CHANNEL", "WORKER_LOGGER", "EVENTS_CHANNEL", "TASKS_GROUP"]

#: Logger (and pub/sub channel) for lobby and clean-up records.
LOBBY_CHANNEL = "lib.server.lobby"
#: Logger (and pub/sub channel) for combat records.
GAME_CHANNEL = "lib.server.game"
#: Logger of the clean-up worker.
WORKER_LOGGER = "lib.pubsub.worker"
#: Internal channel on which game servers tell each other that a game started,
#: a turn passed, or a game ended (so players of one game may sit on different servers).
EVENTS_CHANNEL = "simlib:events"
#: The consumer group of the workers on the tasks stream (TASK_TRANSPORT=streams).
TASKS_GROUP = "workers"


@dataclasses.dataclass(frozen=True)
class Keyspace:
    """Builds key names; ``cluster=True`` gives the hash-tagged variant."""

    cluster: bool = False

    # -- global keys --------------------------------------------------------
    superheros: str = "superheros"
    users: str = "users"
    participants: str = "games:participants"
    #: Sorted set: game token -> its deadline (ms on the Redis server's clock), for every
    #: game that has one (a lobby filling, a game in progress): how any live process
    #: finds the deadlines that are due, even those of a game whose server died.
    deadlines: str = "games:deadlines"
    #: Set of every user token (the ``users`` hash maps names to tokens; this answers
    #: "is this a token?" in O(1)). Hash-tagged into the slot of ``users``.
    user_tokens: str = "{users}:tokens"
    #: Hash: user name -> id of the server whose live v2 session holds the name.
    sessions: str = "{users}:sessions"
    events_channel: str = EVENTS_CHANNEL
    #: String: the run id of the deployment that uses this Redis, when RUN_ID is not set
    #: (the first part to start makes it).
    run: str = "simlib:run"
    #: Stream of clean-up tasks (TASK_TRANSPORT=streams): one entry per member of a
    #: finished game, handed by the consumer group ``workers`` to one worker each.
    tasks: str = "simlib:tasks"
    #: Stream: one entry per finished game, written as its keys are expired (members,
    #: heroes, status, winner, log), capped at ARCHIVE_MAXLEN entries.
    archive: str = "archive:games"

    def game_count(self, run: str) -> str:
        """Counter: the games run ``run`` opened (a seeded run draws from each game's place)."""
        return f"simlib:games:{run}"

    def seq(self, run: str) -> str:
        """Counter: the last ``seq`` given to a record of run ``run`` (records are numbered
        1, 2, 3... across every part of the run, with no gap and no repeat)."""
        return f"simlib:seq:{run}"

    def server_lease(self, server: str) -> str:
        """A game server's lease, a key it keeps alive while it runs: while it exists, the
        v2 sessions that server holds keep their names."""
        return f"{{users}}:server:{server}"

    def superheros_loading(self, nonce: str) -> str:
        """Temporary hash a new roster is written to before RENAME over ``superheros``;
        the ``{superheros}`` hash tag keeps it in the same slot on a cluster."""
        return f"{{{self.superheros}}}:loading:{nonce}"

    def players(self, n: int | str) -> str:
        """List of every game token opened for ``n`` players, oldest first."""
        return f"games:players:{n}"

    def players_open(self, n: int | str) -> str:
        """Cluster mode only: the open lobby for ``n`` players and its seats, hash-tagged
        into the slot of ``games:players:<n>`` so one script can update both."""
        return f"{{{self.players(n)}}}:open"

    # -- per-game keys ------------------------------------------------------
    @property
    def game_format(self) -> str:
        """``string.format`` pattern the Lua scripts use to build a game's keys."""
        return "games:{%s}" if self.cluster else "games:%s"

    def _g(self, g: str) -> str:
        return self.game_format % g

    def game(self, g: str) -> str:
        """Set of the game's member user tokens."""
        return self._g(g)

    def status(self, g: str) -> str:
        return f"{self._g(g)}:status"

    def host(self, g: str) -> str:
        return f"{self._g(g)}:host"

    def game_participants(self, g: str) -> str:
        """String: the number of players the game was opened for."""
        return f"{self._g(g)}:participants"

    def heroes_taken(self, g: str) -> str:
        """Set of hero ids already drawn in this game."""
        return f"{self._g(g)}:superheros"

    def hero(self, g: str, u: str) -> str:
        """Hash ``id``/``attack``/``health`` of user ``u``'s hero in game ``g``."""
        return f"{self._g(g)}:superheros:{u}"

    def order(self, g: str) -> str:
        return f"{self._g(g)}:order"

    def logs(self, g: str) -> str:
        return f"{self._g(g)}:logs"

    def deadline(self, g: str) -> str:
        """String: when the game's current wait ends (ms on the Redis server's clock): the
        lobby's time-out while it fills, the turn's while it is played."""
        return f"{self._g(g)}:deadline"

    def game_keys(self, g: str, members: list[str] | tuple[str, ...] = ()) -> list[str]:
        """Every key a finished game keeps (the clean-up and reset helpers use this; a
        finished game has no deadline key: its end deleted it)."""
        keys = [
            self.game(g),
            self.status(g),
            self.host(g),
            self.game_participants(g),
            self.heroes_taken(g),
            self.order(g),
            self.logs(g),
        ]
        keys.extend(self.hero(g, u) for u in members)
        return keys

    def lua(self) -> str:
        """The Lua table ``K`` the server's scripts build key names with: one function per
        name above, made from these methods, so every name is spelled here only."""
        g, u, n, srv = "\x00g\x00", "\x00u\x00", "\x00n\x00", "\x00s\x00"
        builders = {
            "game": ("g", self.game(g)), "status": ("g", self.status(g)), "host": ("g", self.host(g)),
            "game_participants": ("g", self.game_participants(g)), "heroes_taken": ("g", self.heroes_taken(g)),
            "hero": ("g, u", self.hero(g, u)), "order": ("g", self.order(g)), "logs": ("g", self.logs(g)),
            "deadline": ("g", self.deadline(g)), "players": ("n", self.players(n)),
            "players_open": ("n", self.players_open(n)), "server_lease": ("s", self.server_lease(srv)),
        }
        def expr(text: str) -> str:
            parts = [p for p in re.split("(\x00[guns]\x00)", text) if p]
            return " .. ".join(p[1] if p.startswith("\x00") else _lua_string(p) for p in parts)

        lines = ["local K = {}"]
        for name, (params, text) in builders.items():
            lines.append(f"function K.{name}({params}) return {expr(text)} end")
        every = ", ".join(expr(key) for key in self.game_keys(g))
        lines.append(f"function K.game_keys(g) return {{{every}}} end")
        return "\n".join(lines) + "\n"

    @property
    def game_pattern(self) -> str:
        """A SCAN pattern matching every per-game and per-count key."""
        return "games:*"


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
