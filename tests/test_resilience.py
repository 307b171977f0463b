"""The server keeps games going when its event subscription is cut."""

from __future__ import annotations

import logging
import threading

from simlib.launch import start_players
from simlib.player import Recorder


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_games_finish_after_the_event_subscription_is_killed(game_server, r, keys):
    """CLIENT KILL of the server's one pub/sub connection mid-run: the server resubscribes, no game hangs."""
    seen = _Records()
    lobby_log = logging.getLogger("lib.server.lobby")
    lobby_log.addHandler(seen)
    try:
        first_game = threading.Event()
        recorder = Recorder(on_game=lambda row: first_game.set())
        bots = start_players(game_server.url, 6, 6, seed=3, recorder=recorder)
        assert first_game.wait(30), "no game finished"
        # the game server subscribes once, to the events channel; nothing else here subscribes
        assert r.pubsub_numsub(keys.events_channel) == [(keys.events_channel, 1)]
        killed = r.client_kill_filter(_type="pubsub")
        assert killed == 1
        assert bots.join(60), "bots still waiting: a lobby missed its events"
        assert recorder.errors == []
        # a lobby may time out: near the end, too few bots may still want a game of its size
        assert len(recorder.games) == 36 and all(g["outcome"] in ("COMPLETE", "TIMED OUT") for g in recorder.games)
        assert any(m.startswith("Event subscription lost") for m in seen.messages)  # the path was taken
    finally:
        lobby_log.removeHandler(seen)
