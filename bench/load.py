"""The scorer under sustained load and hostile input, as one pod with a one-core limit runs it
(`python -m scorer`, WORKERS=1), in three parts:

- soak: 60 s at 64 keep-alive connections of `GET /recommendations/<user>?k=10` (the load
  generator of bench.serving, from a separate process), measured in consecutive 10 s windows,
  while the scorer's RSS is sampled and a fresh-connection `/healthz`, as kubelet sends it, is
  timed every half second on the probe port (PROBE_PORT, where the Deployment's probes go) and,
  at the same time, on the serving port (where they went before). Baselines in the same run: the
  first window against the last (a leak or a slowdown shows as a ratio away from 1), the serving
  port's `/healthz`, and `/healthz` on the idle server.
- heaviest batches: 4 concurrent `POST /recommendations` of 1,000 users x k=1,000 (a million
  items each), with `/healthz` timed meanwhile on both ports, against the pod's 2 s probe timeout.
- fuzz: schemathesis generates requests for every operation of `/openapi.json` (valid and
  invalid ones, and stateful sequences) and runs all its checks (no 5xx, answers match the
  documented schemas and statuses, invalid data refused...); the scorer's own `/metrics` count
  what it answered, and any 5xx.

The model: 50,000 users x 10,000 items, 64 factors (bench.serving's).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench.serving import FACTORS, N_ITEMS, N_USERS, PER_USER, free_port, run_load, start, stop, wait_http

REPO = Path(__file__).resolve().parent.parent
SOAK_WINDOWS, WINDOW_SECONDS, CONCURRENCY = 6, 10.0, 64
HEAVY_BATCHES = 4
FUZZ_EXAMPLES = 100  # per operation and phase
PROBE_TIMEOUT = 2.0  # the Deployment's probe timeoutSeconds


def rss_mb(pid: int) -> float:
    """Resident memory of the process and its children (uvicorn workers), in MB."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            found = re.search(r"VmRSS:\s+(\d+)", status)
            total += int(found.group(1)) if found else 0  # kernel threads and zombies have none
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return total / 1024


def probe_seconds(port: int, path: str = "/healthz") -> float | None:
    """One probe over a fresh connection, as kubelet sends it; None when it failed."""
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT * 5) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n".encode())
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
    except OSError:
        return None
    return time.perf_counter() - started if reply.startswith(b"HTTP/1.1 200") else None


class Watch:
    """Samples RSS and probe latency in a thread until stopped; with probe_port, probes that
    port too, in a thread of its own (a slow answer on one port does not delay the other's)."""

    def __init__(self, port: int, pid: int, every: float = 0.5, probe_port: int | None = None):
        self.port, self.pid, self.every = port, pid, every
        self.samples: list[tuple[float, float, float | None]] = []  # (t, rss MB, probe s)
        self.probe_port_probes: list[float | None] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True)]
        if probe_port is not None:
            self._threads.append(threading.Thread(target=self._probe, args=(probe_port,), daemon=True))

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self):
        start = time.monotonic()
        while not self._stop.wait(self.every):
            self.samples.append((time.monotonic() - start, rss_mb(self.pid), probe_seconds(self.port)))

    def _probe(self, port: int):
        while not self._stop.wait(self.every):
            self.probe_port_probes.append(probe_seconds(port))

    def probes(self) -> list[float | None]:
        return [probe for _, _, probe in self.samples]


def soak(
    port: int,
    folder: Path,
    pid: int,
    windows: int,
    seconds: float,
    concurrency: int,
    probe_port: int | None = None,
) -> dict:
    """Consecutive load windows; per window the load figures and the RSS at its end."""
    results = []
    with Watch(port, pid, probe_port=probe_port) as watch:
        for _ in range(windows):
            sample = run_load(port, concurrency, folder, seconds)
            sample["rss_mb"] = rss_mb(pid)
            results.append(sample)
    return {"windows": results, "probes": watch.probes(), "probe_port_probes": watch.probe_port_probes}


