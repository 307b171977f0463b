"""The event loop every part runs on: uvloop where it is installed, else asyncio's.

uvloop's transports cost a fraction of asyncio's per socket write, and a game server
writes one small frame per notice; the parts behave the same on either loop.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any

__all__ = ["run", "tune_gc"]

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


def tune_gc() -> None:
    """For a process that serves or plays for a long time (a game server, a bot process,
    the benchmark): move what start-up built out of the collector's way (``gc.freeze``),
    and look for cycles after 50,000 new objects rather than 700. Measured on a server
    with 1,000 v2 players: the default settings spent about 1.5 s of 25 in collections
    that found no garbage at all, with pauses up to 110 ms; tuned, 2 collections."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
