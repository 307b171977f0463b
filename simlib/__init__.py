"""Super Hero Combat data simulator: bots fight over WebSockets, every step lands in Redis.

The public surface is small; import the parts from their modules:

* ``simlib.config.Settings``: settings from the environment and ``.env``.
* ``simlib.runner.simulate``: a whole run (embedded Redis, roster, workers, servers, bots).
* ``simlib.launch.start_server/start_worker/start_players``: parts as threads or
  processes, each with a handle (``stop()``, bounded ``join()``).
* ``simlib.explore``: DataFrames and plots for the notebooks.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "Settings", "simulate"]


def __getattr__(name):  # lazy: importing simlib must stay cheap for child processes
    if name == "Settings":
        from .config import Settings

        return Settings
    if name == "simulate":
        from .runner import simulate

        return simulate
    raise AttributeError(name)
