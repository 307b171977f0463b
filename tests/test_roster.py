"""The roster: the generator, build_db on a real Redis, the API pull against a local stand-in."""

from __future__ import annotations

import http.server
import json
import os
import statistics
import threading
from pathlib import Path

import pytest
import redis

from simlib import game
from simlib.config import Settings
from simlib.keys import Keyspace
from simlib.roster import (
    ROSTER_PATH,
    RosterError,
    build_db,
    generate_roster,
    hits_to_kill,
    load_roster,
    pull_roster,
    write_roster,
)
from simlib.store import EmbeddedRedis, free_port

from conftest import tool_missing

# A real dump of the Super Hero API may not be copied into the project: SIMLIB_API_DUMP names
# one, and the developers' shared folder beside the clone holds one.
SHARED_DUMP = Path(os.environ.get("SIMLIB_API_DUMP")
                   or Path(__file__).resolve().parents[2] / "shared" / "data" / "superhero.json")
API_SHAPE = {
    "response": None, "id": None, "name": None,
    "powerstats": set(game.POWERSTATS),
    "biography": {"full-name", "alter-egos", "aliases", "place-of-birth", "first-appearance",
                  "publisher", "alignment"},
    "appearance": {"gender", "race", "height", "weight", "eye-color", "hair-color"},
    "work": {"occupation", "base"},
    "connections": {"group-affiliation", "relatives"},
    "image": {"url"},
}
HASH = Keyspace().superheros


# -- fixtures -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server():
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def r(redis_server):
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushdb()  # our own private server: nothing else lives in it
    yield client
    client.flushdb()
    client.close()


class FakeAPI:
    """A local stand-in for the Super Hero API: ``GET /api/<token>/<id>``."""

    def __init__(self, heroes: list[dict], token: str = "s3cret-token"):
        self.heroes = {h["id"]: h for h in heroes}
        self.token = token
        self.bodies: dict[str, str] = {}  # id -> raw body served instead of the record
        self.status: int | None = None  # HTTP status served for every request
        self.stall = threading.Event()  # set: requests hang until `release` is set
        self.release = threading.Event()
        self.requested: list[str] = []
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                status, body = api.answer(self.path)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def answer(self, path: str) -> tuple[int, str]:
        _, _, token, hero_id = path.split("/")
        self.requested.append(hero_id)
        if self.stall.is_set():
            self.release.wait(10)
        if self.status is not None:
            return self.status, '{"response": "error", "error": "unauthorised"}'
        if token != self.token:
            return 200, json.dumps({"response": "error", "error": "access denied"})
        if hero_id in self.bodies:
            return 200, self.bodies[hero_id]
        if hero_id in self.heroes:
            return 200, json.dumps(self.heroes[hero_id])
        return 200, json.dumps({"response": "error", "error": "invalid id"})

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def api():
    fake = FakeAPI(generate_roster(5))
    yield fake
    fake.close()


@pytest.fixture
def roster_file(tmp_path):
    """A pre-existing roster file, which a failed pull must leave alone."""
    return write_roster(generate_roster(2, seed=7), tmp_path / "heroes.json")


def settings_for(api: FakeAPI, **changes) -> Settings:
    return Settings(api_url=api.url, api_token=api.token).replace(**changes)


def pull_fails(settings: Settings, path: Path, *words: str, **kwargs) -> str:
    before = path.read_bytes()
    with pytest.raises(RosterError) as info:
        pull_roster(settings, path, **kwargs)
    message = str(info.value)
    assert path.read_bytes() == before
    assert list(path.parent.iterdir()) == [path], "a temporary file was left behind"
    assert "\n" not in message and ". " not in message, f"not one sentence: {message}"
    for word in words:
        assert word in message, message
    return message


def dump(redis_server) -> bytes | None:
    with redis.Redis.from_url(redis_server.url) as raw:
        return raw.dump(HASH)


# -- the generator ------------------------------------------------------------------


def test_generator_is_deterministic_per_seed():
    """The same seed gives byte-identical heroes; another seed gives other heroes."""
    one = json.dumps(generate_roster(60, seed=5))
    assert json.dumps(generate_roster(60, seed=5)) == one
    assert json.dumps(generate_roster(60, seed=6)) != one


