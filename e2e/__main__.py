"""python -m e2e [suite ...]: run the e2e suites (all by default) and write .e2e/report.json."""

from __future__ import annotations

import importlib
import sys

from e2e.report import Report

SUITES = ("containers", "engine")


def main(argv: list[str]) -> int:
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
