"""The pod's probes on PROBE_PORT (scorer.probes): answered within their timeout whatever the
serving port is going through, and still telling a wedged worker from a busy one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from bench import load
from scorer import probes
from tests.apps.modelfolder import write_model_folder
from tests.apps.scorer.test_pressure import PROBE_TIMEOUT, worker_pids


def beat(directory, pid: int, at: float, status: int = 200, detail: str | None = None) -> None:
    doc = {"status": "ready", "build": "3"} if status == 200 else {"detail": detail}
    (directory / f"{pid}.json").write_text(probes.json.dumps({"at": at, "status": status, "doc": doc}))


def a_dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_a_worker_whose_loop_stopped_is_not_alive_and_a_dead_one_is_forgotten(tmp_path):
    now = time.monotonic()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        beat(tmp_path, os.getpid(), now - 0.5)
        beat(tmp_path, a_dead_pid(), now - 300)  # killed: uvicorn replaces it, no reason to restart the pod
        assert probes.liveness(probes.workers(tmp_path), 10, now) == (200, {"status": "alive"})
        assert sorted(p.name for p in tmp_path.iterdir()) == [f"{os.getpid()}.json"]
        beat(tmp_path, sleeper.pid, now - 12)  # running, but its loop has not beaten for 12 s
        status, doc = probes.liveness(probes.workers(tmp_path), 10, now)
        assert status == 503 and f"worker {sleeper.pid}" in doc["detail"] and "12.0 s" in doc["detail"]
        assert probes.readiness(probes.workers(tmp_path), 2, 10, now)[0] == 503
    finally:
        sleeper.kill()
        sleeper.wait()


def test_ready_only_when_every_worker_has_its_model(tmp_path):
    now = time.monotonic()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        beat(tmp_path, os.getpid(), now)
        assert probes.readiness(probes.workers(tmp_path), 2, 10, now) == (
            503,
            {"detail": "starting: 1 of 2 workers running"},
        )
        starting = "no model loaded: starting: the model is not loaded yet"
        beat(tmp_path, sleeper.pid, now, 503, starting)
        status, doc = probes.readiness(probes.workers(tmp_path), 2, 10, now)
        assert status == 503 and doc["detail"] == f"worker {sleeper.pid}: {starting}"
        beat(tmp_path, sleeper.pid, now)
        ready = probes.readiness(probes.workers(tmp_path), 2, 10, now)
        assert ready == (200, {"status": "ready", "build": "3"})
    finally:
        sleeper.kill()
        sleeper.wait()


def probe(port: int, path: str) -> tuple[int, float]:
    """One probe as the kubelet sends it: a fresh connection, its timeout; (status, seconds)."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    return int(reply.split(b" ", 2)[1]), time.perf_counter() - started


def test_probes_answer_at_once_while_the_serving_port_is_saturated(tmp_path, start_scorer):
    model = write_model_folder(tmp_path / "3", "3", n_users=500, n_items=1200, per_user=5, seed=2)
    scorer = start_scorer(model.path, "3", WORKERS="1")
    scorer.wait()
    scorer.wait_probe("/readyz")
    timed: list[tuple[int, float]] = []
    done = threading.Event()

    def probing():
        while not done.wait(0.1):
            for path in ("/healthz", "/readyz"):
                timed.append(probe(scorer.probe_port, path))

    prober = threading.Thread(target=probing)
    prober.start()
    try:  # 64 connections of requests on the event loop, and batches of 500,000 items in the scoring thread
        heavy = threading.Thread(target=load.heavy, args=(scorer.port, model.user_ids, scorer.process.pid, 4))
        heavy.start()
        soaked = load.soak(scorer.port, model.path, scorer.process.pid, 2, 3.0, concurrency=64)
        heavy.join(timeout=300)
    finally:
        done.set()
        prober.join()
    assert sum(w["requests"] for w in soaked["windows"]) > 500
    assert len(timed) >= 20 and {status for status, _ in timed} == {200}
    assert max(seconds for _, seconds in timed) < PROBE_TIMEOUT, sorted(timed)[-5:]


@pytest.mark.parametrize("count", [1, 2])
def test_a_wedged_worker_fails_liveness_while_the_probes_still_answer(tmp_path, start_scorer, count):
    model = write_model_folder(tmp_path / "4", "4", n_users=50, n_items=60, seed=1)
    scorer = start_scorer(model.path, "4", WORKERS=str(count), LIVENESS_STALL_SECONDS="1")
    scorer.wait()
    scorer.wait_probe("/readyz")
    workers = worker_pids(scorer.process.pid) if count > 1 else [scorer.process.pid]
    assert len(workers) == count, workers
    for pid in workers:  # every worker wedged: the serving port takes connections and answers none
        os.kill(pid, signal.SIGSTOP)
    try:
        with socket.create_connection(("127.0.0.1", scorer.port), timeout=PROBE_TIMEOUT) as stuck:
            stuck.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            try:
                answer = stuck.recv(100)
            except TimeoutError:
                answer = None
        assert answer is None, answer
        deadline = time.monotonic() + 20
        while (healthz := probe(scorer.probe_port, "/healthz"))[0] == 200:
            assert healthz[1] < PROBE_TIMEOUT and time.monotonic() < deadline
            time.sleep(0.1)
        status, seconds = healthz
        assert status == 503 and seconds < PROBE_TIMEOUT
        detail = httpx.get(scorer.probe_url + "/healthz").json()["detail"]
        assert "has not run for" in detail and any(f"worker {pid}" in detail for pid in workers), detail
        assert probe(scorer.probe_port, "/readyz")[0] == 503
    finally:
        for pid in workers:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:  # uvicorn killed it meanwhile (it stopped answering pings)
                pass
    scorer.wait_probe("/healthz")  # going again (or replaced by uvicorn): alive and ready
    scorer.wait_probe("/readyz")