def test_generated_records_have_the_api_shape_and_clean():
    """Every record has the API's fields, ids 1..n, and cleans without error."""
    heroes = generate_roster()
    assert [h["id"] for h in heroes] == [str(i) for i in range(1, 601)]
    assert len({h["name"] for h in heroes}) == len(heroes)
    for hero in heroes:
        assert hero.keys() == API_SHAPE.keys()
        assert hero["response"] == "success"
        for section, fields in API_SHAPE.items():
            if fields is not None:
                assert hero[section].keys() == fields, (hero["id"], section)
        assert all(isinstance(v, str) for v in hero["powerstats"].values())
        game.clean_hero(hero)


def test_generated_roster_has_the_api_quirks():
    """Like the real API: some "null" and "0" stats, and blank or "-" full names."""
    heroes = generate_roster()
    stats = [v for h in heroes for v in h["powerstats"].values()]
    full_names = {h["biography"]["full-name"] for h in heroes}
    assert "null" in stats and "0" in stats
    assert "" in full_names and "-" in full_names


def test_generated_roster_makes_short_games():
    """Hits-to-kill between two heroes is mostly a handful, rarely more than a few dozen."""
    hits = hits_to_kill(generate_roster())
    assert 3 <= statistics.median_low(hits) <= 15
    assert hits[int(0.99 * len(hits))] <= 60


def test_committed_roster_is_the_generated_one():
    """data/heroes.json is exactly what scripts/make_roster.py writes."""
    if not ROSTER_PATH.is_file():
        tool_missing("data/heroes.json is not beside the installed package (a non-editable install)")
    assert load_roster() == generate_roster()
    assert ROSTER_PATH.stat().st_size < 800_000


# -- roster files -------------------------------------------------------------------


def test_load_roster_reads_lists_and_id_maps(tmp_path):
    """A list of records and an object of id -> record both load, ids kept."""
    heroes = generate_roster(3)
    listed = write_roster(heroes, tmp_path / "list.json")
    mapped = tmp_path / "map.json"
    mapped.write_text(json.dumps({h["id"]: {k: v for k, v in h.items() if k != "id"} for h in heroes}))
    assert load_roster(listed) == heroes
    assert [h["id"] for h in load_roster(mapped)] == ["1", "2", "3"]


@pytest.mark.parametrize("content, words", [
    (None, ["does not exist"]),
    ("[{", ["not valid JSON"]),
    ('"heroes"', ["must hold a list"]),
    ('[{"id": "1"}, 7]', ["item 2 of the list is a number, not a hero object"]),
    ('{"a": 1}', ["the value of 'a' is a number, not a hero object"]),
    ('{"a": null}', ["the value of 'a' is null"]),
])
def test_load_roster_rejects_bad_files(tmp_path, content, words):
    """A missing, non-JSON or wrongly shaped file raises RosterError naming the file."""
    path = tmp_path / "heroes.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(RosterError) as info:
        load_roster(path)
    for word in [str(path), *words]:
        assert word in str(info.value)


# -- build_db -----------------------------------------------------------------------


def test_build_db_loads_health_and_attack(r):
    """Every hero lands in superheros with health = i*s*d*10 and attack = sp*p*c."""
    heroes = generate_roster(40)
    assert build_db(r, heroes) == 40
    stored = r.hgetall(HASH)
    assert stored.keys() == {h["id"] for h in heroes}
    for hero in heroes:
        stats = json.loads(stored[hero["id"]])["powerstats"]
        s = {k: game.clean_stat(hero["powerstats"][k]) for k in game.POWERSTATS}
        assert stats["health"] == s["intelligence"] * s["strength"] * s["durability"] * 10
        assert stats["attack"] == s["speed"] * s["power"] * s["combat"]
    assert r.keys("*") == [HASH], "the temporary key was left behind"


def test_build_db_replaces_the_old_roster(r):
    """A second load replaces the hash instead of merging into it."""
    build_db(r, generate_roster(30))
    assert build_db(r, generate_roster(4, seed=9)) == 4
    assert sorted(r.hkeys(HASH), key=int) == ["1", "2", "3", "4"]
    assert json.loads(r.hget(HASH, "1"))["name"] == generate_roster(1, seed=9)[0]["name"]


@pytest.mark.parametrize("bad, words", [
    ({"id": "99", "name": "No Stats"}, ["record 5", "powerstats"]),
    ({"name": "No Id", "powerstats": {}}, ["record 5", "id"]),
    ("not a record", ["record 5", "object"]),
    (generate_roster(1)[0], ["id 1", "twice"]),
])
def test_build_db_rejects_malformed_records_before_writing(r, redis_server, bad, words):
    """A malformed record raises RosterError naming it; the old hash stays byte-identical."""
    build_db(r, generate_roster(8, seed=3))
    before = dump(redis_server)
    with pytest.raises(RosterError) as info:
        build_db(r, [*generate_roster(5), bad])
    for word in words:
        assert word in str(info.value)
    assert dump(redis_server) == before
    assert r.keys("*") == [HASH]


