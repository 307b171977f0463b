"""The pipelined connection the server's scripts use (simlib/mux.py), on a real server."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from simlib.mux import Mux, for_url


def run(coro):
    return asyncio.run(coro)


def shown(monitor, command: str) -> None:
    """Read MONITOR's lines until one runs ``command`` (each read bounded by the socket timeout)."""
    while monitor.next_command()["command"].split()[0].upper() != command:
        pass


def test_concurrent_callers_each_get_their_own_reply_over_few_writes(redis_server, r):
    """500 tasks calling at once each get the reply to their own command, and the calls
    of one loop turn share a write (far fewer writes than commands)."""
    async def main():
        m = for_url(redis_server.url)
        try:
            await m.execute("PING")
            before = dict(m.stats)
            results = await asyncio.gather(*(m.execute("INCRBY", f"mux:{i % 7}", i) for i in range(500)))
            echoes = await asyncio.gather(*(m.execute("ECHO", f"e{i}") for i in range(200)))
            return results, echoes, before, dict(m.stats)
        finally:
            await m.aclose()

    results, echoes, before, after = run(main())
    assert echoes == [f"e{i}" for i in range(200)]
    running = {}
    for i, got in enumerate(results):  # INCRBY replies in call order: running sums per key
        running[i % 7] = running.get(i % 7, 0) + i
        assert got == running[i % 7]
    assert after["commands"] - before["commands"] == 700
    assert after["round_trips"] - before["round_trips"] < 20


def test_error_reply_raises_response_error_and_the_connection_goes_on(redis_server, r):
    """An error reply raises redis.ResponseError for that caller only; later calls work."""
    async def main():
        m = for_url(redis_server.url)
        try:
            await m.execute("SET", "mux:s", "text")
            bad, good = await asyncio.gather(m.execute("INCR", "mux:s"), m.execute("GET", "mux:s"),
                                             return_exceptions=True)
            return bad, good, await m.execute("ECHO", "after")
        finally:
            await m.aclose()

    bad, good, after = run(main())
    assert isinstance(bad, redis.ResponseError) and "not an integer" in str(bad)
    assert good == "text" and after == "after"


def test_script_is_loaded_again_after_script_flush(redis_server, r):
    """A script runs by SHA, and is sent again when Redis has forgotten it (NOSCRIPT)."""
    async def main():
        m = for_url(redis_server.url)
        try:
            script = m.register_script("return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}")
            first = await script(keys=["mux:n"], args=["a"])
            r.script_flush()
            second = await script(keys=["mux:n"], args=["b"])
            return first, second, script.sha
        finally:
            await m.aclose()

    first, second, sha = run(main())
    assert first == ["mux:n", "a", 1] and second == ["mux:n", "b", 2]
    assert r.script_exists(sha) == [True]


def test_a_killed_connection_fails_its_callers_and_the_next_call_reconnects(redis_server, r):
    """When Redis drops the connection, waiting callers get redis.ConnectionError and the
    next call opens a new connection."""
    async def main():
        m = for_url(redis_server.url)
        watcher = redis.Redis.from_url(redis_server.url, socket_timeout=10)
        try:
            await m.execute("CLIENT", "SETNAME", "mux-under-test")
            with watcher.monitor() as monitor:  # MONITOR answered: it shows every command from here on
                blocked = asyncio.ensure_future(m.execute("BLPOP", "mux:never", 0))
                await asyncio.to_thread(shown, monitor, "BLPOP")  # Redis runs it: the caller waits on it
            victim = await asyncio.to_thread(
                lambda: next(c for c in r.client_list() if c["name"] == "mux-under-test"))
            assert victim["cmd"] == "blpop" and "b" in victim["flags"]  # blocked in BLPOP when killed
            await asyncio.to_thread(r.client_kill_filter, _id=victim["id"])
            with pytest.raises(redis.ConnectionError):
                await asyncio.wait_for(blocked, 10)
            return await m.execute("ECHO", "again")
        finally:
            watcher.close()
            await m.aclose()

    assert run(main()) == "again"


def test_a_connection_lost_right_after_it_opened_fails_the_call_and_replies_stay_matched(redis_server, r):
    """A connection that drops between its opening and the first command (Redis restarting, say) fails
    that call at once instead of leaving a waiter with no command, so every later caller still gets the
    reply to its own command (a left-over waiter shifted each reply to the previous caller)."""
    class DropsOnce(Mux):  # the real connection, aborted once right after it opened
        drop = True

        async def _connect(self):
            await super()._connect()
            if self.drop:
                self.drop = False
                self._transport.abort()  # connection_lost comes on the next loop turns
                for _ in range(3):
                    await asyncio.sleep(0)

    async def main():
        parts = urlsplit(redis_server.url)
        m = DropsOnce(parts.hostname, parts.port)
        try:
            with pytest.raises(redis.ConnectionError):
                await asyncio.wait_for(m.execute("ECHO", "lost"), 5)
            return await asyncio.wait_for(asyncio.gather(*(m.execute("ECHO", f"e{i}") for i in range(20))), 5)
        finally:
            await m.aclose()

    assert run(main()) == [f"e{i}" for i in range(20)]


def test_for_url_takes_plain_redis_urls_with_auth_and_db(redis_server, r):
    """for_url parses host, port, password, db, TLS and Unix socket URLs, and refuses other schemes."""
    m = for_url("redis://user:p%40ss@example.org:6390/4")
    assert (m.host, m.port, m._auth, m._db) == ("example.org", 6390, ["user", "p@ss"], 4)
    assert for_url("redis://:secret@h/")._auth == ["secret"]
    assert for_url("rediss://h:6380").tls and not for_url("redis://h").tls
    sock = for_url("unix://:pw@/tmp/r.sock?db=2")
    assert (sock.path, sock._db, sock._auth) == ("/tmp/r.sock", 2, ["pw"])
    with pytest.raises(ValueError):
        for_url("http://h:6379")

    db3 = urlunsplit(urlsplit(redis_server.url)._replace(path="/3"))

    async def main():  # the db number is honoured on a real server
        m = for_url(db3)
        try:
            await m.execute("SET", "mux:db", "three")
        finally:
            await m.aclose()

    run(main())
    assert r.get("mux:db") is None
    other = redis.Redis.from_url(db3, decode_responses=True)
    assert other.getdel("mux:db") == "three"
    other.close()


def test_a_subscription_hands_every_message_to_the_callback_and_reports_a_drop(redis_server, r):
    """Subscribed, every published message reaches on_message in order; a killed
    connection calls on_lost once, and subscribing again works."""
    async def main():
        m = for_url(redis_server.url)
        got, lost = [], asyncio.Event()
        m.on_lost = lambda exc: lost.set()
        try:
            done = asyncio.Event()
            await m.subscribe("mux:chan", lambda data: (got.append(data), data == "99" and done.set()))
            await asyncio.to_thread(lambda: [r.publish("mux:chan", str(i)) for i in range(100)])
            await asyncio.wait_for(done.wait(), 10)
            first = list(got)
            await asyncio.to_thread(r.client_kill_filter, _type="pubsub")
            await asyncio.wait_for(lost.wait(), 10)
            done.clear()
            await m.subscribe("mux:chan", lambda data: (got.append(data), done.set()))
            await asyncio.to_thread(r.publish, "mux:chan", "again")
            await asyncio.wait_for(done.wait(), 10)
            return first, got[-1]
        finally:
            await m.aclose()

    first, last = run(main())
    assert first == [str(i) for i in range(100)] and last == "again"
