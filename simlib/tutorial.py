"""Helpers for the tutorial notebooks: make every step's effect on Redis visible.

The notebooks should read like a story, one step per cell, and each step should show
the Redis commands it caused next to its result. The machinery for that lives here,
written and tested once, instead of being pasted into every notebook:

* :class:`CommandLog` runs ``MONITOR`` on a connection of its own while a step runs.
  It ends with a marker (``ECHO <nonce>``) sent through an ordinary client and stops
  reading when MONITOR shows it: MONITOR reports commands in execution order, so
  every command the step caused before the marker has then been read. No sleeps.
* :class:`PubSubTap` listens to the log channels (``lib.*``) in a background thread.
* :func:`reset` removes only the kit's own keys (SCAN + UNLINK); it never flushes a
  database, because a learner's Redis may hold other data.
* :func:`login`, :func:`find`, :class:`Lobby`, :func:`hero`, :func:`attack`: a tiny
  synchronous protocol-v1 client, so that a game can be played by hand from cells.
* :func:`show` puts a result and its command table side by side (:func:`side_by_side`
  builds that display); :func:`check` answers the "Try it yourself" cells.
"""

from __future__ import annotations

import html
import json
import math
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import redis
from websockets.sync.client import connect as _ws_connect

from .keys import Keyspace
from . import protocol as P
from .protocol import ACTION, FIND, HERO, LOBBY, LOGIN, is_user_created

__all__ = [
    "CommandLog",
    "PubSubTap",
    "Reply",
    "Lobby",
    "attack",
    "check",
    "commandstats_frame",
    "find",
    "hero",
    "keys_frame",
    "login",
    "reset",
    "show",
    "side_by_side",
]

_MARKER = "simlib-commandlog:"
# What every new redis-py connection says first; noise in a table about one step.
_HANDSHAKE = {("HELLO",), ("AUTH",), ("CLIENT", "SETINFO")}


def _client_for(target: redis.Redis | str, **overrides) -> redis.Redis:
    """A new client on the same server and database as ``target`` (a client or a URL)."""
    if isinstance(target, str):
        return redis.Redis.from_url(target, **overrides)
    pool = target.connection_pool
    kwargs = {**pool.connection_kwargs, **overrides}
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))


# -- MONITOR -----------------------------------------------------------------------

_LINE = re.compile(rb"^(\d+\.\d+) \[(\d+) ([^\]]*)\] (.*)$", re.S)
_TOKEN = re.compile(rb'"((?:[^"\\]|\\.)*)"', re.S)
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b", b"\\": b"\\", b'"': b'"'}


def _unescape(raw: bytes) -> str:
    """Undo the server's quoting of one argument (``\\"``, ``\\n``, ``\\xHH`` ...)."""
    out, i = bytearray(), 0
    while i < len(raw):
        ch = raw[i:i + 1]
        if ch == b"\\" and i + 1 < len(raw):
            nxt = raw[i + 1:i + 2]
            if nxt == b"x" and i + 3 < len(raw):
                out += bytes([int(raw[i + 2:i + 4], 16)])
                i += 4
                continue
            out += _ESCAPES.get(nxt, nxt)
            i += 2
            continue
        out += ch
        i += 1
    return out.decode("utf-8", errors="replace")


def _parse_monitor(line: bytes | str) -> dict | None:
    """One MONITOR line as ``{time, db, client, command, args}`` (None if unreadable).

    redis-py's own ``Monitor.next_command`` joins the arguments with spaces, which
    loses their boundaries (a JSON value holds spaces); this keeps them as a list.
    """
    if isinstance(line, str):
        line = line.encode()
    m = _LINE.match(line)
    if m is None:
        return None
    when, db, client, rest = m.groups()
    words = [_unescape(t) for t in _TOKEN.findall(rest)]
    if not words:
        return None
    return {"time": float(when), "client": client.decode() or "unknown", "db": int(db),
            "command": words[0].upper(), "args": words[1:]}


