"""The harness's own processes: started in a session of their own, so that ending one ends its
children too, and ended with SIGTERM, then SIGKILL after a grace period. The cluster's control plane
(e2e/cluster.py) and the node's containerd and kubelet (e2e/node.py) are started through here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Self


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(argv: list[str], log_path: Path, cwd: Path) -> subprocess.Popen:
    """A process in a session of its own (so that it ends with its children), logging to `log_path`."""
    with open(log_path, "w") as log:
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=cwd,
        )


def terminate(processes: list[subprocess.Popen], grace: float = 10) -> None:
    """SIGTERM to each process group, then SIGKILL to those still running after `grace` seconds."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=grace)


class Started:
    """A context manager for what the harness starts: start() on the way in, stop() on the way
    out, and stop() too when start() fails half-way (whatever it had started then ends)."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()
