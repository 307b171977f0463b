"""The event loop every part runs on: uvloop where it is installed, else asyncio's.

uvloop's transports cost a fraction of asyncio's per socket write, and a game server
writes one small frame per notice; the parts behave the same on either loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

__all__ = ["run", "loop_name"]

try:
    import uvloop
except ImportError:  # Windows, or a build without it
    uvloop = None


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """``asyncio.run`` on the fastest loop available."""
    if uvloop is None:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def loop_name() -> str:
    return "uvloop" if uvloop is not None else "asyncio"
