"""The hero roster: the project's own default roster, loading it into Redis, the API pull.

The simulator must run with no network and no token, and the real Super Hero API dump
may not ship with the project, so :func:`generate_roster` invents heroes in exactly the
API's shape (names are syllable combinations, not real characters). Like the real API
it has ``"null"``/``"0"`` powerstats and blank or ``"-"`` full names, but the nulls sit
only in the health stats (intelligence, strength, durability; otherwise 30..100) and
speed/power/combat stay in 40..100: one null attack stat makes attack tiny and a game
drag on for thousands of hits. Over every ordered pair of the default 600 heroes,
hits-to-kill (ceil(health / attack)) has median 6, 99th percentile 36 and maximum 98
(the real dump: median 10, but 99th percentile ~8 million, as a null attack stat is 1).

:func:`build_db` loads a roster into a temporary hash and RENAMEs it over ``superheros``,
so readers never see a half-loaded roster and a failed load leaves the old one intact.
:func:`pull_roster` writes its file only once every hero has arrived, for the same reason.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import requests

from . import game
from .config import Settings
from .keys import Keyspace

__all__ = [
    "ROSTER_PATH",
    "RosterError",
    "build_db",
    "generate_roster",
    "hits_to_kill",
    "load_roster",
    "pull_roster",
    "write_roster",
]

ROSTER_PATH = Path(__file__).resolve().parent.parent / "data" / "heroes.json"

_CHUNK = 500  # HSET fields per pipelined command: small replies, few round trips


class RosterError(ValueError):
    """A roster that cannot be read, pulled or loaded; the message is one sentence."""


# -- the generated default roster ---------------------------------------------------

_START = ("Ar", "Bel", "Cor", "Dra", "Eld", "Fen", "Gal", "Hex", "Ith", "Jor", "Kal", "Lum",
          "Mor", "Nyr", "Oth", "Pyr", "Quel", "Rha", "Sil", "Tor", "Ul", "Vex", "Wyr", "Xan",
          "Yor", "Zeph")
_MID = ("a", "e", "i", "o", "u", "ae", "y", "ar", "en", "is", "or", "ul")
_END = ("dax", "fire", "gard", "kin", "lith", "mar", "nox", "rath", "ron", "sha", "tis",
        "vane", "wick", "zar", "quin", "thos")
_TITLES = ("Captain", "Doctor", "Lady", "Mister", "Professor", "Agent", "Madame", "Sir")
_PUBLISHERS = ("Halcyon Press", "Ironleaf Comics", "Northgate Studios", "Blue Lantern Books",
               "Meridian Pictures")
_RACES = ("Human", "Mutant", "Android", "Cyborg", "Alien", "Demigod", "Construct")
_COLORS = ("Blue", "Brown", "Green", "Grey", "Red", "Black", "Amber", "White")
_HAIR = ("Black", "Brown", "Blond", "Red", "White", "No Hair", "Silver", "Auburn")
_JOBS = ("Adventurer", "Engineer", "Journalist", "Pilot", "Scientist", "Detective",
         "Teacher", "Thief", "Mercenary", "Monarch", "Student", "Surgeon")
_PLACES = ("City", "Harbor", "Falls", "Station", "Keep", "Valley")
_TEAMS = ("League", "Squad", "Circle", "Legion", "Order", "Company")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")


def _word(rng: random.Random) -> str:
    return rng.choice(_START) + rng.choice(_MID) + rng.choice(_END)


def _name(rng: random.Random) -> str:
    form = rng.random()
    if form < 0.55:
        return _word(rng)
    if form < 0.8:
        return f"{rng.choice(_TITLES)} {_word(rng)}"
    return f"{_word(rng)} {_word(rng)}"


def _stat(rng: random.Random, low: int, blank: float) -> str:
    """A powerstat string; ``blank`` is the chance of ``"null"`` (a few of those are ``"0"``)."""
    if rng.random() < blank:
        return "0" if rng.random() < 0.15 else "null"
    return str(rng.randint(low, 100))


def _hero(rng: random.Random, hero_id: int, name: str) -> dict:
    publisher = rng.choice(_PUBLISHERS)
    full_name = rng.choices([f"{_word(rng)} {_word(rng)}", "", "-"], weights=[84, 14, 2])[0]
    cm, lb = rng.randint(150, 215), rng.randint(95, 420)
    inches = round(cm / 2.54)
    measured = rng.random() < 0.75
    return {
        "response": "success",
        "id": str(hero_id),
        "name": name,
        "powerstats": {
            "intelligence": _stat(rng, 30, 0.10),
            "strength": _stat(rng, 30, 0.08),
            "speed": _stat(rng, 40, 0.0),
            "durability": _stat(rng, 30, 0.10),
            "power": _stat(rng, 40, 0.0),
            "combat": _stat(rng, 40, 0.0),
        },
        "biography": {
            "full-name": full_name,
            "alter-egos": "No alter egos found." if rng.random() < 0.9 else _name(rng),
            "aliases": [_name(rng) for _ in range(rng.randint(1, 2))] if rng.random() < 0.4 else ["-"],
            "place-of-birth": f"{_word(rng)} {rng.choice(_PLACES)}" if rng.random() < 0.4 else "-",
            "first-appearance": (f"{publisher.split()[0]} Tales #{rng.randint(1, 400)} "
                                 f"({rng.choice(_MONTHS)}, {rng.randint(1939, 2023)})"),
            "publisher": publisher,
            "alignment": rng.choices(["good", "bad", "neutral", "-"], weights=[66, 28, 5, 1])[0],
        },
        "appearance": {
            "gender": rng.choices(["Male", "Female", "-"], weights=[66, 30, 4])[0],
            "race": rng.choice(_RACES) if rng.random() < 0.6 else "null",
            "height": [f"{inches // 12}'{inches % 12}", f"{cm} cm"] if measured else ["-", "0 cm"],
            "weight": [f"{lb} lb", f"{round(lb * 0.4536)} kg"] if measured else ["- lb", "0 kg"],
            "eye-color": rng.choice(_COLORS) if rng.random() < 0.8 else "-",
            "hair-color": rng.choice(_HAIR) if rng.random() < 0.8 else "-",
        },
        "work": {
            "occupation": ", ".join(rng.sample(_JOBS, rng.randint(1, 2))) if rng.random() < 0.7 else "-",
            "base": f"{_word(rng)} {rng.choice(_PLACES)}" if rng.random() < 0.4 else "-",
        },
        "connections": {
            "group-affiliation": f"The {_word(rng)} {rng.choice(_TEAMS)}" if rng.random() < 0.6 else "-",
            "relatives": f"{_word(rng)} (sibling)" if rng.random() < 0.2 else "-",
        },
        "image": {"url": f"https://example.com/simlib/heroes/{hero_id}.jpg"},
    }


def generate_roster(count: int = 600, seed: int = 2023) -> list[dict]:
    """Invented heroes with ids ``"1"``..``str(count)``; the same seed gives the same bytes."""
    rng = random.Random(seed)
    heroes, seen = [], set()
    for hero_id in range(1, count + 1):
        name = _name(rng)
        while name in seen:  # unique names keep the lobby and the charts readable
            name = _name(rng)
        seen.add(name)
        heroes.append(_hero(rng, hero_id, name))
    return heroes


def hits_to_kill(heroes: Iterable[Mapping]) -> list[int]:
    """Hits each hero needs to kill each other hero, sorted (to check the roster's pace)."""
    numbers = [game.hero_numbers(h["powerstats"]) for h in heroes]
    return sorted(math.ceil(health / attack) for i, (health, _) in enumerate(numbers)
                  for j, (_, attack) in enumerate(numbers) if i != j)


# -- roster files -------------------------------------------------------------------


def load_roster(path: str | Path | None = None) -> list[dict]:
    """Hero records from a roster file (a list, or an object of id -> record).

    With no path, the project's ``data/heroes.json``, or a freshly generated roster when
    the package was installed without it.
    """
    if path is None:
        if not ROSTER_PATH.is_file():
            return generate_roster()
        path = ROSTER_PATH
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RosterError(f"roster file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RosterError(f"cannot read roster file {path}: {exc.__class__.__name__}") from None
    except json.JSONDecodeError as exc:
        raise RosterError(f"roster file {path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if isinstance(data, dict):  # id -> record, as a dump of the superheros hash looks
        entries = [(f"the value of {key!r}", rec) for key, rec in data.items()]
        data = [{"id": key, **rec} if isinstance(rec, dict) else rec for key, rec in data.items()]
    elif isinstance(data, list):
        entries = [(f"item {i} of the list", rec) for i, rec in enumerate(data, 1)]
    else:
        raise RosterError(f"roster file {path} must hold a list of hero objects, not {_json_kind(data)}")
    for where, rec in entries:
        if not isinstance(rec, dict):
            raise RosterError(f"roster file {path}: {where} is {_json_kind(rec)}, not a hero object "
                              "(an object with an id, a name and powerstats)")
    return data


def _json_kind(value) -> str:
    """What a JSON value is, in JSON's words: "a number", "a string", "null" ..."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return {int: "a number", float: "a number", str: "a string", list: "a list"}.get(type(value), "an object")


def write_roster(heroes: list[dict], path: str | Path | None = None) -> Path:
    """Write a roster file all at once: a crash mid-write leaves the old file in place."""
    path = Path(path or ROSTER_PATH)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp made it 0600
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(heroes, f, indent=1, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# -- Redis --------------------------------------------------------------------------


def build_db(client, heroes: Iterable[Mapping], keys: Keyspace | None = None) -> int:
    """Replace the ``superheros`` hash with ``heroes``, cleaned; returns the hero count.

    Every record is cleaned before the first write, so a bad one costs nothing.
    """
    keys = keys or Keyspace()
    name = keys.superheros
    cleaned: dict[str, str] = {}
    for i, rec in enumerate(heroes):
        try:
            hero_id, stored = game.clean_hero(rec)
        except game.RuleError as exc:
            raise RosterError(f"hero record {i} is malformed: {exc}") from None
        if hero_id in cleaned:
            raise RosterError(f"hero id {hero_id} appears twice in the roster")
        cleaned[hero_id] = json.dumps(stored, ensure_ascii=False)
    if not cleaned:
        raise RosterError("the roster holds no heroes")

    tmp = keys.superheros_loading(uuid.uuid4().hex)
    items = list(cleaned.items())
    try:
        pipe = client.pipeline(transaction=False)
        for start in range(0, len(items), _CHUNK):
            pipe.hset(tmp, mapping=dict(items[start:start + _CHUNK]))
        pipe.execute()
        client.rename(tmp, name)
    except BaseException:
        with contextlib.suppress(Exception):  # keep the original error if Redis is gone
            client.delete(tmp)
        raise
    return len(items)


# -- the Super Hero API -------------------------------------------------------------


def pull_roster(
    settings: Settings,
    path: str | Path | None = None,
    *,
    session: requests.Session | None = None,
    timeout: float = 10,
    max_ids: int = 2000,
    progress: Callable[[int], object] | None = None,
) -> list[dict]:
    """Download every hero (ids 1, 2, ... until "invalid id") and write the roster file.

    The file is written only when the whole download succeeded.
    """
    if not settings.api_token:
        raise RosterError("no API_TOKEN set: get a token at https://superheroapi.com and put it in .env")
    base = settings.api_url.rstrip("/")
    own_session = session is None
    session = session or requests.Session()
    heroes: list[dict] = []
    try:
        for hero_id in range(1, max_ids + 1):
            record = _fetch(session, base, settings.api_token, hero_id, timeout)
            if record is None:
                break
            heroes.append(record)
            if progress is not None:
                progress(len(heroes))
        else:
            raise RosterError(f"the Super Hero API at {base} still had heroes after id {max_ids}: "
                              f"raise max_ids if the roster really is that large")
    finally:
        if own_session:
            session.close()
    if not heroes:
        raise RosterError(f"the Super Hero API at {base} returned no heroes")
    write_roster(heroes, path)
    return heroes


def _fetch(session: requests.Session, base: str, token: str, hero_id: int, timeout: float) -> dict | None:
    """One hero record, or None at the end of the roster."""
    shown = f"{base}/<API_TOKEN>/{hero_id}"  # never print the token itself
    denied = RosterError(f"the Super Hero API rejected API_TOKEN (access denied at {shown}): check the token")
    try:
        resp = session.get(f"{base}/{token}/{hero_id}", timeout=timeout)
    except requests.Timeout:
        raise RosterError(f"the Super Hero API did not answer within {timeout} s at {shown}") from None
    except requests.ConnectionError:
        raise RosterError(f"cannot connect to the Super Hero API at {shown} (connection refused or "
                          f"no network)") from None
    except requests.RequestException as exc:
        raise RosterError(f"cannot request {shown} ({exc.__class__.__name__})") from None
    if resp.status_code in (401, 403):
        raise denied
    if resp.status_code != 200:
        raise RosterError(f"the Super Hero API answered HTTP {resp.status_code} at {shown}")
    try:
        record = json.loads(resp.text)
    except ValueError:
        raise RosterError(f"hero {hero_id} from {shown} is malformed: the body is not JSON") from None
    if not isinstance(record, dict):
        raise RosterError(f"hero {hero_id} from {shown} is malformed: not a JSON object")
    if record.get("response") == "error":
        error = str(record.get("error", ""))
        if error == "invalid id":
            return None
        if error == "access denied":
            raise denied
        raise RosterError(f"the Super Hero API answered an error at {shown}: {error or 'no reason given'}")
    if str(record.get("id")) != str(hero_id):
        raise RosterError(f"hero {hero_id} from {shown} is malformed: it has id {record.get('id')!r}")
    try:
        game.clean_hero(record)
    except game.RuleError as exc:
        raise RosterError(f"hero {hero_id} from {shown} is malformed: {exc}") from None
    return record
