"""Settings from the environment (and a ``.env`` file), defaults in one place.

The variable names are the original simulator's (the README's "Configuration" table);
``SUPERHERO_API_URL`` (the API's base URL) is ours, for tests and mirrors.
Two defaults differ on purpose, because the original's made the kit crawl or
left the worker deaf:

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
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

__all__ = ["Settings", "SettingsError"]


class SettingsError(ValueError):
    """A variable has a value the kit cannot use; the message names it."""


def _int(env: Mapping[str, str], name: str, default, minimum: int | None = None):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative, got {value}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a part of the simulator needs to know, as plain values."""

    redis_url: str | None = None  # None: start an embedded server
    redis_cluster: bool = False
    redis_expiry: int = 30
    worker_channel: str = "lib.server.lobby"
    websocket_host: str = "localhost"
    websocket_port: int | None = None  # None: not configured (5678 for a server, free ports for a run)
    server_sleep: float = 0.05
    lobby_timeout: float = 5.0
    client_games: int = 10
    api_token: str | None = None
    api_url: str = "https://superheroapi.com/api"
    logger_module: str = "redis"
    log_level: str = "INFO"

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
        env = {
            "REDIS_CLUSTER": "1" if self.redis_cluster else "0",
            "REDIS_EXPIRY": str(self.redis_expiry),
            "WORKER_CHANNEL": self.worker_channel,
            "WEBSOCKET_HOST": self.websocket_host,
            "SERVER_SLEEP": repr(self.server_sleep),
            "LOBBY_TIMEOUT": repr(self.lobby_timeout),
            "CLIENT_GAMES": str(self.client_games),
            "SUPERHERO_API_URL": self.api_url,
            "LOGGER_MODULE": self.logger_module,
            "LOG_LEVEL": self.log_level,
        }
        if self.websocket_port is not None:
            env["WEBSOCKET_PORT"] = str(self.websocket_port)
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        if self.api_token:
            env["API_TOKEN"] = self.api_token
        return env

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, dotenv: str | Path | None = ".env"
    ) -> "Settings":
        """Build settings from ``environ`` (default ``os.environ``) over a ``.env`` file.

        Real environment variables win over the file, as with ``export $(cat .env)``.
        """
        env: dict[str, str] = {}
        if dotenv is not None and Path(dotenv).is_file():
            env.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
        env.update(os.environ if environ is None else environ)

        url = env.get("REDIS_URL") or None
        if url is None and any(env.get(k) for k in ("REDIS_HOST", "REDIS_PORT")):
            host = env.get("REDIS_HOST") or "localhost"
            port = _int(env, "REDIS_PORT", 6379, minimum=1)
            db = _int(env, "REDIS_DB", 0, minimum=0)
            url = f"redis://{host}:{port}/{db}"
        elif url is not None and env.get("REDIS_DB") and url.rstrip("/").count("/") == 2:
            url = f"{url.rstrip('/')}/{_int(env, 'REDIS_DB', 0, minimum=0)}"

        logger_module = (env.get("LOGGER_MODULE") or "redis").strip().lower()
        if logger_module not in {"default", "redis"}:
            raise SettingsError(f"LOGGER_MODULE must be 'default' or 'redis', got {logger_module!r}")
        log_level = (env.get("LOG_LEVEL") or "INFO").strip().upper()
        if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise SettingsError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {log_level!r}")
        client_games = _int(env, "CLIENT_GAMES", 10)
        if client_games == 0 or client_games < -1:
            raise SettingsError(f"CLIENT_GAMES must be a positive number or -1 (no limit), got {client_games}")

        return cls(
            redis_url=url,
            redis_cluster=_flag(env, "REDIS_CLUSTER"),
            redis_expiry=_int(env, "REDIS_EXPIRY", 30, minimum=1),
            worker_channel=env.get("WORKER_CHANNEL") or "lib.server.lobby",
            websocket_host=env.get("WEBSOCKET_HOST") or "localhost",
            websocket_port=_int(env, "WEBSOCKET_PORT", None, minimum=0),
            server_sleep=_float(env, "SERVER_SLEEP", 0.05),
            lobby_timeout=_float(env, "LOBBY_TIMEOUT", 5.0),
            client_games=client_games,
            api_token=env.get("API_TOKEN") or None,
            api_url=(env.get("SUPERHERO_API_URL") or "https://superheroapi.com/api").rstrip("/"),
            logger_module=logger_module,
            log_level=log_level,
        )
