"""The notebook helpers in simlib/tutorial.py, against the private test Redis and server."""

from __future__ import annotations

import collections
import json

import pandas as pd
import pytest
import redis as redis_py

from simlib.tutorial import (
    CommandLog,
    Lobby,
    PubSubTap,
    attack,
    check,
    commandstats_frame,
    find,
    hero,
    keys_frame,
    login,
    reset,
    side_by_side,
)


def test_commandlog_sees_exactly_the_commands_of_the_step(r):
    """A HSET then a HGET inside the block are the whole log, in order, with their arguments."""
    r.set("before", "1")
    with CommandLog(r) as log:
        r.hset("h", "f", "v")
        r.hget("h", "f")
    r.set("after", "1")
    frame = log.frame()
    assert list(frame["command"]) == ["HSET", "HGET"]
    assert list(frame["args"]) == [["h", "f", "v"], ["h", "f"]]
    assert list(frame.columns) == ["time", "client", "db", "command", "args"]
    assert set(frame["db"]) == {0}
    assert log.complete
    assert log.table()["who"].tolist() == ["this notebook", "this notebook"]


def test_commandlog_keeps_arguments_whole(r):
    """Spaces, quotes, backslashes, newlines and non-ASCII text survive MONITOR's quoting."""
    value = 'a "quoted" \\ value\nwith é and ✅ and \t tab'
    with CommandLog(r) as log:
        r.set("k", value)
    assert log.entries[0]["args"] == ["k", value]
    assert log.lines() == ['SET k "a \\"quoted\\" \\\\ value\\nwith é and ✅ and \\t tab"']


def test_commandlog_shows_what_a_lua_script_runs(r):
    """Commands run inside a script are kept, marked as coming from 'lua'."""
    with CommandLog(r) as log:
        r.eval("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])", 1, "k", "v")
    frame = log.frame()
    assert list(frame["command"]) == ["EVAL", "SET", "GET"]
    assert list(frame["client"][1:]) == ["lua", "lua"]
    assert frame["client"][0] != "lua"
    summary = log.summary()
    assert summary.set_index(["command", "from_lua"])["count"].to_dict() == {
        ("EVAL", False): 1, ("SET", True): 1, ("GET", True): 1}


def handshake_of_a_new_connection(url: str) -> dict[str, int]:
    """The commands a new redis-py connection sends before its first own command, counted by
    name, as redis-py's own MONITOR shows them (which ones depends on redis-py's version)."""
    with redis_py.Redis.from_url(url, socket_timeout=10).monitor() as monitor:
        other = redis_py.Redis.from_url(url, decode_responses=True)
        other.ping()
        other.close()
        sent = []
        while (command := monitor.next_command()["command"].split()[0].upper()) != "PING":
            sent.append(command)
    return dict(collections.Counter(sent))


def test_commandlog_sees_other_clients_and_hides_their_handshake(redis_server, r):
    """Another connection's commands are in the log; its handshake (HELLO, CLIENT SETINFO) is not,
    unless asked for: then it is there whole."""
    with CommandLog(r) as log:
        other = redis_py.Redis.from_url(redis_server.url, decode_responses=True)
        other.set("counter", 1)
        other.close()
    assert log.counts() == {"SET": 1}
    handshake = handshake_of_a_new_connection(redis_server.url)
    assert handshake and set(handshake) <= {"HELLO", "AUTH", "CLIENT", "SELECT"}
    with CommandLog(r, handshake=True) as log:
        other = redis_py.Redis.from_url(redis_server.url, decode_responses=True)
        other.set("counter", 1)
        other.close()
    assert log.counts() == {**handshake, "SET": 1}


def test_commandlog_redis_cli_lines_are_the_notebooks_own(redis_server, r):
    """redis_cli() gives prompt lines for this client's commands only, quoted for redis-cli."""
    with CommandLog(r) as log:
        r.eval("return redis.call('GET', KEYS[1])", 1, "some key")
        r.llen("games:players:2")
    assert log.redis_cli().splitlines() == [
        f"127.0.0.1:{redis_server.port}> EVAL \"return redis.call('GET', KEYS[1])\" 1 \"some key\"",
        f"127.0.0.1:{redis_server.port}> LLEN games:players:2",
    ]


def test_commandlog_of_a_url_and_an_empty_step(redis_server, r):
    """A URL works as the target, and a step with no command gives an empty frame."""
    with CommandLog(redis_server.url) as log:
        pass
    assert log.frame().empty and log.summary().empty and log.table().empty


