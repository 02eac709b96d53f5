"""python -m e2e.toolchain: build the e2e toolchain (or find it cached) and print where bin/ is."""

import json

from e2e.toolchain import ensure

facts = ensure()
print(json.dumps({k: facts[k] for k in ("bin", "key", "cold_seconds", "this_run_seconds")}, indent=2))
