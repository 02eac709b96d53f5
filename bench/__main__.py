"""`python -m bench [NAME ...]`: run the named benchmarks (default: all) and record their figures."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from bench.report import record

SKIP = {"report", "trainer_runs"}  # helpers of the benchmarks, not benchmarks


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(
        m.name for m in pkgutil.iter_modules([str(here)]) if m.name not in SKIP and not m.name.startswith("_")
    )


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {available()}", file=sys.stderr)
        return 2
    for name in names:
        print(f"== bench {name}", flush=True)
        markdown = importlib.import_module(f"bench.{name}").main()
        record(name, markdown)
        print(markdown, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
