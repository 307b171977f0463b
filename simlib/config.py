"""Settings from the environment (and a ``.env`` file): every variable, its default and
its meaning are declared once, in :class:`Settings`.

The variable names are the original simulator's where it had one; the rest are ours.
``simlib --help`` and the README's configuration table are made from the same
declarations (:func:`variables`), and a test holds the README to them.
Two defaults differ from the original's on purpose, because the original's made the
kit crawl or left the worker deaf:

* ``SERVER_SLEEP`` is 0.05 s, not 5 s: a 5-second pause per turn turns a tutorial
  into a waiting room, while 0 hides the pacing learners want to watch.
* ``LOGGER_MODULE`` is ``redis``: the clean-up worker listens on pub/sub, so with
  stdout-only logging it would never hear of a finished game.

Settings are plain data: pass them to threads and child processes, never a live
client (each part opens its own connections).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

__all__ = ["TWO_SHARE", "Settings", "SettingsError", "Variable", "variables", "variables_markdown"]

#: Share of a bot's games it asks for as 2-player games (the rest are 3-player): a bot
#: option (``--two-share``), not a variable; its default, like theirs, is stated here only.
TWO_SHARE = 0.6


class SettingsError(ValueError):
    """A variable has a value the kit cannot use; the message names it."""


# -- how a variable's text becomes a value (each raises SettingsError naming it) --------

def _int(minimum: int | None = None) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise SettingsError(f"{name} must be at least {minimum}, got {value}")
        return value
    return parse


def _seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value >= 0:  # also refuses nan
        raise SettingsError(f"{name} must not be negative, got {value}")
    return value


def _positive_seconds(name: str, raw: str) -> float:
    value = _seconds(name, raw)
    if value == 0:
        raise SettingsError(f"{name} must be more than 0 seconds, got {raw!r}")
    return value


def _flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be 1 or 0 (true or false), got {raw!r}")


def _choice(*allowed: str, upper: bool = False) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip().upper() if upper else raw.strip().lower()
        if value not in allowed:
            words = list(allowed) if upper else [f"'{a}'" for a in allowed]
            raise SettingsError(f"{name} must be {', '.join(words[:-1])} or {words[-1]}, got {raw!r}")
        return value
    return parse


def _client_games(name: str, raw: str) -> int:
    value = _int()(name, raw)
    if value == 0 or value < -1:
        raise SettingsError(f"{name} must be a positive number or -1 (no limit), got {value}")
    return value


def _text(name: str, raw: str) -> str:
    return raw


def _redis_url(name: str, raw: str) -> str:
    """``raw`` if redis-py can connect with it (its own URL parser says)."""
    from redis.connection import parse_url  # noqa: PLC0415 (config stays light to import)

    try:
        parse_url(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a URL such as redis://localhost:6379/0, got {raw!r} ({exc})") from None
    return raw


@dataclasses.dataclass(frozen=True)
class Variable:
    """One environment variable: its name, the field it sets, its default as the docs
    show it, and what it does."""

    name: str
    field: str
    default: str
    help: str


def _var(env: str, default: Any, help: str, parse: Callable[[str, str], Any] = _text, *,
         shown: str | None = None) -> Any:
    """A settings field read from ``env``. ``shown`` is the default as the docs say it
    (when the value itself does not read well, e.g. None)."""
    return dataclasses.field(default=default, metadata={
        "env": env, "parse": parse, "help": help, "shown": shown if shown is not None else str(default)})


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a part of the simulator needs to know, as plain values."""

    redis_url: str | None = _var(
        "REDIS_URL", None, "where Redis is (redis://, rediss:// or unix://); REDIS_HOST, REDIS_PORT and "
        "REDIS_DB build one instead. None of them set: simlib starts its own embedded Valkey server",
        _redis_url, shown="none (embedded)")
    redis_cluster: bool = _var("REDIS_CLUSTER", False, "1: hash-tagged keys for a Redis Cluster "
                               "(REDIS_URL names any node)", _flag, shown="0")
    redis_expiry: int = _var("REDIS_EXPIRY", 30, "seconds the worker leaves a finished game's keys", _int(1))
    worker_channel: str = _var("WORKER_CHANNEL", "lib.server.lobby", "pub/sub channel of clean-up tasks "
                               "(servers publish them there; the pub/sub worker listens there)")
    task_transport: str = _var("TASK_TRANSPORT", "pubsub", "how clean-up tasks reach workers: pubsub (the article's; "
                               "lost while no worker listens) or streams (a Redis stream and a consumer group: each "
                               "task to one worker, kept until acknowledged)", _choice("pubsub", "streams"))
    archive_maxlen: int = _var("ARCHIVE_MAXLEN", 100_000, "games kept in the archive stream archive:games (the "
                               "oldest go first)", _int(1))
    websocket_host: str = _var("WEBSOCKET_HOST", "localhost", "where the game server listens and bots connect")
    websocket_port: int | None = _var(
        "WEBSOCKET_PORT", None, "the game server's port ('simlib run' uses free ports unless it is set; "
        "0 = a free port)", _int(0), shown="5678")
    server_sleep: float = _var("SERVER_SLEEP", 0.05, "pause before each turn notice, seconds (0 = full speed)",
                               _seconds)
    lobby_timeout: float = _var("LOBBY_TIMEOUT", 5.0, "seconds a lobby waits to fill after it opened, then "
                                "it is Timed Out", _seconds)
    turn_timeout: float = _var("TURN_TIMEOUT", 10.0, "seconds the player on turn has to act (after the "
                               "SERVER_SLEEP pause); then it forfeits", _positive_seconds)
    client_games: int = _var("CLIENT_GAMES", 10, "games per bot (-1 = no limit)", _client_games)
    max_connections: int = _var("MAX_CONNECTIONS", 4096, "connections one game server holds at once; "
                                "beyond it the handshake gets HTTP 503 (lowered to fit the open-file limit)",
                                _int(1))
    login_timeout: float = _var("LOGIN_TIMEOUT", 10.0, "seconds a new connection has to make its first "
                                "accepted request (v2: LOGIN); then it is closed", _positive_seconds)
    send_timeout: float = _var("SEND_TIMEOUT", 10.0, "seconds a frame may wait to be written to a client "
                               "that does not read; then the connection is closed", _positive_seconds)
    v1_routes: bool = _var("V1_ROUTES", True, "0: serve the v2 session protocol only (v1 is the article's "
                           "open protocol: its token is the only credential)", _flag, shown="1")
    api_token: str | None = _var("API_TOKEN", None, "Super Hero API token, for 'simlib build-db pull' only",
                                 shown="none")
    api_url: str = _var("SUPERHERO_API_URL", "https://superheroapi.com/api", "the Super Hero API's base URL")
    logger_module: str = _var("LOGGER_MODULE", "redis", "redis: stdout and pub/sub; default: stdout only",
                              _choice("default", "redis"))
    log_format: str = _var("LOG_FORMAT", "simlib", "the pub/sub messages: simlib (JSON encoded once, numbered) or "
                           "article (exactly as the original simulator wrote them, for consumers written for it)",
                           _choice("simlib", "article"))
    run_seed: str = _var("RUN_SEED", "", "with a seed, each game's token and hero draw, and each user's token, come "
                         "from it and the game's place in the run instead of chance (simlib run --seed sets it)",
                         shown="none")
    run_id: str = _var("RUN_ID", "", "the id every record of one deployment carries (run), numbered per run "
                       "(seq); unset: the one Redis keeps (simlib:run), made by the first part that starts; "
                       "'simlib run' makes a new one", shown="from Redis")
    log_level: str = _var("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING, ERROR or CRITICAL",
                          _choice("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", upper=True))

    @property
    def redis_configured(self) -> bool:
        """True when the user named a Redis; otherwise the kit runs its own."""
        return self.redis_url is not None

    @property
    def server_port(self) -> int:
        """The port a lone server listens on (and bots connect to): WEBSOCKET_PORT or 5678."""
        return 5678 if self.websocket_port is None else self.websocket_port

    @property
    def websocket_url(self) -> str:
        host = self.websocket_host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"ws://{host}:{self.server_port}"

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """The variables that rebuild these settings in a child process."""
        env = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool):
                value = "1" if value else "0"
            env[f.metadata["env"]] = repr(value) if isinstance(value, float) else str(value)
        return env

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, dotenv: str | Path | None = ".env"
    ) -> "Settings":
        """Build settings from ``environ`` (default ``os.environ``) over a ``.env`` file.

        Real environment variables win over the file, as with ``export $(cat .env)``.
        An empty variable counts as unset.
        """
        env: dict[str, str] = {}
        if dotenv is not None and Path(dotenv).is_file():
            env.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
        env.update(os.environ if environ is None else environ)

        values = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is not None and raw != "":
                values[f.name] = f.metadata["parse"](f.metadata["env"], raw)
        url = values.get("redis_url")
        if url is None and any(env.get(k) for k in ("REDIS_HOST", "REDIS_PORT")):
            host = env.get("REDIS_HOST") or "localhost"
            port = _int(1)("REDIS_PORT", env.get("REDIS_PORT") or "6379")
            db = _int(0)("REDIS_DB", env.get("REDIS_DB") or "0")
            values["redis_url"] = _redis_url("REDIS_HOST", f"redis://{host}:{port}/{db}")
        elif url is not None and env.get("REDIS_DB") and url.rstrip("/").count("/") == 2:
            values["redis_url"] = f"{url.rstrip('/')}/{_int(0)('REDIS_DB', env['REDIS_DB'])}"
        if "api_url" in values:
            values["api_url"] = values["api_url"].rstrip("/")
        return cls(**values)


#: Read by :meth:`Settings.from_env` to build ``REDIS_URL`` when it is not set.
_URL_PARTS = [
    Variable("REDIS_HOST", "redis_url", "localhost", "Redis host (with REDIS_PORT and REDIS_DB, instead of REDIS_URL)"),
    Variable("REDIS_PORT", "redis_url", "6379", "Redis port"),
    Variable("REDIS_DB", "redis_url", "0", "Redis database number"),
]


def variables() -> list[Variable]:
    """Every environment variable :meth:`Settings.from_env` reads, in the order of the docs."""
    out = []
    for f in dataclasses.fields(Settings):
        out.append(Variable(f.metadata["env"], f.name, f.metadata["shown"], f.metadata["help"]))
        if f.name == "redis_url":
            out.extend(_URL_PARTS)
    return out


def variables_markdown() -> str:
    """The README's configuration table (a test keeps the README equal to it)."""
    rows = ["| variable | default | what it does |", "|---|---|---|"]
    rows += [f"| `{v.name}` | {v.default} | {v.help} |" for v in variables()]
    return "\n".join(rows) + "\n"