def test_reset_removes_only_the_kits_keys(r):
    """reset() unlinks games:* and users, keeps the roster and an unrelated key, never flushes."""
    r.set("games:g1:status", "Completed")
    r.rpush("games:players:2", "g1")
    r.zadd("games:participants", {"g1": 2})
    r.hset("users", "alice", "t")
    r.set("my:own:key", "mine")
    for i in range(1200):  # more than one UNLINK batch
        r.set(f"games:bulk:{i}", i)
    with CommandLog(r) as log:
        removed = reset(r)
    assert removed == 1204
    assert list(r.scan_iter("games:*")) == []
    assert not r.exists("users")
    assert r.get("my:own:key") == "mine"
    assert r.hlen("superheros") > 0
    assert not {"FLUSHDB", "FLUSHALL", "KEYS"} & set(log.counts())
    assert log.counts()["UNLINK"] == 1 + 3  # users, then the 1,203 games:* keys in batches of 500
    assert reset(r, heroes=True) == 1
    assert not r.exists("superheros") and r.get("my:own:key") == "mine"


def test_pubsubtap_gets_a_published_message(r):
    """A message published after start() arrives, decoded once, with its log fields."""
    record = {"level": "INFO", "timestamp": "2026-01-01T00:00:00.000Z", "name": "lib.server.lobby",
              "log_message": "Cleaning Game Records", "task": {"game_token": "g", "user_token": "u"}}
    with PubSubTap(r) as tap:
        assert r.publish("lib.server.lobby", json.dumps(record)) == 1
        r.publish("lib.server.lobby", "not json")
        r.publish("elsewhere", "not tapped")
        assert tap.wait_for(lambda messages: len(messages) >= 2, timeout=5)
    frame = tap.frame()
    assert frame.loc[0, ["channel", "level", "name", "log_message"]].tolist() == [
        "lib.server.lobby", "INFO", "lib.server.lobby", "Cleaning Game Records"]
    assert frame.loc[0, "task"] == {"game_token": "g", "user_token": "u"}
    assert frame.loc[1, "log_message"] == "not json" and pd.isna(frame.loc[1, "level"])
    assert len(frame) == 2
    assert tap.count("Cleaning Game Records") == 1


def test_pubsubtap_on_named_channels(r):
    """Explicit channels replace the default pattern."""
    with PubSubTap(r, "chan") as tap:
        r.publish("lib.server.lobby", "x")
        r.publish("chan", "y")
        assert tap.wait_for(lambda messages: len(messages) >= 1, timeout=5)
    assert [m["data"] for m in tap.messages] == ["y"]


def test_keys_frame_lists_type_ttl_and_value(r):
    """keys_frame shows each matching key with its type, TTL and a readable value."""
    r.set("games:g:status", "Completed", ex=100)
    r.sadd("games:g", "b", "a")
    r.hset("games:g:superheros:u", mapping={"id": "1", "health": "0"})
    frame = keys_frame(r).set_index("key")
    assert frame.loc["games:g", ["type", "ttl", "value"]].tolist() == ["set", -1, '["a", "b"]']
    # the TTL counts down from 100 while the test runs: 100, or less if a second went by
    assert frame.loc["games:g:status", "type"] == "string" and 0 < frame.loc["games:g:status", "ttl"] <= 100
    assert json.loads(frame.loc["games:g:superheros:u", "value"]) == {"id": "1", "health": "0"}


def test_commandstats_frame_counts_commands(r):
    """After CONFIG RESETSTAT, INFO commandstats counts what ran, Lua-internal commands included."""
    r.config_resetstat()
    r.eval("redis.call('INCR', KEYS[1]); return redis.call('INCR', KEYS[1])", 1, "n")
    calls = commandstats_frame(r).set_index("command")["calls"]
    assert calls["INCR"] == 2 and calls["EVAL"] == 1


@pytest.mark.parametrize("answer, expected, right", [
    (..., 3, False), (3, 3, True), (4, 3, False), (0.30000001, 0.3, True), ("x", 0.3, False),
    ([2, 1], {1, 2}, True), (7, lambda a: a > 5, True), ("x", lambda a: {1: True}[a], False)])
def test_check_says_right_or_not_yet(answer, expected, right, capsys):
    """check() prints the verdict and returns it; the placeholder is never right."""
    assert check(answer, expected, "a hint") is right
    out = capsys.readouterr().out
    assert out == ("✅ Right\n" if right else "❌ Not yet: a hint\n")