def post_batches(port: int, batches: int, body: bytes) -> list[tuple[int, float]]:
    """Send the batches at once, read each whole answer (not parsed); (status, seconds) each."""
    answers: list[tuple[int, float]] = []

    def post():
        started = time.perf_counter()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/recommendations", data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                response.read()
                answers.append((response.status, time.perf_counter() - started))
        except OSError as exc:
            answers.append((getattr(exc, "code", 0), time.perf_counter() - started))

    threads = [threading.Thread(target=post) for _ in range(batches)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def heavy(
    port: int, user_ids: list[str], pid: int, batches: int = HEAVY_BATCHES, probe_port: int | None = None
) -> dict:
    """Concurrent batches of 1,000 users x k=1,000, sent from a separate process (reading four
    35 MB answers would hold this one's GIL), while probes are timed from this one."""
    with tempfile.NamedTemporaryFile(suffix=".json") as body:
        body.write(json.dumps({"user_ids": user_ids[:1000], "k": 1000}).encode())
        body.flush()
        command = [sys.executable, "-m", "bench.load", "post", str(port), str(batches), body.name]
        with Watch(port, pid, every=0.1, probe_port=probe_port) as watch:
            done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True, timeout=600)
    return {
        "answers": json.loads(done.stdout),
        "probes": watch.probes(),
        "probe_port_probes": watch.probe_port_probes,
        "rss_mb": max(rss for _, rss, _ in watch.samples),
    }


def metrics_by_status(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for match in re.finditer(r'^scorer_requests_total\{[^}]*status="(\d+)"[^}]*\} ([0-9.e+]+)$', text, re.M):
        counts[match.group(1)] = counts.get(match.group(1), 0) + float(match.group(2))
    return counts


def _schemathesis(
    port: int, examples: int, seconds_limit: float, scratch: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"http://127.0.0.1:{port}/openapi.json",
            "--max-examples",
            str(examples),
            "--seed",
            "7",
            "--generation-database",
            "none",
            "--no-color",
        ],
        cwd=scratch,
        capture_output=True,
        text=True,
        timeout=seconds_limit,
    )


def fuzz(port: int, examples: int, seconds_limit: float = 900) -> dict:
    """schemathesis over every operation of the scorer's OpenAPI document, all checks; the
    scorer's metrics before and after say how many requests it answered, by status."""
    before = metrics_by_status(port)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="schemathesis-") as scratch:  # its caches stay out of the repo
        run = _schemathesis(port, examples, seconds_limit, scratch)
    after = metrics_by_status(port)
    answered = {status: after.get(status, 0) - before.get(status, 0) for status in after}
    answered = {status: int(n) for status, n in sorted(answered.items()) if n}
    return {
        "returncode": run.returncode,
        "answered": answered,
        "requests": sum(answered.values()),
        "server_errors": sum(n for status, n in answered.items() if status.startswith("5")),
        "seconds": time.monotonic() - started,
        "output": run.stdout[-3000:] + run.stderr[-2000:],
    }


def serve(folder: Path, build: str, log: Path, **env: str) -> tuple[subprocess.Popen, int, int]:
    """The scorer; its process, serving port and probe port."""
    port, probe_port = free_port(), free_port()
    env = {
        "MODELFOLDER": str(folder),
        "BUILD_NUMBER": build,
        "PORT": str(port),
        "PROBE_PORT": str(probe_port),
        "WORKERS": "1",
        **env,
    }
    process = start([sys.executable, "-m", "scorer"], env, log)
    wait_http(f"http://127.0.0.1:{probe_port}/readyz")
    return process, port, probe_port


def _ms(seconds: float | None) -> str:
    return "failed" if seconds is None else f"{seconds * 1000:,.1f}"


