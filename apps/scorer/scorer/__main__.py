"""`python -m scorer`: check the environment, fork the prober (scorer.probes: the kubelet's probes
on PROBE_PORT, in a process of their own), then serve on PORT with uvicorn (WORKERS processes).

SIGTERM (Kubernetes stopping the pod) is uvicorn's graceful shutdown: stop accepting, finish the
requests in flight (each bounded by REQUEST_TIMEOUT_SECONDS to arrive), close idle keep-alive
connections, exit 0; with WORKERS > 1 the parent passes it on to every worker and waits for them.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile

import modelshare
from scorer.probes import HEARTBEATS_ENV, ProbeServer
from scorer.settings import FEEDBACK_TABLE_ENV, current


def main() -> int:
    try:
        settings = current()
    except modelshare.ConfigError as exc:
        modelshare.log_event("scorer", "config-error", error=str(exc))
        return 2
    try:
        probes = ProbeServer(settings)
    except OSError as exc:
        error = f"cannot listen on PROBE_PORT {settings.probe_port}: {exc}"
        modelshare.log_event("scorer", "config-error", error=error)
        return 2
    os.environ[HEARTBEATS_ENV] = probes.directory  # the workers (spawned processes too) beat there
    probes.fork()  # now, while this process is small and has one thread
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
    # The workers' shared table of feedback events already counted (scorer.feedback), this run's own.
    feedback_dir = tempfile.mkdtemp(prefix="scorer-feedback-")
    os.environ[FEEDBACK_TABLE_ENV] = os.path.join(feedback_dir, "seen")
    modelshare.log_event(
        "scorer",
        "starting",
        build=settings.build,
        modelfolder=settings.modelfolder,
        port=settings.port,
        probe_port=settings.probe_port,
        workers=settings.workers,
    )
    # uvicorn raises the stop signal again once it has shut down gracefully, for its default
    # action to end the process; after a drain that is a clean exit: 0, temporary files removed.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: None)
    try:
        uvicorn.run(
            "scorer.api:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop="uvloop",
            http="scorer.server:Protocol",  # httptools, with a head size limit and a request timeout
            headers=[("X-Model-Build", settings.build)],  # on every response, the server's own too
            lifespan="on",
            access_log=False,
            log_level="warning",
            server_header=False,
        )
    finally:
        probes.close()
        shutil.rmtree(feedback_dir, ignore_errors=True)
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
