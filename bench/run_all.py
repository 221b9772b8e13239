"""Every benchmark of docs/en/benchmarks.md, one after the other, each on its own fresh server.

python -m bench.run_all                 # the numbers of the doc (~10 minutes on 2 cores)
python -m bench.run_all --quick         # smoke run (~1 minute)
python -m bench.run_all --out results.md
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import claims, projects, victims
from bench.common import run_on_fresh_server

# name → (quick?) → its tables, each on a server of its own
BENCHMARKS: dict[str, Callable[[bool], str]] = {
    "claims": lambda quick: run_on_fresh_server(
        claims.run, claims.render, claims.QUICK if quick else claims.Settings()
    ),
    "victims": lambda quick: run_on_fresh_server(
        victims.run, victims.render, victims.QUICK if quick else victims.Settings()
    ),
    "projects": lambda quick: run_on_fresh_server(
        projects.run, projects.render, projects.QUICK if quick else projects.Settings()
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run of each")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    parser.add_argument(
        "--only", choices=sorted(BENCHMARKS), action="append", help="run only these (repeatable)"
    )
    args = parser.parse_args(argv)
    sections: list[str] = []
    for name in args.only or list(BENCHMARKS):
        started = time.perf_counter()
        text = BENCHMARKS[name](args.quick)
        text += f"\n_{name}: {time.perf_counter() - started:.0f} s_\n"
        print(text, flush=True)
        sections.append(text)
    if args.out:
        args.out.write_text("\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
