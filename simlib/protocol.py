"""Wire protocols v1 and v2: frame builders, request parsing and validation.

This is the only module that knows the shape of a frame (``docs/protocol.md``).
Handlers call :func:`parse` and catch :class:`ProtocolError`; the server turns the
exception into an error frame and carries on with the next message. Frames are
plain dicts until :func:`dumps` serialises them at the edge.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ROUTES",
    "ProtocolError",
    "dumps",
    "loads",
    "parse",
    "parse_session",
    "timestamp",
    "error_frame",
    "user_created",
    "user_token",
    "is_user_created",
    "login_token",
    "no_heroes",
    "joined",
    "game_start",
    "game_notice",
    "game_lost",
    "redis_unavailable",
    "turn_notice_v2",
    "logged_in",
    "hero_spec",
    "attack_record",
    "no_enemy_left",
    "login_request",
    "find_request",
    "lobby_request",
    "hero_request",
    "action_request",
    "v2_login",
    "v2_find",
    "v2_attack",
    "v2_hero",
]

LOGIN = "/api/v1/login"
FIND = "/api/v1/game/find"
LOBBY = "/api/v1/game/lobby"
HERO = "/api/v1/game/hero"
ACTION = "/api/v1/game/action"
#: v2: one connection per player life (docs/protocol.md, "Session protocol v2")
SESSION = "/api/v2/session"
ROUTES = (LOGIN, FIND, LOBBY, HERO, ACTION, SESSION)

#: Largest frame the server reads; bigger ones close the connection with 1009.
MAX_FRAME = 64 * 1024

# A token is a canonical UUID string; anything else (wildcards included) is unknown.
# (fullmatch: "$" would also accept a token followed by a newline)
_TOKEN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# The fields each route needs, with the exact "MISSING ... IN PAYLOAD" wording.
_FIELD_NAMES = {
    "USER": "USER",
    "USER_TOKEN": "USER TOKEN",
    "GAME_TOKEN": "GAME TOKEN",
    "PARTICIPANTS": "PARTICIPANTS",
    "ENEMY_TOKEN": "ENEMY TOKEN",
    "ACTION": "ACTION",
}
REQUIRED = {
    LOGIN: ("USER",),
    FIND: ("USER_TOKEN", "PARTICIPANTS"),
    LOBBY: ("GAME_TOKEN", "USER_TOKEN"),
    HERO: ("GAME_TOKEN", "USER_TOKEN"),
    ACTION: ("GAME_TOKEN", "USER_TOKEN", "ENEMY_TOKEN", "ACTION"),
}
#: v2 session verbs (``TYPE``) and the fields each needs; the user and game are the session's.
LOGIN_V2, FIND_V2, ATTACK_V2, HERO_V2 = "LOGIN", "FIND", "ATTACK", "HERO"
SESSION_REQUIRED = {
    LOGIN_V2: ("USER",),
    FIND_V2: ("PARTICIPANTS",),
    ATTACK_V2: ("ENEMY_TOKEN",),
    HERO_V2: ("USER_TOKEN",),
}


class ProtocolError(Exception):
    """A request the server rejects; ``frame`` is what the client gets back."""

    def __init__(self, status: str, code: str | None = None, message: str | None = None):
        super().__init__(message or status)
        self.status = status
        self.code = code
        self.message = message

    @property
    def frame(self) -> dict:
        return error_frame(self.status, self.code, self.message)


def error_frame(status: str, code: str | None = None, message: str | None = None) -> dict:
    """``{"PAYLOAD": {}, "STATUS": ...}``, plus ``ERROR`` for every rejection beyond a
    missing field (those keep the original's exact two-key shape)."""
    frame: dict[str, Any] = {"PAYLOAD": {}, "STATUS": status}
    if code is not None:
        frame["ERROR"] = {"CODE": code, "MESSAGE": message or status.capitalize()}
    return frame


def dumps(frame: Mapping) -> str:
    return json.dumps(frame)


def loads(text: str | bytes) -> Any:
    return json.loads(text)


_second: tuple = (None, "")  # the last second formatted, and its text (strftime is slow)


def timestamp(now: _dt.datetime | None = None) -> str:
    """ISO 8601 UTC with milliseconds, e.g. ``2026-11-28T03:00:19.042Z``."""
    global _second
    now = now or _dt.datetime.now(_dt.timezone.utc)
    cached = _second  # one read: threads swap the whole pair, never half of it
    if now.replace(microsecond=0) != cached[0]:
        cached = _second = (now.replace(microsecond=0), now.strftime("%Y-%m-%dT%H:%M:%S."))
    return f"{cached[1]}{now.microsecond // 1000:03d}Z"


def is_token(value: Any) -> bool:
    return isinstance(value, str) and _TOKEN.fullmatch(value) is not None


def _check_user(name: Any) -> str:
    if not isinstance(name, str) or not name or len(name) > 64 or not name.isprintable():
        raise ProtocolError("INVALID USER", "INVALID_USER",
                            "USER must be a non-empty string of printable characters, at most 64 long")
    return name


def _check_token(value: Any, field: str) -> str:
    if not is_token(value):
        words = _FIELD_NAMES[field]
        raise ProtocolError(f"UNKNOWN {words}", f"UNKNOWN_{field}", f"{field} does not name an existing one")
    return value


def _check_participants(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 10:
        raise ProtocolError("INVALID PARTICIPANTS", "INVALID_PARTICIPANTS",
                            "PARTICIPANTS must be a whole number from 2 to 10")
    return value


def _decode(text: str | bytes) -> dict:
    """One frame as a JSON object, or the ProtocolError saying why not."""
    if isinstance(text, bytes):
        raise ProtocolError("BINARY FRAME", "BINARY_FRAME", "frames must be JSON text, not binary")
    try:
        message = loads(text)
    except ValueError:
        raise ProtocolError("MALFORMED JSON", "MALFORMED_JSON", "the frame is not valid JSON") from None
    except RecursionError:  # deep nesting fits in one frame and would kill the handler
        raise ProtocolError("MALFORMED JSON", "MALFORMED_JSON", "the frame nests too deeply to decode") from None
    if not isinstance(message, dict):
        raise ProtocolError("INVALID MESSAGE", "INVALID_MESSAGE", "a request must be a JSON object")
    return message


def _payload(message: dict, required: tuple[str, ...]) -> dict:
    """Check ``PAYLOAD`` and the ``required`` fields in it; return the checked values."""
    if "PAYLOAD" not in message:
        raise ProtocolError("MISSING PAYLOAD IN MESSAGE")
    payload = message["PAYLOAD"]
    if not isinstance(payload, dict):
        raise ProtocolError("INVALID PAYLOAD", "INVALID_PAYLOAD", "PAYLOAD must be a JSON object")
    for field in required:
        if field not in payload:
            raise ProtocolError(f"MISSING {_FIELD_NAMES[field]} IN PAYLOAD")

    checked: dict[str, Any] = {}
    if "USER" in required:
        checked["USER"] = _check_user(payload["USER"])
    if "PARTICIPANTS" in required:
        checked["PARTICIPANTS"] = _check_participants(payload["PARTICIPANTS"])
    for field in ("USER_TOKEN", "GAME_TOKEN"):
        if field in required:
            checked[field] = _check_token(payload[field], field)
    if "ACTION" in required:
        if payload["ACTION"] != "ATTACK":
            raise ProtocolError("UNKNOWN ACTION", "UNKNOWN_ACTION", "ACTION must be \"ATTACK\"")
        checked["ACTION"] = "ATTACK"
    if "ENEMY_TOKEN" in required:
        enemy = payload["ENEMY_TOKEN"]
        checked["ENEMY_TOKEN"] = None if enemy in (None, "") else _check_token(enemy, "ENEMY_TOKEN")
    return checked


def parse(route: str, text: str | bytes) -> dict:
    """Validate one v1 request frame for ``route``; return its payload with checked values.

    ``ENEMY_TOKEN`` comes back as ``None`` when it is null or empty ("no enemy left").
    Raises :class:`ProtocolError` for anything the route cannot accept.
    """
    return _payload(_decode(text), REQUIRED[route])


def parse_session(text: str | bytes) -> tuple[str, dict]:
    """Validate one v2 session request; return its ``TYPE`` and checked payload."""
    message = _decode(text)
    if "TYPE" not in message:
        raise ProtocolError("MISSING TYPE IN MESSAGE")
    verb = message["TYPE"]
    if not isinstance(verb, str) or verb not in SESSION_REQUIRED:
        raise ProtocolError("UNKNOWN TYPE", "UNKNOWN_TYPE", f"TYPE must be one of {', '.join(SESSION_REQUIRED)}")
    return verb, _payload(message, SESSION_REQUIRED[verb])


# -- client requests (what bots, the tutorial's client and tests send) ---------

def login_request(user: str) -> dict:
    return {"PAYLOAD": {"USER": user}}


def find_request(user_token: str, participants: int) -> dict:
    return {"PAYLOAD": {"USER_TOKEN": user_token, "PARTICIPANTS": participants}}


def lobby_request(game: str, user_token: str) -> dict:
    return {"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": user_token}}


def hero_request(game: str, user_token: str) -> dict:
    """v1: ask for the hero of ``user_token`` (any member of ``game``)."""
    return {"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": user_token}}


