"""The scorer under pressure, as a pod lives it: probes answered within their timeout while the
heaviest batches run, worker processes killed and restarted, SIGTERM in the middle of requests,
and the worker count taken from the CPU it is given."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx

import modelshare
from bench import load
from modelshare import cpus
from tests.apps.modelfolder import write_model_folder
from tests.apps.scorer.test_edges import read_response

PROBE_TIMEOUT = 2.0  # the Deployment's liveness and readiness timeoutSeconds (components/release_spec.py)


def test_probes_answer_within_their_timeout_while_the_heaviest_batches_run(tmp_path, start_scorer):
    model = write_model_folder(tmp_path / "7", "7", n_users=500, n_items=1200, per_user=5, seed=2)
    scorer = start_scorer(model.path, "7", WORKERS="1")
    scorer.wait()
    run = load.heavy(scorer.port, model.user_ids, scorer.process.pid, batches=4)  # 500,000 items each
    assert [status for status, _ in run["answers"]] == [200] * 4
    probes = run["probes"]
    assert len(probes) >= 10 and None not in probes
    assert max(probes) < PROBE_TIMEOUT / 2, sorted(probes)[-5:]
    # and the answers are whole: 1200 items, 5 seen each, so every user gets 1000
    response = scorer.client.post("/recommendations", json={"user_ids": model.user_ids, "k": 1000})
    assert {len(result["items"]) for result in response.json()["results"]} == {1000}


def worker_pids(parent: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True)
    pids = [int(pid) for pid in out.stdout.split()]
    workers = []
    for pid in pids:
        try:  # beside the workers uvicorn spawns: the prober, maybe a multiprocessing resource tracker
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.append(pid)
        except FileNotFoundError:  # a killed worker gone since ps listed it
            pass
    return workers


def test_a_restarted_worker_waits_for_its_model_instead_of_answering_503(tmp_path, start_scorer):
    model = write_model_folder(tmp_path / "8", "8", n_users=200, n_items=300, seed=4, complete=False)
    # A model that takes a while to verify (512 MB of zeros to checksum, sparse on disk): longer
    # than a new worker takes to import FastAPI and answer, so a worker that did not wait for it
    # would answer 503 "starting".
    with open(model.path / "model" / "padding.bin", "wb") as padding:
        padding.truncate(512 * 2**20)
    modelshare.make_manifest(model.path, build="8")
    modelshare.mark_complete(model.path, "8")
    scorer = start_scorer(model.path, "8", WORKERS="2")
    scorer.wait()
    statuses, transport_errors = [], []
    stop = threading.Event()

    def hammer():
        with httpx.Client(base_url=scorer.url, timeout=30) as client:
            while not stop.is_set():
                try:  # a fresh connection each time, so the new workers get them as soon as they listen
                    response = client.get("/recommendations/u3", headers={"connection": "close"})
                    statuses.append((time.monotonic(), response.status_code))
                except httpx.TransportError as exc:
                    transport_errors.append(exc)

    probed: list[tuple[float, int]] = []  # the kubelet's view: the probe port's /readyz

    def probe_readiness():
        with httpx.Client(base_url=scorer.probe_url, timeout=PROBE_TIMEOUT) as client:
            while not stop.wait(0.05):
                probed.append((time.monotonic(), client.get("/readyz").status_code))

    threads = [threading.Thread(target=hammer) for _ in range(4)] + [threading.Thread(target=probe_readiness)]
    for thread in threads:
        thread.start()
    first_kill = None
    try:
        for _ in range(2):  # kill every worker: uvicorn starts new ones, which alone take requests then
            time.sleep(1.0)
            workers = worker_pids(scorer.process.pid)
            assert len(workers) == 2, workers
            first_kill = first_kill or time.monotonic()
            for pid in workers:
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while len(set(worker_pids(scorer.process.pid)) - set(workers)) < 2:
                assert time.monotonic() < deadline, "uvicorn started no new workers"
                time.sleep(0.05)
        time.sleep(2.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    codes = [status for _, status in statuses]
    assert sum(answered > first_kill for answered, _ in statuses) >= 4  # answered by the new workers
    assert set(codes) == {200}, {s: codes.count(s) for s in set(codes)}
    # a request a killed worker had already accepted dies with it: at most one per thread and kill
    assert len(transport_errors) <= 2 * 4, transport_errors
    # while the new workers load their model the pod is not ready (no sibling says otherwise)...
    assert any(at > first_kill and status == 503 for at, status in probed), probed
    assert scorer.wait_probe("/readyz").json() == {"status": "ready", "build": "8"}  # ...then it is


def test_sigterm_drains_requests_in_flight_then_exits_0(tmp_path, start_scorer):
    model = write_model_folder(tmp_path / "9", "9", n_users=50, n_items=60, seed=6)
    for workers in ("1", "2"):
        scorer = start_scorer(model.path, "9", WORKERS=workers)
        scorer.wait()
        body = json.dumps({"user_ids": ["u1", "u2"], "k": 3}).encode()
        head = b"POST /recommendations HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body)
        with socket.create_connection(("127.0.0.1", scorer.port), timeout=10) as in_flight:
            in_flight.sendall(head + body[:10])  # a request half sent when the pod is told to stop
            time.sleep(0.3)
            scorer.process.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            assert scorer.process.poll() is None, "exited with a request in flight"
            in_flight.sendall(body[10:])
            status, headers, answer = read_response(in_flight)
        assert status == 200 and headers["x-model-build"] == "9"
        assert [r["user_id"] for r in json.loads(answer)["results"]] == ["u1", "u2"]
        assert scorer.process.wait(timeout=15) == 0
        try:  # and it no longer takes new connections
            socket.create_connection(("127.0.0.1", scorer.port), timeout=2).close()
            raise AssertionError("still accepting after SIGTERM")
        except ConnectionRefusedError:
            pass


def test_workers_default_to_the_cpu_quota(tmp_path, start_scorer):
    model = write_model_folder(tmp_path / "10", "10", n_users=20, n_items=30, seed=1)
    scorer = start_scorer(model.path, "10")  # no WORKERS: the fixture removes it from the env
    scorer.wait()
    starting = next(json.loads(line) for line in scorer.log_lines() if '"starting"' in line)
    assert starting["workers"] == cpus.whole()