def _cli_quote(arg: str) -> str:
    """An argument as redis-cli wants it typed."""
    if arg and re.fullmatch(r"[^\s\"'\\]+", arg):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped.replace(chr(9), chr(92) + "t")}"'


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


_UUID = re.compile(r"\b([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def _brief(text: str, width: int) -> str:
    """Text for a table cell: each token (a UUID) cut to its first 8 characters and "…",
    so what follows a token stays readable (``games:2c2936c9…:status``); only then, if
    the text is still longer than ``width``, its end is cut."""
    return _short(_UUID.sub(r"\1…", text), width)


class CommandLog:
    """Every Redis command the server executes while a step runs, as a DataFrame.

    >>> with CommandLog(r) as log:          # doctest: +SKIP
    ...     r.hset("h", "f", "v")
    >>> log.frame()                          # doctest: +SKIP

    Commands from every client are seen (the game server's, the worker's, the log
    publisher's), and those a Lua script runs show ``client == "lua"``: they tell
    what a script does inside Redis. ``handshake=True`` keeps the commands every new
    connection sends first (HELLO, CLIENT SETINFO). With ``flush_logs`` (default), the
    log records this process has queued for pub/sub are published before the marker,
    so a step's PUBLISH commands land in its own table.

    Notes: MONITOR costs the server time, so use it on steps, not on benchmarks; and it
    never shows administrative commands such as CONFIG.
    """

    def __init__(self, client: redis.Redis | str, *, timeout: float = 10.0, handshake: bool = False,
                 flush_logs: bool = True):
        self._target = client
        self.timeout = timeout
        self.handshake = handshake
        self.flush_logs = flush_logs
        self.entries: list[dict] = []
        self.complete = False  # True once the end marker was seen
        self._marker = f"{_MARKER}{uuid.uuid4().hex}"
        self._done = threading.Event()  # the end marker was read
        self._ended = threading.Event()  # the reader thread has finished
        self._abort = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._monitor_client: redis.Redis | None = None
        self._monitor = None
        self._me: str | None = None
        self.error: BaseException | None = None

    # -- life cycle --------------------------------------------------------------
    def start(self) -> "CommandLog":
        """Begin: returns once MONITOR has answered OK, so nothing after it is missed."""
        if self._thread is not None:
            raise RuntimeError("this CommandLog was already started")
        self._monitor_client = _client_for(self._target, decode_responses=False,
                                           socket_connect_timeout=self.timeout)
        with self._normal_client() as client:
            try:
                self._me = client.client_info().get("addr")
            except redis.RedisError:
                self._me = None
        self._monitor = self._monitor_client.monitor()
        self._monitor.__enter__()  # sends MONITOR and reads its OK
        self._thread = threading.Thread(target=self._read, name="commandlog-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> "CommandLog":
        """End: send the marker, read up to it (at most ``timeout`` s), close."""
        if self._thread is None or self._stopped:
            return self
        self._stopped = True
        try:
            if self.flush_logs:
                from .logs import flush_logs  # noqa: PLC0415 (only needed with a pub/sub handler)

                flush_logs(self.timeout)
            with self._normal_client() as client:
                client.execute_command("ECHO", self._marker)
            self._ended.wait(self.timeout)
            self.complete = self._done.is_set()
        finally:
            if not self._ended.is_set():
                self._abort.set()
                self._monitor.connection.disconnect()  # wakes the blocked read
            self._thread.join(self.timeout)
            self._monitor.__exit__(None, None, None)
            self._monitor_client.close()
        if not self.complete:
            raise TimeoutError(f"MONITOR did not show the end marker within {self.timeout} s "
                               f"({self.error or 'no error'}); the table may miss the step's last commands")
        return self

    def __enter__(self) -> "CommandLog":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _normal_client(self):
        if isinstance(self._target, str):
            return redis.Redis.from_url(self._target, decode_responses=True)
        return _NoClose(self._target)

    def _read(self) -> None:
        conn = self._monitor.connection
        try:
            while not self._abort.is_set():
                entry = _parse_monitor(conn.read_response())
                if entry is None:
                    continue
                if entry["command"] == "ECHO" and entry["args"] and entry["args"][0].startswith(_MARKER):
                    if entry["args"][0] == self._marker:
                        self._done.set()
                        return
                    continue  # another log's marker
                if not self.handshake and self._is_handshake(entry):
                    continue
                self.entries.append(entry)
        except BaseException as exc:  # a closed connection after abort is expected
            if not self._abort.is_set():
                self.error = exc
        finally:
            self._ended.set()

    @staticmethod
    def _is_handshake(entry: dict) -> bool:
        first = (entry["command"],)
        second = (entry["command"], entry["args"][0].upper()) if entry["args"] else first
        return first in _HANDSHAKE or second in _HANDSHAKE

    # -- results -----------------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        """One row per command, in execution order: time, client, db, command, args."""
        frame = pd.DataFrame(self.entries, columns=["time", "client", "db", "command", "args"])
        frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
        return frame

    def summary(self) -> pd.DataFrame:
        """How many times each command ran (Lua-internal ones counted apart)."""
        frame = self.frame()
        if frame.empty:
            return pd.DataFrame(columns=["command", "from_lua", "count"])
        frame["from_lua"] = frame["client"] == "lua"
        out = frame.groupby(["command", "from_lua"]).size().rename("count").reset_index()
        return out.sort_values(["count", "command"], ascending=[False, True]).reset_index(drop=True)

    def counts(self) -> dict[str, int]:
        """``{command: count}`` over all clients, Lua included."""
        out: dict[str, int] = {}
        for e in self.entries:
            out[e["command"]] = out.get(e["command"], 0) + 1
        return out

    def lines(self, *, lua: bool = True) -> list[str]:
        """The commands as you would type them into redis-cli."""
        return [" ".join(_cli_quote(w) for w in [e["command"], *e["args"]])
                for e in self.entries if lua or e["client"] != "lua"]

    def redis_cli(self, port: int | None = None, *, mine: bool = True) -> str:
        """The notebook's own commands (``mine``) as typed at a ``redis-cli`` prompt.

        Prompt lines, as in an interactive session: one connection, so a ``MULTI`` …
        ``EXEC`` shown here means what it says."""
        kwargs = {} if isinstance(self._target, str) else self._target.connection_pool.connection_kwargs
        host = kwargs.get("host", "127.0.0.1")
        port = port or kwargs.get("port") or (redis.connection.parse_url(self._target).get("port")
                                              if isinstance(self._target, str) else None)
        prompt = f"{host}:{port}> " if port else "redis> "
        return "\n".join(prompt + " ".join(_cli_quote(w) for w in [e["command"], *e["args"]])
                         for e in self.entries if not mine or e["client"] == self._me)

    def table(self, width: int = 90) -> pd.DataFrame:
        """A display table: ms since the first command, who sent it, the command line
        (tokens shortened, see :func:`_brief`)."""
        if not self.entries:
            return pd.DataFrame(columns=["ms", "who", "command"])
        t0 = self.entries[0]["time"]
        rows = [{"ms": round((e["time"] - t0) * 1000, 2), "who": self._who(e["client"]),
                 "command": _brief(" ".join(_cli_quote(w) for w in [e["command"], *e["args"]]), width)}
                for e in self.entries]
        return pd.DataFrame(rows)

    def _who(self, client: str) -> str:
        if client == "lua":
            return "lua (script)"
        if client == self._me:
            return "this notebook"
        return client

    def _repr_html_(self) -> str:
        return _log_html(self)

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"<CommandLog {len(self.entries)} commands{'' if self.complete else ' (open)'}>"


class _NoClose:
    """Use a caller's client in a ``with`` without closing it."""

    def __init__(self, client):
        self.client = client

    def __enter__(self):
        return self.client

    def __exit__(self, *exc):
        return None


# -- pub/sub --------------------------------------------------------------------------

class PubSubTap:
    """Collects the messages of some channels/patterns (default ``lib.*``) in a thread.

    Listening starts before :meth:`start` returns (the subscriptions are confirmed),
    so a message published after it is never missed. JSON payloads are decoded once,
    on arrival. :meth:`wait_for` is the event-driven way to wait for traffic.
    """

    def __init__(self, client: redis.Redis | str, *channels: str, patterns: Iterable[str] | None = None,
                 timeout: float = 10.0):
        self._target = client
        self.channels = list(channels)
        self.patterns = list(patterns) if patterns is not None else ([] if channels else ["lib.*"])
        self.timeout = timeout
        self.messages: list[dict] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: redis.Redis | None = None
        self._pubsub = None
        self.error: BaseException | None = None

    def start(self) -> "PubSubTap":
        self._client = _client_for(self._target, decode_responses=True)
        self._pubsub = self._client.pubsub()
        if self.channels:
            self._pubsub.subscribe(*self.channels)
        if self.patterns:
            self._pubsub.psubscribe(*self.patterns)
        confirmed = 0
        wanted = len(self.channels) + len(self.patterns)
        while confirmed < wanted:
            m = self._pubsub.get_message(timeout=self.timeout)
            if m is None:
                self._pubsub.close()
                self._client.close()
                raise TimeoutError("the subscriptions were not confirmed in time")
            if m["type"] in ("subscribe", "psubscribe"):
                confirmed += 1
        self._thread = threading.Thread(target=self._run, name="pubsub-tap", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                m = self._pubsub.get_message(timeout=0.25)  # a bounded blocking read
                if m is None or m["type"] not in ("message", "pmessage"):
                    continue
                data = m["data"]
                try:
                    decoded = json.loads(data)
                except (TypeError, ValueError):
                    decoded = None
                with self._cond:
                    self.messages.append({"received": pd.Timestamp.now(tz="UTC"), "channel": m["channel"],
                                          "pattern": m.get("pattern"), "data": data, "json": decoded})
                    self._cond.notify_all()
        except BaseException as exc:
            if not self._stop.is_set():
                self.error = exc

    def wait_for(self, predicate: Callable[[list[dict]], bool], timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` s) until ``predicate(messages)`` holds; True if it did."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.messages), self.timeout if timeout is None else timeout)

    def count(self, log_message: str | None = None, channel: str | None = None) -> int:
        """Messages so far, optionally only those with this ``log_message``/``channel``."""
        with self._cond:
            return sum(1 for m in self.messages
                       if (channel is None or m["channel"] == channel)
                       and (log_message is None or isinstance(m["json"], dict)
                            and m["json"].get("log_message") == log_message))

    def stop(self) -> "PubSubTap":
        if self._thread is None:
            return self
        self._stop.set()
        self._thread.join(self.timeout)
        if self._pubsub is not None:
            self._pubsub.close()
            self._client.close()
        self._thread = None
        return self

    def __enter__(self) -> "PubSubTap":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def frame(self) -> pd.DataFrame:
        """One row per message: received, channel, level, name, log_message, task.

        A message that is not a JSON log record (a worker's drain marker, say) keeps
        its raw text in ``log_message``."""
        with self._cond:
            messages = list(self.messages)
        rows = []
        for m in messages:
            rec = m["json"] if isinstance(m["json"], dict) else {}
            rows.append({"received": m["received"], "channel": m["channel"], "level": rec.get("level"),
                         "name": rec.get("name"), "log_message": rec.get("log_message", m["data"]),
                         "task": rec.get("task")})
        return pd.DataFrame(rows, columns=["received", "channel", "level", "name", "log_message", "task"])

    def __repr__(self) -> str:
        return f"<PubSubTap {self.channels + self.patterns} {len(self.messages)} messages>"


# -- the kit's keys -------------------------------------------------------------------

def reset(client: redis.Redis, *, heroes: bool = False, keys: Keyspace | None = None, batch: int = 500) -> int:
    """Remove the kit's own keys (``games:*``, ``users``; the roster with ``heroes``).

    SCAN + UNLINK in batches: other keys in the database stay, and a large keyspace
    never blocks the server. Returns how many keys were removed.
    """
    keys = keys or Keyspace()
    patterns = [keys.game_pattern]
    singles = [keys.users]
    if heroes:
        singles.append(keys.superheros)
        patterns.append(keys.superheros_loading("*"))
    removed = client.unlink(*singles)
    for pattern in patterns:
        found: list[str] = []
        for key in client.scan_iter(match=pattern, count=1000):
            found.append(key)
            if len(found) >= batch:
                removed += client.unlink(*found)
                found = []
        if found:
            removed += client.unlink(*found)
    return int(removed)


def keys_frame(client: redis.Redis, pattern: str = "games:*", *, width: int = 80) -> pd.DataFrame:
    """Every key matching ``pattern`` with its type, TTL and value (shortened), sorted."""
    names = sorted(client.scan_iter(match=pattern, count=1000))
    pipe = client.pipeline(transaction=False)
    for k in names:
        pipe.type(k)
        pipe.ttl(k)
    meta = pipe.execute()
    readers = {"string": lambda p, k: p.get(k), "list": lambda p, k: p.lrange(k, 0, -1),
               "set": lambda p, k: p.smembers(k), "hash": lambda p, k: p.hgetall(k),
               "zset": lambda p, k: p.zrange(k, 0, -1, withscores=True)}
    pipe = client.pipeline(transaction=False)
    for i, k in enumerate(names):
        readers.get(meta[2 * i], lambda p, k: p.type(k))(pipe, k)
    values = pipe.execute()
    rows = []
    for i, k in enumerate(names):
        value = values[i]
        if isinstance(value, set):
            value = sorted(value)
        if isinstance(value, list) and value and isinstance(value[0], tuple):
            value = {m: s for m, s in value}
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        rows.append({"key": k, "type": meta[2 * i], "ttl": meta[2 * i + 1], "value": _short(text, width)})
    return pd.DataFrame(rows, columns=["key", "type", "ttl", "value"])


def commandstats_frame(client: redis.Redis) -> pd.DataFrame:
    """``INFO commandstats`` as one row per command: calls, usec, usec_per_call.

    The server counts every command, those run inside Lua scripts included, since the
    last ``CONFIG RESETSTAT``."""
    stats = client.info("commandstats")
    rows = []
    for name, values in stats.items():
        command = name.removeprefix("cmdstat_").upper().replace("|", " ")
        rows.append({"command": command, "calls": int(values.get("calls", 0)),
                     "usec": int(values.get("usec", 0)), "usec_per_call": float(values.get("usec_per_call", 0))})
    frame = pd.DataFrame(rows, columns=["command", "calls", "usec", "usec_per_call"])
    return frame.sort_values(["calls", "command"], ascending=[False, True]).reset_index(drop=True)


# -- a tiny synchronous protocol-v1 client ---------------------------------------------------



class Reply(dict):
    """The server's last frame of an exchange (a dict); ``.frames`` holds every frame
    it sent, ``.request`` what was sent."""

    frames: list[dict]
    request: dict


def _open(url: str, route: str, timeout: float):
    return _ws_connect(url.rstrip("/") + route, open_timeout=timeout, close_timeout=timeout)


def _exchange(url: str, route: str, request: dict, timeout: float, more: Callable[[dict], bool] = lambda f: False
              ) -> Reply:
    frames: list[dict] = []
    with _open(url, route, timeout) as ws:
        ws.send(json.dumps(request))
        frames.append(json.loads(ws.recv(timeout=timeout)))
        while more(frames[-1]):
            frames.append(json.loads(ws.recv(timeout=timeout)))
    reply = Reply(frames[-1])
    reply.frames, reply.request = frames, request
    return reply


def login(url: str, name: str, *, timeout: float = 10.0) -> Reply:
    """``/api/v1/login``: a new name gets ``USER CREATED`` first; the reply is the token frame."""
    return _exchange(url, LOGIN, P.login_request(name), timeout, more=is_user_created)


def find(url: str, token: str, n: int, *, timeout: float = 10.0) -> Reply:
    """``/api/v1/game/find``: join (or open) a lobby for ``n`` players."""
    return _exchange(url, FIND, P.find_request(token, n), timeout)


def hero(url: str, game: str, user: str, *, timeout: float = 10.0) -> Reply:
    """``/api/v1/game/hero``: the hero of ``user`` in ``game``."""
    return _exchange(url, HERO, P.hero_request(game, user), timeout)


def attack(url: str, game: str, user: str, enemy: str | None, *, timeout: float = 10.0) -> Reply:
    """``/api/v1/game/action``: ``user`` attacks ``enemy`` (None: "I see no enemy left")."""
    return _exchange(url, ACTION, P.action_request(game, user, enemy), timeout)


class Lobby:
    """``/api/v1/game/lobby``: a connection kept open; :meth:`next` returns the next
    frame the server pushes (START, USER'S TURN, COMPLETE, TIMED OUT)."""

    def __init__(self, url: str, game: str, user: str, *, timeout: float = 10.0):
        self.game, self.user, self.timeout = game, user, timeout
        self.frames: list[dict] = []
        self._cm = _open(url, LOBBY, timeout)
        self.ws = self._cm.__enter__()
        self.ws.send(json.dumps(P.lobby_request(game, user)))

    def next(self, timeout: float | None = None) -> dict:
        """The next pushed frame; raises ``TimeoutError`` if none comes within ``timeout`` s."""
        frame = json.loads(self.ws.recv(timeout=self.timeout if timeout is None else timeout))
        self.frames.append(frame)
        return frame

    def until(self, what: str, timeout: float | None = None) -> dict:
        """Read frames until one whose ``STATUS.GAME`` is ``what`` (each read bounded)."""
        while True:
            frame = self.next(timeout)
            status = frame.get("STATUS")
            if isinstance(status, dict) and status.get("GAME") == what:
                return frame

    def close(self) -> None:
        self._cm.__exit__(None, None, None)

    def __enter__(self) -> "Lobby":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Lobby game={self.game[:8]}… user={self.user[:8]}… frames={len(self.frames)}>"


# -- notebook display --------------------------------------------------------------------

# A row of panes that never draw over each other: a pane starts at its content's full
# width (flex-basis max-content), so two panes share a row only when both fit whole, and
# the second wraps below otherwise; a pane wider than the row alone shrinks to the row
# and scrolls inside itself.
_ROW = "display:flex;flex-wrap:wrap;gap:1em 2em;align-items:flex-start"
_PANE = "flex:1 1 max-content;min-width:0;max-width:100%;overflow-x:auto"
_CELL_WIDTH = 80  # characters of text in a displayed table cell


def _table_html(frame: pd.DataFrame, max_rows: int, **kwargs) -> str:
    """A DataFrame as HTML whose text cells are shortened by :func:`_brief`, not by
    pandas' ``max_colwidth`` (which cuts the end, where the key suffix is)."""
    def brief(value):
        return _brief(value, _CELL_WIDTH) if isinstance(value, str) else value

    frame = frame.map(brief)
    if not isinstance(frame.index, pd.MultiIndex):
        frame.index = frame.index.map(brief)
    with pd.option_context("display.max_colwidth", None):
        return frame.to_html(max_rows=max_rows, notebook=True, **kwargs)


def _html_of(value: Any, max_rows: int) -> str:
    if isinstance(value, pd.Series):
        value = value.to_frame()
    if isinstance(value, pd.DataFrame):
        return _table_html(value, max_rows)
    if isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, indent=1, ensure_ascii=False, default=str)
    else:
        text = str(value)
    return f"<pre style='white-space:pre-wrap;max-width:46em'>{html.escape(_short(text, 4000))}</pre>"


def _log_html(log: CommandLog, max_rows: int = 40, width: int = 90) -> str:
    table = log.table(width)
    note = f"<b>Redis commands: {len(log)}</b>"
    if table.empty:
        return note + "<p><i>none</i></p>"
    return note + _table_html(table, max_rows, index=False)


@dataclass
class _SideBySide:
    result: Any
    log: CommandLog | None
    title: str
    max_rows: int
    cli: str = ""

    def _repr_html_(self) -> str:
        left = (f"<div style='{_PANE}'><b>{html.escape(self.title)}</b>"
                f"{_html_of(self.result, self.max_rows)}</div>")
        right = ""
        if self.log is not None:
            cli = ""
            if self.cli:
                cli = ("<b>the same at a redis-cli prompt</b><pre style='white-space:pre-wrap'>"
                       f"{html.escape(self.cli)}</pre>")
            right = f"<div style='{_PANE}'>{cli}{_log_html(self.log, self.max_rows)}</div>"
        return f"<div style='{_ROW}'>{left}{right}</div>"

    def __repr__(self) -> str:
        text = f"{self.title}:\n{self.result!r}"
        if self.cli:
            text += f"\n\nthe same at a redis-cli prompt:\n{self.cli}"
        if self.log is not None:
            text += f"\n\nRedis commands ({len(self.log)}):\n{self.log.table().to_string(index=False)}"
        return text


def side_by_side(result: Any, log: CommandLog | None = None, *, title: str = "result", cli: bool | int = False,
                 max_rows: int = 40) -> _SideBySide:
    """What :func:`show` displays: ``result`` beside its command table, or below it when
    the two do not fit side by side (an object with ``_repr_html_`` and a text ``repr``)."""
    lines = ""
    if cli and log is not None:
        lines = log.redis_cli(None if cli is True else int(cli))  # an int overrides the port shown
    return _SideBySide(result, log, title, max_rows, lines)


def show(result: Any, log: CommandLog | None = None, *, title: str = "result", cli: bool | int = False,
         max_rows: int = 40) -> None:
    """Display ``result`` and the table of the Redis commands that produced it, side by side.

    ``cli=True`` adds the notebook's own commands as lines typed at a redis-cli prompt."""
    from IPython.display import display  # noqa: PLC0415 (notebooks only)

    display(side_by_side(result, log, title=title, cli=cli, max_rows=max_rows))


# -- exercises ---------------------------------------------------------------------------------

def _same(answer: Any, expected: Any) -> bool:
    if callable(expected):
        try:
            return bool(expected(answer))
        except Exception:  # an answer of the wrong kind (a name where an id goes): not yet, no traceback
            return False
    if isinstance(expected, float) or isinstance(answer, float):
        try:
            return math.isclose(float(answer), float(expected), rel_tol=1e-6, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    if isinstance(expected, (pd.DataFrame, pd.Series)):
        return isinstance(answer, type(expected)) and expected.equals(answer)
    if isinstance(expected, (set, frozenset)) and isinstance(answer, (list, tuple, set, frozenset)):
        return set(answer) == expected
    try:
        return bool(answer == expected)
    except (TypeError, ValueError):
        return False


def check(answer: Any, expected: Any, hint: str = "") -> bool:
    """Say whether a "Try it yourself" answer is right; ``expected`` may be a predicate.

    An answer still at ``...`` (the placeholder) is simply "not yet". The notebooks pass
    ``expected[n]`` from a cell whose code is collapsed, so an exercise's cell does not
    show its answer."""
    right = answer is not Ellipsis and _same(answer, expected)
    print("✅ Right" if right else f"❌ Not yet: {hint}" if hint else "❌ Not yet")
    return right