def test_build_db_refuses_an_empty_roster(r, redis_server):
    """An empty roster raises and leaves the old one in place."""
    build_db(r, generate_roster(3))
    before = dump(redis_server)
    with pytest.raises(RosterError, match="no heroes"):
        build_db(r, [])
    assert dump(redis_server) == before


def test_build_db_loads_the_real_api_dump(r):
    """All 732 heroes of the real API dump load, with "null"/"0" counted as 1."""
    if not SHARED_DUMP.is_file():
        tool_missing(f"no dump of the real Super Hero API (732 heroes) at {SHARED_DUMP}: set SIMLIB_API_DUMP to one "
                     "to run this test")
    heroes = load_roster(SHARED_DUMP)
    assert build_db(r, heroes) == 732
    stored = r.hgetall(HASH)
    assert len(stored) == 732

    def num(value: str) -> int:
        return 1 if value in ("null", "0") else int(value)

    for hero in heroes:
        raw = {k: num(hero["powerstats"][k]) for k in game.POWERSTATS}
        stats = json.loads(stored[hero["id"]])["powerstats"]
        assert stats["health"] == raw["intelligence"] * raw["strength"] * raw["durability"] * 10
        assert stats["attack"] == raw["speed"] * raw["power"] * raw["combat"]
    real_names = {h["name"].lower() for h in heroes}
    assert not [h["name"] for h in generate_roster() if h["name"].lower() in real_names]


# -- pull ---------------------------------------------------------------------------


def test_pull_downloads_until_invalid_id(api, roster_file):
    """Pull fetches ids 1.. until "invalid id", returns the served records and writes them."""
    seen: list[int] = []
    heroes = pull_roster(settings_for(api), roster_file, progress=seen.append)
    assert heroes == list(api.heroes.values())
    assert api.requested == ["1", "2", "3", "4", "5", "6"]
    assert seen == [1, 2, 3, 4, 5]
    assert load_roster(roster_file) == heroes
    assert roster_file.read_text(encoding="utf-8") == json.dumps(heroes, indent=1, ensure_ascii=False) + "\n"


def test_pull_needs_a_token(api, roster_file):
    """With no API_TOKEN the pull says so and asks nothing of the API."""
    pull_fails(settings_for(api, api_token=None), roster_file, "API_TOKEN")
    assert api.requested == []


@pytest.mark.parametrize("status", [None, 401, 403])
def test_pull_reports_a_bad_token(api, roster_file, status):
    """"access denied" (HTTP 200) and 401/403 all read as a rejected token, never echoed."""
    api.status = status
    bad = settings_for(api, api_token="wrong-token" if status is None else api.token)
    message = pull_fails(bad, roster_file, "API_TOKEN", "access denied")
    assert "wrong-token" not in message and api.token not in message


def test_pull_reports_an_unreachable_api(roster_file):
    """Connection refused names the URL (without the token)."""
    url = f"http://127.0.0.1:{free_port()}/api"
    message = pull_fails(Settings(api_url=url, api_token="tok"), roster_file, "cannot connect", url)
    assert "/tok/" not in message


def test_pull_reports_a_timeout(api, roster_file):
    """An API that does not answer in time is reported with the URL and the limit."""
    api.stall.set()
    pull_fails(settings_for(api), roster_file, "did not answer", "0.2 s", api.url, timeout=0.2)


@pytest.mark.parametrize("hero_id, body, words", [
    ("3", "<html>oops</html>", ["hero 3", "not JSON"]),
    ("2", json.dumps({"response": "success", "id": "2", "name": "X"}), ["hero 2", "powerstats"]),
    ("4", json.dumps({**generate_roster(1)[0]}), ["hero 4", "id '1'"]),
    ("1", "[1, 2]", ["hero 1", "not a JSON object"]),
])
def test_pull_rejects_malformed_records(api, roster_file, hero_id, body, words):
    """A malformed record stops the pull with a message naming the hero."""
    api.bodies[hero_id] = body
    pull_fails(settings_for(api), roster_file, "malformed", *words)


def test_pull_refuses_zero_heroes(api, roster_file):
    """An API with no heroes at all is an error, not an empty roster."""
    api.heroes.clear()
    pull_fails(settings_for(api), roster_file, "no heroes")
