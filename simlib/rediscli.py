"""One Redis command with its reply printed as redis-cli prints it (``simlib cli``).

redis-cli prints a reply in one of two ways. To a terminal it shows each reply's type:
``(integer) 3``, ``"quoted"`` strings, ``1) …`` for arrays, ``(nil)``, ``(error) …``.
Into a pipe or a file it prints bare values, one per line: that is what
``$(redis-cli …)`` hands a shell. Both ways need to know which kind of reply Redis sent
(a status reply, ``+OK`` or ``+PONG``, prints unquoted where a string is quoted; an
error keeps its code, ``ERR …``), and redis-py forgets that: its parser turns both
kinds of string into the same bytes, and its reply callbacks turn ``PONG`` into
``True``. So the command goes over a connection whose parser marks status and error
replies, and no reply callback runs.

Like ``redis-cli -u URL`` without ``-c``, the command goes to the server the URL
names: on a cluster node that does not hold the key, the reply is ``MOVED …``.
"""

from __future__ import annotations

import redis
from redis._parsers.resp2 import _RESP2Parser

__all__ = ["Status", "ErrorReply", "run_command", "terminal", "piped"]


class Status(bytes):
    """A status reply (``+OK``, ``+PONG``): printed as it is, never quoted."""


class ErrorReply(bytes):
    """An error reply, code included (``ERR unknown command …``)."""


class _KindParser(_RESP2Parser):
    """redis-py's RESP2 parser, except that status and error replies come back marked,
    at any depth (a transaction's replies hold both)."""

    def _read_response(self, *args, **kwargs):
        start = self._buffer.get_pos()
        line = self._buffer.readline(**{k: v for k, v in kwargs.items() if k == "timeout"})
        if line[:1] == b"+":
            return Status(line[1:])
        if line[:1] == b"-":
            return ErrorReply(line[1:])
        self._buffer.rewind(start)
        return super()._read_response(*args, **kwargs)


def run_command(url: str, words: list[str], timeout: float = 10.0):
    """Send ``words`` as one command to the server at ``url`` and return its reply: bytes
    (:class:`Status` and :class:`ErrorReply` marked), ints, None, lists of these.
    A server that cannot be reached raises ``redis.ConnectionError``."""
    client = redis.Redis.from_url(url, parser_class=_KindParser, protocol=2, socket_connect_timeout=timeout)
    client.response_callbacks.clear()  # the reply as Redis sent it
    try:
        return client.execute_command(*words)
    finally:
        client.close()


def _quoted(text: bytes) -> str:
    """A string as redis-cli quotes it (its ``sdscatrepr``): printable ASCII as it is,
    ``\\"`` ``\\\\`` ``\\n`` ``\\r`` ``\\t`` ``\\a`` ``\\b``, every other byte ``\\xHH``."""
    escapes = {0x5C: "\\\\", 0x22: '\\"', 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x07: "\\a", 0x08: "\\b"}
    return '"' + "".join(escapes.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}") for b in text) + '"'


def terminal(reply, prefix: str = "") -> str:
    """The reply as redis-cli prints it to a terminal (no final newline)."""
    if isinstance(reply, ErrorReply):
        return "(error) " + reply.decode("utf-8", "replace")
    if isinstance(reply, Status):
        return reply.decode("utf-8", "replace")
    if reply is None:
        return "(nil)"
    if isinstance(reply, int):
        return f"(integer) {reply}"
    if isinstance(reply, list):
        if not reply:
            return "(empty array)"
        width = len(str(len(reply)))
        inner = prefix + " " * (width + 2)  # nested arrays line up under their parent's items
        return "\n".join(f"{prefix if i > 1 else ''}{i:>{width}}) {terminal(item, inner)}"
                         for i, item in enumerate(reply, 1))
    return _quoted(reply)


def piped(reply) -> bytes:
    """The reply as redis-cli prints it into a pipe (no final newline): bare values one
    per line, nothing for nil, an error's text followed by an empty line."""
    if reply is None:
        return b""
    if isinstance(reply, ErrorReply):
        return bytes(reply) + b"\n"
    if isinstance(reply, int):
        return str(reply).encode()
    if isinstance(reply, list):
        return b"\n".join(piped(item) for item in reply)
    return bytes(reply)
