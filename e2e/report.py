"""The e2e report: every scenario with pass/fail, seconds and what it measured, as `.e2e/report.json`.

Written after each scenario, so a run cut short still shows how far it got.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".e2e"


class Report:
    def __init__(self, path: Path = OUT / "report.json"):
        self.path = path
        self.scenarios: list[dict] = []
        self.facts: dict = {}  # suite-level figures: image sizes, toolchain location, build times
        path.parent.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def scenario(self, suite: str, name: str):
        """Time one scenario; an exception fails it (the run goes on), its details stay in the report."""
        record = {"suite": suite, "name": name, "pass": False, "seconds": None, "details": {}}
        self.scenarios.append(record)
        print(f"e2e: {suite}: {name} ...", flush=True)
        start = time.monotonic()
        try:
            yield record["details"]
            record["pass"] = True
        except Exception as error:  # noqa: BLE001 - a failed scenario is reported, not raised
            record["error"] = f"{type(error).__name__}: {error}"
            traceback.print_exc(file=sys.stdout)
        finally:
            record["seconds"] = round(time.monotonic() - start, 2)
            print(
                f"e2e: {suite}: {name}: {'pass' if record['pass'] else 'FAIL'} ({record['seconds']} s)",
                flush=True,
            )
            self.write()

    def write(self) -> None:
        body = {"scenarios": self.scenarios, **self.facts}
        self.path.write_text(json.dumps(body, indent=2, sort_keys=False) + "\n")

    @property
    def failed(self) -> int:
        return sum(not s["pass"] for s in self.scenarios)
