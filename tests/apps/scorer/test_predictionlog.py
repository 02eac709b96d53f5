"""The prediction log of a real `python -m scorer`: one JSON line per answered user, naming the
model and the request, sampled by PREDICTION_LOG_SAMPLE, and never carrying a credential."""

import json
import re
import subprocess
import sys
import time

import numpy as np

import modelshare
from tests.apps.modelfolder import write_model_folder
from tests.apps.scorer.conftest import REPO

BUILD = "41"


def predictions(scorer) -> list[dict]:
    return [json.loads(line) for line in scorer.log_lines() if '"event":"prediction"' in line]


def test_a_line_names_the_model_the_request_and_what_was_answered(factor):
    model, scorer = factor
    reply = scorer.client.get(
        "/recommendations/u7?k=4",
        headers={"X-Request-ID": "checkout-7f3a", "Authorization": "Bearer s3cret-token", "Cookie": "sid=pw"},
    )
    # The scorer's own id (it names the build, for feedback); the client's is kept beside it.
    assert reply.status_code == 200 and re.fullmatch(r"41\.[0-9a-f]{24}", reply.headers["x-request-id"])
    time.sleep(0.2)  # the worker's write reaches the log file
    [line] = [r for r in predictions(scorer) if r["client_request_id"] == "checkout-7f3a"]
    assert line["request_id"] == reply.headers["x-request-id"]
    assert line["build"] == BUILD and line["model_sha256"] == modelshare.model_sha256(model.path)
    assert line["user"] == "u7" and line["k"] == 4 and line["fallback"] is None
    assert line["items"] == [item["item_id"] for item in reply.json()["items"]]
    assert 0 <= line["latency_ms"] < 10_000 and abs(line["ts"] - time.time()) < 60
    log = scorer.log.read_text()
    assert "s3cret" not in log and "sid=pw" not in log


def test_without_an_id_one_is_generated_and_shared_by_the_users_of_a_batch(factor):
    _, scorer = factor
    first = scorer.client.post("/recommendations", json={"user_ids": ["u1", "nobody-knows-me"], "k": 2})
    second = scorer.client.post("/recommendations", json={"user_ids": ["u2"], "k": 2})
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(re.fullmatch(r"41\.[0-9a-f]{24}", rid) for rid in ids) and ids[0] != ids[1]
    time.sleep(0.2)
    lines = [r for r in predictions(scorer) if r["request_id"] == ids[0]]
    assert all(r["client_request_id"] is None for r in lines)
    assert {r["user"]: r["fallback"] for r in lines} == {"u1": None, "nobody-knows-me": "popular"}
    fallback = next(r for r in lines if r["fallback"])
    assert fallback["items"] == [i["item_id"] for i in first.json()["results"][1]["items"]]


def test_a_large_batch_answered_off_the_event_loop_keeps_its_request_id(factor):
    _, scorer = factor
    users = [f"u{i}" for i in range(20)]  # 20 users x k=1000: scored in the scoring thread
    reply = scorer.client.post(
        "/recommendations", json={"user_ids": users, "k": 1000}, headers={"X-Request-ID": "big-batch-1"}
    )
    assert reply.status_code == 200
    time.sleep(0.3)
    lines = [r for r in predictions(scorer) if r["client_request_id"] == "big-batch-1"]
    assert sorted(r["user"] for r in lines) == sorted(users)
    assert {r["request_id"] for r in lines} == {reply.headers["x-request-id"]}


