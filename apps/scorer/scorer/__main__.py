"""`python -m scorer`: check the environment, then serve with uvicorn (WORKERS processes)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import modelshare
from scorer.settings import from_env


def main() -> int:
    try:
        settings = from_env()
    except modelshare.ConfigError as exc:
        modelshare.log_event("scorer", "config-error", error=str(exc))
        return 2
    # One BLAS thread per process: a request's product is small, and BLAS threads fighting over
    # the cores with the event loop and the other workers cut throughput several-fold (measured).
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    import uvicorn  # after the check: a misconfigured pod fails fast

    metrics_dir = None
    if settings.workers > 1:
        # Prometheus multiprocess mode: the workers' samples meet in this run's own directory,
        # so figures of an earlier run (or another process) can never leak in.
        metrics_dir = tempfile.mkdtemp(prefix="scorer-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    else:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    modelshare.log_event(
        "scorer",
        "starting",
        build=settings.build,
        modelfolder=settings.modelfolder,
        port=settings.port,
        workers=settings.workers,
    )
    try:
        uvicorn.run(
            "scorer.api:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level="warning",
            server_header=False,
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