def action_request(game: str, user_token: str, enemy: str | None) -> dict:
    """v1: attack ``enemy`` (None: "I see no enemy left")."""
    return {"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": user_token, "ENEMY_TOKEN": enemy, "ACTION": "ATTACK"}}


def v2_login(user: str) -> dict:
    return {"TYPE": LOGIN_V2, "PAYLOAD": {"USER": user}}


def v2_find(participants: int) -> dict:
    return {"TYPE": FIND_V2, "PAYLOAD": {"PARTICIPANTS": participants}}


def v2_attack(enemy: str | None) -> dict:
    return {"TYPE": ATTACK_V2, "PAYLOAD": {"ENEMY_TOKEN": enemy}}


def v2_hero(user_token: str) -> dict:
    return {"TYPE": HERO_V2, "PAYLOAD": {"USER_TOKEN": user_token}}


# -- server frames -----------------------------------------------------------

#: v1's first answer to the login of a new name; the frame with its token follows.
USER_CREATED = "USER CREATED"


def user_created() -> dict:
    return {"PAYLOAD": {}, "STATUS": USER_CREATED}


def user_token(token: str) -> dict:
    return {"PAYLOAD": {"USER_TOKEN": token}}


def is_user_created(frame: Mapping) -> bool:
    """True for v1's ``USER CREATED`` frame: the login's token comes in the next frame."""
    return frame.get("STATUS") == USER_CREATED


