"""The pub/sub log transport: message shape, LOGGER_MODULE, batching, set-up, and what a
played game publishes (one clean-up task per member, one combat record per attack)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid

import pytest
import redis

from conftest import Tap
from simlib.config import Settings
from simlib.keys import GAME_CHANNEL, LOBBY_CHANNEL
from simlib.launch import start_players
from simlib.logs import RedisPubSubHandler, TaskAdapter, flush_logs, setup_logging
from simlib.worker import CLEAN_MESSAGE

MESSAGE_KEYS = {"level", "timestamp", "name", "log_message", "run", "seq"}


def publish_calls(client: redis.Redis) -> int:
    """PUBLISH commands the server has run since the last CONFIG RESETSTAT."""
    return client.info("commandstats").get("cmdstat_publish", {}).get("calls", 0)


def marker(tap: Tap, client: redis.Redis, channel: str) -> str:
    """Publish a unique marker on ``channel`` and read until it arrives: everything
    published on that channel before it has then been collected (one connection, FIFO)."""
    text = f"marker-{uuid.uuid4().hex}"
    client.publish(channel, text)
    tap.collect(lambda ms: any(m["data"] == text for m in ms), timeout=10)
    assert any(m["data"] == text for m in tap.messages), "marker never arrived"
    return text


def records(tap: Tap, channel: str | None = None, message: str | None = None) -> list[dict]:
    """Log records (decoded dicts) the tap saw, optionally on one channel / with one text."""
    return [m["data"] for m in tap.messages
            if isinstance(m["data"], dict)
            and (channel is None or m["channel"] == channel)
            and (message is None or m["data"].get("log_message") == message)]


@pytest.fixture
def tap(redis_server):
    t = Tap(redis_server.url, LOBBY_CHANNEL, GAME_CHANNEL)
    yield t
    t.close()


def test_record_arrives_on_logger_channel_as_json_encoded_once(pubsub_logging, tap, r):
    """A record on lib.server.game arrives on that channel as one JSON object (level, ISO timestamp, name, log_message, task object, run, seq)."""
    game_log = TaskAdapter(logging.getLogger(GAME_CHANNEL), {})
    task = {"game_token": "g-1", "user_token": "u-1", "n": 3, "nested": {"a": [1, 2]}}
    before = dt.datetime.now(dt.timezone.utc)
    game_log.info("Attack %s", "Completed", task=task)
    game_log.warning("no task here")
    flush_logs()
    after = dt.datetime.now(dt.timezone.utc)
    marker(tap, r, GAME_CHANNEL)

    got = records(tap, GAME_CHANNEL)
    assert len(got) == 2
    assert all(m["channel"] == GAME_CHANNEL for m in tap.messages)
    with_task, without = got
    # encoded once: the payload decodes straight to an object, and task is an object too
    assert set(with_task) == MESSAGE_KEYS | {"task"}
    assert with_task["task"] == task
    assert with_task["level"] == "INFO"
    assert with_task["name"] == GAME_CHANNEL
    assert with_task["log_message"] == "Attack Completed"
    assert set(without) == MESSAGE_KEYS
    assert without["level"] == "WARNING"
    assert without["log_message"] == "no task here"
    # numbered: the run's counter gives consecutive seqs, and both carry the handler's run id
    (handler,) = [h for h in logging.getLogger("lib").handlers if isinstance(h, RedisPubSubHandler)]
    assert with_task["run"] == without["run"] == handler.run
    assert int(r.get(f"simlib:seq:{handler.run}")) >= without["seq"] == with_task["seq"] + 1 >= 2
    for msg in got:
        stamp = dt.datetime.fromisoformat(msg["timestamp"])
        assert stamp.utcoffset() == dt.timedelta(0)
        assert before - dt.timedelta(milliseconds=1) <= stamp <= after


def test_default_logger_module_publishes_nothing(pubsub_logging, settings, tap, r):
    """LOGGER_MODULE=default removes the pub/sub transport: records logged then reach no channel."""
    assert any(isinstance(h, RedisPubSubHandler) for h in pubsub_logging.handlers)
    lib = setup_logging(settings.replace(logger_module="default"), stdout_level="CRITICAL")
    assert not any(isinstance(h, RedisPubSubHandler) for h in lib.handlers)
    r.config_resetstat()
    for name in (LOBBY_CHANNEL, GAME_CHANNEL):
        log = TaskAdapter(logging.getLogger(name), {})
        for i in range(20):
            log.info("Cleaning Game Records", task={"game_token": f"g{i}", "user_token": "u"})
    flush_logs()
    assert publish_calls(r) == 0
    # back on: only the record logged after switching arrives (bounded by the marker)
    setup_logging(settings, stdout_level="CRITICAL")
    logging.getLogger(GAME_CHANNEL).info("after switching back")
    flush_logs()
    marker(tap, r, GAME_CHANNEL)
    marker(tap, r, LOBBY_CHANNEL)
    assert [m["log_message"] for m in records(tap)] == ["after switching back"]
    assert publish_calls(r) == 3  # that record and the two markers


def test_handler_batches_and_flush_waits_until_all_are_out(redis_server, r, tap):
    """N records go out as N PUBLISH calls in few pipelined batches, in order; emit never blocks, flush waits for all."""
    n, batch = 1000, 100
    handler = RedisPubSubHandler(Settings(redis_url=redis_server.url), batch=batch)
    log = logging.getLogger(GAME_CHANNEL + ".batch-test")  # not under the lib handlers
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    admin = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        tap.pubsub.subscribe(log.name)
        assert tap.pubsub.get_message(timeout=5)["type"] == "subscribe"
        r.config_resetstat()
        reads_before = r.info("stats")["total_reads_processed"]
        # while writes are paused nothing can be published: records pile up in the queue
        admin.execute_command("CLIENT", "PAUSE", 20000, "WRITE")
        try:
            for i in range(n):
                log.info("record %d", i)  # returns at once although Redis holds every write
            assert handler.flush(timeout=0.3) is False
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
        assert handler.flush(timeout=10) is True
        assert publish_calls(r) == n  # all out when flush returns
        reads = r.info("stats")["total_reads_processed"] - reads_before
        assert reads < n // 10, f"{reads} socket reads for {n} records: not pipelined"
        mine = lambda ms: [m["data"]["log_message"] for m in ms if m["channel"] == log.name]  # noqa: E731
        tap.collect(lambda ms: len(mine(ms)) >= n, timeout=10)
        assert mine(tap.messages) == [f"record {i}" for i in range(n)]
    finally:
        log.removeHandler(handler)
        handler.close()
        admin.close()


def test_flush_counts_every_record_without_pause(redis_server, r):
    """Without any pause too, flush() returns True only once every emitted record is published (calls == N)."""
    handler = RedisPubSubHandler(Settings(redis_url=redis_server.url))
    log = logging.getLogger(GAME_CHANNEL + ".flush-test")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        r.config_resetstat()
        total = 0
        for n in (1, 7, 1234):
            for i in range(n):
                log.info("x %d", i)
            total += n
            assert handler.flush(timeout=10) is True
            assert publish_calls(r) == total
    finally:
        log.removeHandler(handler)
        handler.close()


def test_setup_logging_is_idempotent_and_leaves_root_alone(lib_logging, settings):
    """Calling setup_logging twice leaves one stdout and one pub/sub handler on 'lib', and the root logger untouched."""
    root = logging.getLogger()
    root_before = (list(root.handlers), root.level)
    first = setup_logging(settings, stdout_level="CRITICAL")
    handlers = list(first.handlers)
    second = setup_logging(settings, stdout_level="CRITICAL")
    assert first is second is logging.getLogger("lib")
    assert second.handlers == handlers
    assert sum(isinstance(h, RedisPubSubHandler) for h in second.handlers) == 1
    assert sum(getattr(h, "_simlib_stdout", False) for h in second.handlers) == 1
    assert second.propagate is False
    assert (list(root.handlers), root.level) == root_before


def test_played_game_publishes_one_clean_task_per_member_and_every_attack(pubsub_logging, game_server, r, keys,
                                                                           tap):
    """A played game publishes exactly one Cleaning Game Records {game_token, user_token} per member, and one attack record per logged action."""
    players = start_players(game_server.url, players=2, games=1, seed=1)
    assert players.join(30), "players did not finish"
    assert players.error is None and not players.failures
    assert not players.recorder.errors
    flush_logs()
    marker(tap, r, LOBBY_CHANNEL)
    marker(tap, r, GAME_CHANNEL)

    games = {row["game"] for row in players.recorder.games}
    assert len(games) == 1
    (game,) = games
    members = r.smembers(keys.game(game))
    assert len(members) == 2

    clean = records(tap, LOBBY_CHANNEL, CLEAN_MESSAGE)
    assert [m["task"] for m in clean] == [{"game_token": game, "user_token": u} for u in sorted(members)]
    assert all(m["name"] == LOBBY_CHANNEL and m["level"] == "INFO" for m in clean)
    assert not records(tap, GAME_CHANNEL, CLEAN_MESSAGE)

    attacks = records(tap, GAME_CHANNEL, "Attack Completed")
    logged = [json.loads(x) for x in r.lrange(keys.logs(game), 0, -1)]
    assert len(attacks) == r.llen(keys.logs(game)) == len(players.recorder.attacks) > 0
    assert [m["task"] for m in attacks] == logged


def test_records_published_by_scripts_match_the_transport_and_come_once(pubsub_logging, game_server, r, keys,
                                                                         redis_server, settings):
    """Join, end and clean-up records that the Lua scripts publish are byte for byte what
    the Python transport would send (json.dumps of level/timestamp/name/log_message/task),
    and each comes exactly once (the handler skips what a script already sent)."""
    raw = redis.Redis.from_url(redis_server.url, decode_responses=True).pubsub(ignore_subscribe_messages=True)
    raw.subscribe(LOBBY_CHANNEL)
    try:
        players = start_players(game_server.url, players=2, games=1, seed=3, style="v2")
        assert players.join(30) and not players.failures and not players.recorder.errors
        flush_logs()
        r.publish(LOBBY_CHANNEL, "end-marker")
        texts = []
        deadline = time.monotonic() + 10
        while (not texts or texts[-1] != "end-marker") and time.monotonic() < deadline:
            message = raw.get_message(timeout=1)  # None also for the subscribe confirmation
            if message is not None:
                texts.append(message["data"])
        assert texts and texts[-1] == "end-marker", "marker never arrived"
    finally:
        raw.close()
    (game,) = {row["game"] for row in players.recorder.games}
    members = sorted(r.smembers(keys.game(game)))
    got = [json.loads(t) for t in texts[:-1]]
    for text, record in zip(texts, got):
        assert text == json.dumps(record) and list(record)[:4] == ["level", "timestamp", "name", "log_message"]
        assert record["name"] == LOBBY_CHANNEL and record["level"] == "INFO"
        dt.datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
    joins = [g["task"] for g in got if g["log_message"] == f"Player Joined Game: {game}"]
    assert sorted(j["user_token"] for j in joins) == members
    assert sorted(j["joined"] for j in joins) == [1, 2] and {j["participants"] for j in joins} == {2}
    assert all(isinstance(j["hero_id"], int) for j in joins)
    ends = [g["task"] for g in got if g["log_message"] == "Game Finished: Completed"]
    winner = r.lindex(keys.order(game), 0)
    assert ends == [{"game_token": game, "status": "Completed", "winner": winner, "members": members}]
    assert [g["task"] for g in got if g["log_message"] == CLEAN_MESSAGE] == [
        {"game_token": game, "user_token": u} for u in members]
