"""The pod's probes on their own port (`PROBE_PORT`), answered by the prober: a small process
`python -m scorer` forks before it imports anything heavy or serves anything, so a probe never
queues behind the requests of the serving port (nor waits for a worker's GIL), however many
there are. It ends with the process that forked it.

Each worker's event loop writes a heartbeat file (its readiness, and when its loop last ran) into
a directory of this run every `beat_seconds`, and at once when its model is loaded or refused.
The listener reads them for each probe:

- `/healthz` 200 while every running worker's loop has run within `LIVENESS_STALL_SECONDS`: a
  worker wedged longer than that makes it 503, naming the worker, and the kubelet restarts the pod.
  A worker that died is uvicorn's to replace, not a failed liveness.
- `/readyz` 200 only when all `WORKERS` workers run and every one has a verified model loaded:
  a worker uvicorn has just restarted makes it 503 "starting" until its model is in (it no longer
  says ready for the pod while one of its workers would still make requests wait).

`/healthz` and `/readyz` on the serving port stay as they were: the answering worker's own view.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socketserver
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from scorer.contract import ALIVE
from scorer.settings import Settings

HEARTBEATS_ENV = "SCORER_HEARTBEATS"  # the heartbeat directory, set by `python -m scorer` for its workers
_SUFFIX = ".json"


class Heartbeat:
    """A worker's heartbeat file: `<directory>/<pid>.json`, {"at": monotonic, "status", "doc"}."""

    def __init__(self, directory: str | Path, readiness, beat_seconds: float):
        self._path = Path(directory) / f"{os.getpid()}{_SUFFIX}"
        self._readiness = readiness  # () -> (status, doc), the worker's own /readyz
        self._beat_seconds = beat_seconds
        self._timer = None

    def write(self) -> None:
        """Safe from any thread: each writer replaces the file with a whole one of its own."""
        status, doc = self._readiness()
        text = json.dumps({"at": time.monotonic(), "status": status, "doc": doc})
        scratch = self._path.with_name(f".{self._path.name}.{threading.get_ident()}")
        scratch.write_text(text, encoding="utf-8")
        os.replace(scratch, self._path)

    def start(self, loop) -> None:
        """Beat from the event loop itself: a loop that stops turning stops beating."""

        def beat():
            self.write()
            self._timer = loop.call_later(self._beat_seconds, beat)

        beat()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._path.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    """The process exists and is not a zombie waiting for uvicorn to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def workers(directory: str | Path) -> dict[int, dict]:
    """The heartbeats of the running workers; those of dead ones are removed."""
    found = {}
    for path in Path(directory).glob(f"*{_SUFFIX}"):
        if path.name.startswith("."):
            continue
        pid = int(path.stem)
        if not _running(pid):
            path.unlink(missing_ok=True)
            continue
        try:
            found[pid] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # replaced or removed meanwhile
            continue
    return found


def liveness(beats: dict[int, dict], stall_seconds: float, now: float) -> tuple[int, dict]:
    for pid, beat in sorted(beats.items()):
        silent = now - beat["at"]
        if silent > stall_seconds:
            return 503, {
                "detail": f"worker {pid}: its event loop has not run for {silent:.1f} s "
                f"(LIVENESS_STALL_SECONDS={stall_seconds:g})"
            }
    return 200, ALIVE


def readiness(beats: dict[int, dict], expected: int, stall_seconds: float, now: float) -> tuple[int, dict]:
    status, doc = liveness(beats, stall_seconds, now)  # a wedged worker would not answer either
    if status != 200:
        return status, doc
    for pid, beat in sorted(beats.items()):
        if beat["status"] != 200:
            return beat["status"], {"detail": f"worker {pid}: {beat['doc'].get('detail')}"}
    if len(beats) < expected:
        return 503, {"detail": f"starting: {len(beats)} of {expected} workers running"}
    return 200, next(iter(beats.values()))["doc"]


class ProbeServer:
    """The prober's listener: its own socket, one short-lived thread per probe."""

    def __init__(self, settings: Settings):
        self.directory = tempfile.mkdtemp(prefix="scorer-heartbeats-")
        directory, build = self.directory, settings.build
        expected_workers, stall_seconds = settings.workers, settings.liveness_stall_seconds

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 2.0  # a client that sends nothing does not keep its thread

            def do_GET(self):
                beats = workers(directory)
                if self.path == "/healthz":
                    status, doc = liveness(beats, stall_seconds, time.monotonic())
                elif self.path == "/readyz":
                    status, doc = readiness(beats, expected_workers, stall_seconds, time.monotonic())
                else:
                    status, doc = 404, {"detail": "the probe port answers GET /healthz and /readyz"}
                body = json.dumps(doc, separators=(",", ":")).encode()
                self.send_response_only(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Model-Build", build)
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):  # the probes are not news
                pass

        try:
            self._server = _Server((settings.host, settings.probe_port), Handler)
        except OSError:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        self._pid: int | None = None

    def fork(self) -> None:
        """Answer the probes in a child process until this one is gone."""
        parent = os.getpid()
        self._pid = os.fork()
        if self._pid == 0:
            try:
                threading.Thread(target=self._server.serve_forever, daemon=True).start()
                while os.getppid() == parent:  # reparented: the scorer has gone, killed or not
                    time.sleep(0.5)
            finally:
                os._exit(0)
        self._server.server_close()  # the prober alone listens

    def close(self) -> None:
        if self._pid:
            try:
                os.kill(self._pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            os.waitpid(self._pid, 0)
        shutil.rmtree(self.directory, ignore_errors=True)


class _Server(socketserver.ThreadingTCPServer):
    # Not http.server's HTTPServer: its bind looks the host's name up (socket.getfqdn), a DNS
    # round trip at start for nothing.
    allow_reuse_address = True
    daemon_threads = True
