"""`make e2e`: the release against real parts (Docker engine, Pulumi engine, Kubernetes API server).

Each suite module (`containers`, `engine`) exposes `run(report)`; `python -m e2e` runs them in
order and writes `.e2e/report.json`. Unlike `make test`, these need root, a Docker engine and a
built toolchain; they start what they need and clean up after themselves.
"""