def test_an_unsafe_incoming_id_is_not_logged_and_fastapi_answers_carry_the_id_too(factor):
    _, scorer = factor
    unsafe = scorer.client.get("/recommendations/u3", headers={"X-Request-ID": 'a b"c' + "x" * 200})
    assert re.fullmatch(r"41\.[0-9a-f]{24}", unsafe.headers["x-request-id"])
    # An extra query parameter goes through FastAPI rather than the front's fast path.
    slow_path = scorer.client.get("/recommendations/u3?k=2&debug=1", headers={"X-Request-ID": "r-99"})
    invalid = scorer.client.get("/recommendations/u3?k=0", headers={"X-Request-ID": "r-100"})
    assert slow_path.status_code == 200 and slow_path.headers["x-request-id"].startswith("41.")
    assert invalid.status_code == 422 and invalid.headers["x-request-id"].startswith("41.")
    time.sleep(0.2)
    [line] = [r for r in predictions(scorer) if r["client_request_id"] == "r-99"]
    assert line["user"] == "u3" and line["request_id"] == slow_path.headers["x-request-id"]
    assert not [r for r in predictions(scorer) if r["client_request_id"] == "r-100"]  # nothing answered
    [line] = [r for r in predictions(scorer) if r["request_id"] == unsafe.headers["x-request-id"]]
    assert line["client_request_id"] is None


def test_the_sample_rate_keeps_that_share_of_requests(tmp_path, start_scorer):
    folder = tmp_path / BUILD
    write_model_folder(folder, BUILD, n_users=30, n_items=20)
    none, half = (
        start_scorer(folder, BUILD, PREDICTION_LOG_SAMPLE="0"),
        start_scorer(folder, BUILD, PREDICTION_LOG_SAMPLE="0.5"),
    )
    for scorer in (none, half):
        scorer.wait()
        for i in range(200):
            assert scorer.client.get(f"/recommendations/u{i % 30}").status_code == 200
    time.sleep(0.3)
    assert predictions(none) == []
    assert "scorer_predictions_total 200.0" in none.client.get("/metrics").text  # still counted
    assert 60 <= len(predictions(half)) <= 140  # binomial(200, 0.5): outside this 1 in 10^8


def test_a_sample_rate_outside_0_to_1_is_refused_naming_it(tmp_path):
    env = {
        "MODELFOLDER": str(tmp_path),
        "BUILD_NUMBER": "1",
        "PREDICTION_LOG_SAMPLE": "1.5",
        "PATH": "/usr/bin",
    }
    result = subprocess.run(
        [sys.executable, "-m", "scorer"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "PREDICTION_LOG_SAMPLE" in result.stdout + result.stderr


def test_known_users_carry_their_novelty_into_the_line_and_the_histogram(factor):
    model, scorer = factor
    before = scorer.client.get("/metrics").text
    reply = scorer.client.post("/recommendations", json={"user_ids": ["u5", "u9", "stranger"], "k": 2})
    time.sleep(0.2)
    lines = {r["user"]: r for r in predictions(scorer) if r["request_id"] == reply.headers["x-request-id"]}
    served = np.load(model.path / "model" / "novelty.npy")
    assert lines["u5"]["novelty"] == round(float(served[5]), 4) and lines["u9"]["novelty"] == round(
        float(served[9]), 4
    )
    assert lines["stranger"]["novelty"] is None  # unknown: counted as a fallback instead
    after = scorer.client.get("/metrics").text
    assert count(after, "scorer_novelty_count") - count(before, "scorer_novelty_count") == 2
    above = sum(float(served[row]) > 0.95 for row in (5, 9))
    assert (count(after, "scorer_novelty_count") - count(after, 'scorer_novelty_bucket{le="0.95"}')) - (
        count(before, "scorer_novelty_count") - count(before, 'scorer_novelty_bucket{le="0.95"}')
    ) == above


def test_a_release_without_novelty_is_served_without_it(tmp_path, start_scorer):
    folder = tmp_path / BUILD
    write_model_folder(folder, BUILD, n_users=30, n_items=20, novelty=False)
    scorer = start_scorer(folder, BUILD)
    scorer.wait()
    assert scorer.client.get("/recommendations/u1").status_code == 200
    time.sleep(0.2)
    assert [r["novelty"] for r in predictions(scorer)] == [None]
    assert count(scorer.client.get("/metrics").text, "scorer_novelty_count") == 0


def count(metrics_text: str, series: str) -> float:
    """The value of one sample line of /metrics (0 when absent)."""
    for line in metrics_text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