def test_play_by_hand_against_the_server(game_server, r):
    """login, find, Lobby, hero and attack play one 2-player game to its end."""
    url = game_server.url
    first = login(url, "alice")
    assert [f.get("STATUS") for f in first.frames] == ["USER CREATED", None]
    alice = first["PAYLOAD"]["USER_TOKEN"]
    assert login(url, "alice").frames == [{"PAYLOAD": {"USER_TOKEN": alice}}]
    bob = login(url, "bob")["PAYLOAD"]["USER_TOKEN"]
    game = find(url, alice, 2)["PAYLOAD"]["GAME_TOKEN"]
    with Lobby(url, game, alice) as lobby_a:
        assert find(url, bob, 2)["PAYLOAD"]["GAME_TOKEN"] == game
        with Lobby(url, game, bob) as lobby_b:
            lobbies = {alice: lobby_a, bob: lobby_b}
            assert lobby_a.next()["STATUS"] == {"GAME": "START"}
            assert lobby_b.next()["STATUS"] == {"GAME": "START"}
            player = min(alice, bob)
            lobbies[player].until("USER'S TURN")
            refused = attack(url, game, max(alice, bob), player)
            assert refused["STATUS"] == "NOT YOUR TURN"
            for _ in range(500):
                enemy = bob if player == alice else alice
                assert hero(url, game, enemy)["PAYLOAD"]["HERO"]["health"] > 0
                record = attack(url, game, player, enemy)
                if record["STATUS"]["DETAILS"]["ENEMY_HEALTH_POST"] == 0:
                    break
                player = enemy
                lobbies[player].until("USER'S TURN")
            assert lobby_a.until("COMPLETE") and lobby_b.until("COMPLETE")
    assert r.get(f"games:{game}:status") == "Completed"
    assert r.lindex(f"games:{game}:order", 0) == player


def test_lobby_next_is_bounded(game_server, r):
    """next() raises TimeoutError when nothing is pushed in time."""
    url = game_server.url
    alice = login(url, "alice")["PAYLOAD"]["USER_TOKEN"]
    game = find(url, alice, 3)["PAYLOAD"]["GAME_TOKEN"]
    with Lobby(url, game, alice) as lobby, pytest.raises(TimeoutError):
        lobby.next(timeout=0.2)


def _styles(html_text: str) -> list[tuple[int, dict[str, str]]]:
    """(depth, style) of every div of an HTML fragment, styles as {property: value}."""
    from html.parser import HTMLParser

    found: list[tuple[int, dict[str, str]]] = []

    class Divs(HTMLParser):
        depth = 0

        def handle_starttag(self, tag, attrs):
            if tag == "div":
                style = dict(attrs).get("style") or ""
                found.append((self.depth, {k.strip(): v.strip() for k, v in
                                           (part.split(":", 1) for part in style.split(";") if ":" in part)}))
                self.depth += 1

        def handle_endtag(self, tag):
            if tag == "div":
                self.depth -= 1

    Divs().feed(html_text)
    return found


def test_result_and_command_table_never_overlap(r):
    """show()'s display: the result and the command table each start at their own full width, share
    a row only when both fit (else the second wraps below), and scroll inside themselves rather than
    drawing over the other: no pane has a fixed minimum width its content could overflow."""
    wide = pd.DataFrame([{f"column number {i}": f"value {i}" for i in range(30)}])
    with CommandLog(r) as log:
        r.get("games:x:status")
    panes_html = side_by_side(wide, log, title="a wide frame")._repr_html_()
    divs = _styles(panes_html)
    row = divs[0][1]
    assert row["display"] == "flex" and row["flex-wrap"] == "wrap"
    panes = [style for depth, style in divs if depth == 1]
    assert len(panes) == 2
    for pane in panes:
        grow, shrink, basis = pane["flex"].split()
        assert basis == "max-content"  # side by side only when both fit whole
        assert pane["min-width"] == "0" and pane["max-width"] == "100%"  # never wider than the row
        assert pane["overflow-x"] == "auto"  # what does not fit scrolls inside its own pane


def test_command_tables_shorten_tokens_not_suffixes(r):
    """A command on a game key shows the token cut short and the key's suffix whole (:status, :order),
    in the table and in show()'s HTML, however long the line (pandas' 50-character cut is off)."""
    game = "2c2936c9-5b1a-4c1e-9d3c-c28a2f106c3d"
    user = "9f0e1d2c-3b4a-4596-8877-665544332211"
    with CommandLog(r) as log:
        r.get(f"games:{game}:status")
        r.lrange(f"games:{game}:order", 0, -1)
        r.hgetall(f"games:{game}:superheros:{user}")
    assert log.table()["command"].tolist() == [
        "GET games:2c2936c9…:status", "LRANGE games:2c2936c9…:order 0 -1",
        "HGETALL games:2c2936c9…:superheros:9f0e1d2c…"]
    panes_html = side_by_side(pd.DataFrame({"key": [f"games:{game}:superheros:{user}"]}), log)._repr_html_()
    assert "games:2c2936c9…:superheros:9f0e1d2c…" in panes_html and ":order 0 -1" in panes_html
    assert game not in panes_html and "..." not in panes_html