def login_token(frame: Mapping) -> str | None:
    """The user token a login reply carries (v1's token frame, v2's ``LOGGED IN``), or None
    (a refusal, or the ``USER CREATED`` frame that comes before v1's token frame)."""
    payload = frame.get("PAYLOAD")
    token = payload.get("USER_TOKEN") if isinstance(payload, Mapping) else None
    return token if isinstance(token, str) and token else None


def no_heroes() -> dict:
    return {"PAYLOAD": {}, "STATUS": "LIST OF SUPERHEROS NOT AVAILABLE"}


def joined(game: str, hero_id: int) -> dict:
    return {"PAYLOAD": {"GAME_TOKEN": game, "HERO_ID": hero_id}, "STATUS": {"JOINED": "SUCCESS"}}


def hero_dict(user: str, hero: Mapping) -> dict:
    return {"token": user, "id": int(hero["id"]), "attack": int(hero["attack"]), "health": int(hero["health"])}


def game_start(game: str, participants: list[str], heroes: Mapping[str, Mapping]) -> dict:
    return {
        "PAYLOAD": {
            "GAME_TOKEN": game,
            "PARTICIPANTS": list(participants),
            "PARTICIPANTS_HEROS": {u: hero_dict(u, heroes[u]) for u in participants if u in heroes},
        },
        "STATUS": {"GAME": "START"},
    }


#: Notices pushed on the lobby connection. GAME LOST is ours: the game's records vanished
#: from Redis (it restarted empty, or was emptied) while the game was followed.
YOUR_TURN, COMPLETE, TIMED_OUT, GAME_LOST = "USER'S TURN", "COMPLETE", "TIMED OUT", "GAME LOST"


def game_notice(game: str, what: str) -> dict:
    return {"PAYLOAD": {"GAME_TOKEN": game}, "STATUS": {"GAME": what}}


def game_lost(game: str) -> dict:
    """The end of a game whose records are gone: a notice with an ERROR object."""
    frame = game_notice(game, GAME_LOST)
    frame["ERROR"] = {"CODE": "GAME_LOST",
                      "MESSAGE": "this game's records are gone from Redis (it restarted or was emptied); find a new game"}
    return frame


def redis_unavailable() -> dict:
    """The answer to a request that came while Redis could not be reached."""
    return error_frame("REDIS UNAVAILABLE", "REDIS_UNAVAILABLE",
                       "the store cannot be reached right now; try again shortly")


def turn_notice_v2(game: str, order: list[str]) -> dict:
    """v2's turn notice: the living members in turn order, the player on turn first."""
    return {"PAYLOAD": {"GAME_TOKEN": game, "ORDER": list(order)}, "STATUS": {"GAME": YOUR_TURN}}


def logged_in(token: str, created: bool) -> dict:
    """v2's answer to LOGIN."""
    return {"PAYLOAD": {"USER_TOKEN": token, "CREATED": created}, "STATUS": "LOGGED IN"}


def hero_spec(game: str, user: str, hero: Mapping) -> dict:
    return {"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": user, "HERO": hero_dict(user, hero)},
            "STATUS": {"GAME": "HERO SPEC"}}


def attack_record(ts: str, game: str, user: str, enemy: str, prior: int, post: int) -> dict:
    """The action reply and log record (the Lua script writes the same bytes)."""
    return {
        "TIMESTAMP": ts,
        "PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": user},
        "STATUS": {"ACTION": "ATTACK", "DETAILS": {
            "ENEMY_TOKEN": enemy, "ENEMY_DAMAGE": prior - post,
            "ENEMY_HEALTH_PRIOR": prior, "ENEMY_HEALTH_POST": post}},
    }


def no_enemy_left(ts: str, game: str, user: str) -> dict:
    return {"TIMESTAMP": ts, "PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": user},
            "STATUS": {"ACTION": "NA", "DETAILS": {"ENEMY_TOKEN": None, "ENEMY_STATUS": "DEAD"}}}
