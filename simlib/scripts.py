"""The Lua scripts every state change goes through, as Redis will run them.

Each script in ``simlib/lua`` is sent after a header made here: the key builders of
:meth:`simlib.keys.Keyspace.lua` (``K.status(g)``, ...) and the status strings of
:class:`simlib.game.STATUS` (``STATUS.WAITING_LOBBY``, ...), then ``lua/_prelude.lua``,
the helpers several scripts share. So a key name or a status is written once, in
Python, and a cluster's hash-tagged names reach the scripts by the same road.
"""

from __future__ import annotations

import functools
from importlib import resources

from .game import STATUS
from .keys import Keyspace, _lua_string

__all__ = ["load_script", "SCRIPTS"]

#: Every script the game server (and the deadline watcher) runs.
SCRIPTS = ("login", "logout", "join", "action", "waiting", "quit", "expire", "due",
           "cluster_seat", "cluster_join", "cluster_close")


def _statuses() -> str:
    names = [n for n in vars(STATUS) if n.isupper() and isinstance(getattr(STATUS, n), str)]
    return "local STATUS = {" + ", ".join(f"{n} = {_lua_string(getattr(STATUS, n))}" for n in names) + "}\n"


@functools.cache
def load_script(name: str, cluster: bool = False) -> str:
    """A script's source as sent to Redis: the generated header, the shared prelude, the script."""
    lua = resources.files("simlib").joinpath("lua")
    return (Keyspace(cluster=cluster).lua() + _statuses() + lua.joinpath("_prelude.lua").read_text()
            + lua.joinpath(f"{name}.lua").read_text())