def _latency(probes: list[float | None]) -> str:
    answered = sorted(p for p in probes if p is not None)
    median = answered[len(answered) // 2] if answered else None
    return (
        f"median {_ms(median)} ms, worst {_ms(answered[-1] if answered else None)} ms, "
        f"{len(probes) - len(answered)} failed of {len(probes)}"
    )


def _worst(probes: list[float | None]) -> float:
    return max((float("inf") if p is None else p for p in probes), default=float("inf"))


def main() -> str:
    sys.path.insert(0, str(REPO))
    from tests.apps.modelfolder import write_model_folder

    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        folder = Path(tmp) / "1"
        built = write_model_folder(
            folder, "1", n_users=N_USERS, n_items=N_ITEMS, factors=FACTORS, per_user=PER_USER, seed=1
        )
        process, port, probe_port = serve(folder, "1", Path(tmp) / "scorer.log")
        try:
            idle = sorted(probe_seconds(probe_port) or float("inf") for _ in range(20))
            soaked = soak(port, folder, process.pid, SOAK_WINDOWS, WINDOW_SECONDS, CONCURRENCY, probe_port)
            heavy_run = heavy(port, built.user_ids, process.pid, probe_port=probe_port)
            fuzzed = fuzz(port, FUZZ_EXAMPLES)
            alive = probe_seconds(probe_port, "/readyz") is not None
            load_average = os.getloadavg()[2]  # the last 15 minutes: about the whole run
        finally:
            stop(process)

    windows = soaked["windows"]
    first, last = windows[0], windows[-1]
    errors = sum(w["errors"] for w in windows)
    requests = sum(w["requests"] for w in windows)
    lines = [
        f"Model: {N_USERS:,} users x {N_ITEMS:,} items, {FACTORS} factors; the scorer as a one-core pod runs "
        "it (WORKERS=1), load from separate processes on the same 2 cores.",
        "",
        f"**Soak**: {SOAK_WINDOWS} x {WINDOW_SECONDS:g} s at {CONCURRENCY} keep-alive connections, "
        "`GET /recommendations/<user>?k=10`, 5 % unknown users.",
        "",
        "| window | req/s | p50 ms | p99 ms | errors | RSS MB at its end |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for i, w in enumerate(windows, 1):
        lines.append(
            f"| {i} | {w['rps']:,.0f} | {w['p50_ms']:,.2f} | {w['p99_ms']:,.2f} | {w['errors']} | "
            f"{w['rss_mb']:,.1f} |"
        )
    growth = last["rss_mb"] - first["rss_mb"]
    lines += [
        "",
        f"{requests:,} requests, {errors} errors. Last window against the first: throughput "
        f"{last['rps'] / first['rps']:.2f}x, RSS {last['rss_mb'] / first['rss_mb']:.3f}x ({growth:+.1f} MB). "
        f"`/healthz` on a fresh connection during the soak, on the probe port (where the kubelet probes): "
        f"{_latency(soaked['probe_port_probes'])}; on the serving port at the same time (where it probed "
        f"before): {_latency(soaked['probes'])} (idle server, probe port: median "
        f"{_ms(idle[len(idle) // 2])} ms).",
    ]
    answers = heavy_run["answers"]
    lines += [
        "",
        f"**Heaviest batches**: {HEAVY_BATCHES} concurrent `POST /recommendations` of 1,000 users x k=1,000: "
        f"statuses {sorted(s for s, _ in answers)}, each answered in "
        f"{min(t for _, t in answers):.2f}-{max(t for _, t in answers):.2f} s (they take turns in the one "
        f"scoring thread). `/healthz` meanwhile, against the {PROBE_TIMEOUT:g} s probe timeout: on the "
        f"probe port {_latency(heavy_run['probe_port_probes'])}; on the serving port "
        f"{_latency(heavy_run['probes'])}; RSS peaked at {heavy_run['rss_mb']:,.0f} MB.",
        "",
        f"**Fuzz**: schemathesis (all its checks, up to {FUZZ_EXAMPLES} examples per operation and phase) "
        f"made the scorer answer {fuzzed['requests']:,} requests in {fuzzed['seconds']:.0f} s, by status "
        f"{fuzzed['answered']}: **{fuzzed['server_errors']} server errors**; schemathesis exit code "
        f"{fuzzed['returncode']} (0: every check passed); the scorer still ready after it all: {alive}.",
    ]
    goals = {
        "0 errors in the soak": errors == 0,
        "no memory growth (< 5 % + 5 MB)": growth < 0.05 * first["rss_mb"] + 5,
        "the heaviest batches answered": all(s == 200 for s, _ in answers),
        f"probes within {PROBE_TIMEOUT:g} s during the heaviest batches": _worst(
            heavy_run["probe_port_probes"]
        )
        < PROBE_TIMEOUT,
        f"probes within {PROBE_TIMEOUT:g} s during the soak": _worst(soaked["probe_port_probes"])
        < PROBE_TIMEOUT,
        "0 server errors and every schemathesis check passed": fuzzed["server_errors"] == 0
        and fuzzed["returncode"] == 0
        and alive,
    }
    lines += [
        "",
        "Goals: "
        + "; ".join(f"{goal}: {'met' if ok else 'NOT met'}" for goal, ok in goals.items())
        + f". Machine load average over the run: {load_average:.1f} on {os.cpu_count()} cores "
        "(other work shared them).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["post"]:
        port, batches, body_file = sys.argv[2:5]
        print(json.dumps(post_batches(int(port), int(batches), Path(body_file).read_bytes())))
