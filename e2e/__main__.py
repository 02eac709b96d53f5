"""python -m e2e [suite ...]: run the e2e suites (all by default) and write .e2e/report.json."""

from __future__ import annotations

import importlib
import signal
import sys

from e2e.report import Report

SUITES = ("containers", "engine")


def exit_on_sigterm() -> None:
    """SIGTERM (a CI timeout, `kill`) exits like Ctrl-C does, through every `finally`: the suites
    stop what they started there. Python's default would end the process on the spot."""
    signal.signal(signal.SIGTERM, lambda number, _frame: sys.exit(128 + number))


def main(argv: list[str]) -> int:
    exit_on_sigterm()
    names = argv or list(SUITES)
    unknown = sorted(set(names) - set(SUITES))
    if unknown:
        print(f"e2e: unknown suite(s) {unknown}; choose from {list(SUITES)}", file=sys.stderr)
        return 2
    report = Report()
    for name in names:
        importlib.import_module(f"e2e.{name}").run(report)
    report.write()
    passed = len(report.scenarios) - report.failed
    print(f"e2e: {passed} passed, {report.failed} failed")
    return 1 if report.failed or not report.scenarios else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
