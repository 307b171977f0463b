"""Regenerate the project's default roster, ``data/heroes.json``.

The file is committed so that ``simlib build-db`` works with no network and no token;
it is written exactly as ``build-db pull`` writes a downloaded roster, so the two are
interchangeable. Run it again after changing the generator in ``simlib/roster.py``.
"""

from __future__ import annotations

import argparse
import statistics

from simlib.roster import ROSTER_PATH, generate_roster, hits_to_kill, write_roster


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=600, help="number of heroes (default 600)")
    parser.add_argument("--seed", type=int, default=2023, help="generator seed (default 2023)")
    parser.add_argument("--out", default=str(ROSTER_PATH), help=f"output file (default {ROSTER_PATH})")
    args = parser.parse_args(argv)

    heroes = generate_roster(args.count, args.seed)
    path = write_roster(heroes, args.out)
    hits = hits_to_kill(heroes)
    print(f"wrote {len(heroes)} heroes to {path} ({path.stat().st_size // 1024} KB); hits-to-kill "
          f"median {statistics.median_low(hits)}, 99th percentile {hits[int(0.99 * len(hits))]}")


if __name__ == "__main__":
    main()
