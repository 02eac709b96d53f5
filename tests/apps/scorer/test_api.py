"""The scoring API (docs/CONTRACTS.md, section 4), over a real socket against `python -m scorer`."""

import json
import random
import re
import time
import urllib.parse

import pytest

import modelshare
from tests.apps.modelfolder import write_model_folder

BUILD = "41"


def assert_ranked(model, body, user_id, k):
    """The answer is the true top-k of the user's unseen items, best first."""
    assert body["user_id"] == user_id and body["build"] == BUILD and body["fallback"] is None
    unseen = model.unseen_scores(user_id)
    items = [entry["item_id"] for entry in body["items"]]
    scores = [entry["score"] for entry in body["items"]]
    assert not set(items) & model.seen_ids(user_id), "a seen item was recommended"
    assert len(items) == min(k, len(unseen)) and len(set(items)) == len(items)
    assert scores == sorted(scores, reverse=True)
    best = sorted(unseen.values(), reverse=True)[: len(items)]
    assert scores == pytest.approx(best, abs=1e-4)
    for item, score in zip(items, scores):
        assert unseen[item] == pytest.approx(score, abs=1e-4)


def assert_same(one, other):
    """Equal answers; a score may differ in its last float32 digit (one product or many at once)."""
    assert {**one, "items": None} == {**other, "items": None}
    assert [e["item_id"] for e in one["items"]] == [e["item_id"] for e in other["items"]]
    assert [e["score"] for e in one["items"]] == pytest.approx([e["score"] for e in other["items"]], abs=1e-5)


@pytest.mark.parametrize("served", ["factor", "itemitem"])
def test_recommendations_are_the_top_unseen_items(served, request):
    model, scorer = request.getfixturevalue(served)
    for user_id in ["u0", "u7", "u59"]:
        for k in (1, 5, 10):
            response = scorer.client.get(f"/recommendations/{user_id}", params={"k": k})
            assert response.status_code == 200
            assert_ranked(model, response.json(), user_id, k)
    default = scorer.client.get("/recommendations/u3").json()
    assert len(default["items"]) == 10


@pytest.mark.parametrize("served", ["factor", "itemitem"])
def test_unknown_user_gets_the_popular_items(served, request):
    model, scorer = request.getfixturevalue(served)
    body = scorer.client.get("/recommendations/someone-new", params={"k": 4}).json()
    assert body["fallback"] == "popular" and body["user_id"] == "someone-new"
    assert [entry["item_id"] for entry in body["items"]] == [model.item_ids[i] for i in model.popular[:4]]


def test_batch_answers_each_user_in_order(factor):
    model, scorer = factor
    user_ids = ["u2", "nobody", "u9", "u2"]
    response = scorer.client.post("/recommendations", json={"user_ids": user_ids, "k": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["build"] == BUILD and [r["user_id"] for r in body["results"]] == user_ids
    for result in body["results"]:
        single = scorer.client.get(f"/recommendations/{result['user_id']}", params={"k": 3}).json()
        assert_same(result, single)
    assert [r["fallback"] for r in body["results"]] == [None, "popular", None, None]
    default_k = scorer.client.post("/recommendations", json={"user_ids": ["u1"]}).json()
    assert len(default_k["results"][0]["items"]) == 10


def test_requests_off_the_fast_path_get_the_same_answers(factor):
    """Unusual but valid requests go through FastAPI's own routes: same rules, same answers."""
    _, scorer = factor
    plain = scorer.client.get("/recommendations/u5?k=5").json()
    assert scorer.client.get("/recommendations/u5?k=5&utm=x").json() == plain
    assert scorer.client.get("/recommendations/u5?k=05").json() == plain
    batch = {"build": BUILD, "results": [plain]}
    posted = scorer.client.post(
        "/recommendations", content=json.dumps({"k": 5, "user_ids": ["u5"], "note": 1})
    )
    assert posted.json() == batch
    form_encoded = scorer.client.post(  # what `curl -d` sends: read as JSON all the same
        "/recommendations",
        content=b'{"user_ids":["u5"],"k":5}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert form_encoded.json() == batch


def test_every_response_names_the_build(factor):
    model, scorer = factor
    responses = [
        scorer.client.get(path)
        for path in [
            "/healthz",
            "/readyz",
            "/version",
            "/docs",
            "/openapi.json",
            "/metrics",
            "/nope",
            "/recommendations/u1",
            "/recommendations/u1?k=0",
        ]
    ]
    responses += [
        scorer.client.post("/recommendations", content=b"{"),
        scorer.client.delete("/healthz"),
        scorer.client.post("/recommendations", json={"user_ids": ["u1"]}),
    ]
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 200, 200, 200, 200, 404, 200, 422, 422, 405, 200]
    assert all(r.headers["x-model-build"] == BUILD for r in responses)


def test_version_identifies_the_model(factor):
    model, scorer = factor
    version = scorer.client.get("/version").json()
    assert version["build"] == BUILD and version["git_sha"] == "feedbeef"
    assert version["model_sha256"] == modelshare.model_sha256(model.path)
    assert version["created_at"] == modelshare.read_json(model.path / "manifest.json")["created_at"]
    assert version["metrics"] == modelshare.read_json(model.path / "metrics.json")


def test_openapi_documents_the_real_schemas(factor):
    _, scorer = factor
    spec = scorer.client.get("/openapi.json").json()
    one = spec["paths"]["/recommendations/{user_id}"]["get"]
    k = next(p for p in one["parameters"] if p["name"] == "k")["schema"]
    assert (k["minimum"], k["maximum"], k["default"]) == (1, 1000, 10)
    schemas = spec["components"]["schemas"]
    assert set(schemas["RecommendationOut"]["properties"]) == {"user_id", "build", "items", "fallback"}
    assert schemas["BatchIn"]["properties"]["user_ids"]["maxItems"] == 20  # MAX_BATCH_USERS of the fixture
    assert set(schemas["VersionOut"]["properties"]) == {
        "build",
        "model_sha256",
        "created_at",
        "git_sha",
        "metrics",
    }


@pytest.mark.parametrize(
    "method, path, body, message",
    [
        ("GET", "/recommendations/u1?k=0", None, "query.k: Input should be greater than or equal to 1"),
        ("GET", "/recommendations/u1?k=1001", None, "query.k: Input should be less than or equal to 1000"),
        ("GET", "/recommendations/u1?k=ten", None, "query.k: Input should be a valid integer"),
        ("GET", "/recommendations/u1?k=" + "9" * 400, None, "query.k: Input should be"),
        ("POST", "/recommendations", {"user_ids": [f"u{i}" for i in range(21)]}, "at most 20 items"),
        ("POST", "/recommendations", {"user_ids": ["u1"], "k": 0}, "body.k: Input should be greater than"),
        (
            "POST",
            "/recommendations",
            {"user_ids": ["u1"], "k": "3"},
            "body.k: Input should be a valid integer",
        ),
        ("POST", "/recommendations", {"user_ids": "u1"}, "body.user_ids: Input should be a valid list"),
        (
            "POST",
            "/recommendations",
            {"user_ids": ["u1", 7]},
            "body.user_ids.1: Input should be a valid string",
        ),
        ("POST", "/recommendations", {"k": 3}, "body.user_ids: Field required"),
        ("POST", "/recommendations", b'{"user_ids": ["u1"', "JSON decode error"),
        ("POST", "/recommendations", b"", "expected a JSON object"),
        ("POST", "/recommendations", [1, 2], "expected a JSON object"),
        (
            "POST",
            "/recommendations",
            b'{"user_ids": ["\\ud800"]}',
            "unable to parse raw data as a unicode string",
        ),
    ],
)
def test_invalid_requests_get_422_saying_what_is_wrong(factor, method, path, body, message):
    _, scorer = factor
    content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    response = scorer.client.request(method, path, content=content)
    assert response.status_code == 422, response.text
    assert message in response.json()["message"]
    assert response.headers["x-model-build"] == BUILD


def test_an_oversized_body_is_refused_before_it_is_read(factor):
    _, scorer = factor
    response = scorer.client.post("/recommendations", content=b'{"user_ids": ["' + b"x" * 200_000 + b'"]}')
    assert response.status_code == 413 and "at most 20 user ids" in response.json()["detail"]


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample of a Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" ([0-9.e+-]+)$"
    values = [float(m.group(1)) for m in re.finditer(pattern, text, re.M)]
    return sum(values)


def test_metrics_count_requests_of_every_worker(factor):
    model, scorer = factor
    route = {"method": "GET", "route": "/recommendations/{user_id}", "status": "200"}
    before = scorer.client.get("/metrics").text
    for i in range(30):  # keep-alive off: spread over both worker processes
        scorer.client.get(f"/recommendations/u{i}", headers={"connection": "close"})
    for i in range(3):
        scorer.client.get(f"/recommendations/stranger-{i}", headers={"connection": "close"})
    scorer.client.get("/recommendations/u1?k=0")
    scorer.client.get("/no/such/page")
    after = scorer.client.get("/metrics").text
    assert (
        metric(after, "scorer_requests_total", **route) - metric(before, "scorer_requests_total", **route)
        == 33
    )
    hist = "scorer_request_duration_seconds_count"
    assert metric(after, hist, **route) - metric(before, hist, **route) == 33
    bad_k = {**route, "status": "422"}
    assert (
        metric(after, "scorer_requests_total", **bad_k) - metric(before, "scorer_requests_total", **bad_k)
        == 1
    )
    assert (
        metric(after, "scorer_fallbacks_total", reason="popular")
        - metric(before, "scorer_fallbacks_total", reason="popular")
        == 3
    )
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert metric(after, "scorer_requests_total", **unmatched) >= 1
    assert "/no/such/page" not in after  # paths never become label values
    sha = modelshare.model_sha256(model.path)
    assert metric(after, "scorer_model_info", build=BUILD, model_sha256=sha) == 1


def test_one_log_line_per_prediction(factor):
    _, scorer = factor
    scorer.client.get("/recommendations/u11?k=2")
    scorer.client.post("/recommendations", json={"user_ids": ["u12", "who-is-this"], "k": 3})
    records = [json.loads(line) for line in scorer.log_lines() if '"prediction"' in line]
    by_user = {r["user"]: r for r in records if r["user"] in {"u11", "u12", "who-is-this"}}
    assert set(by_user) == {"u11", "u12", "who-is-this"}
    assert by_user["u11"]["k"] == 2 and by_user["u12"]["k"] == 3
    assert by_user["who-is-this"]["fallback"] == "popular" and by_user["u12"]["fallback"] is None
    assert all(
        r["build"] == BUILD and r["latency_ms"] >= 0 and r["app"] == "scorer" for r in by_user.values()
    )


FUZZ_IDS = [
    "",
    " ",
    "ü",
    "用户",
    "😀",
    "%",
    "%00",
    "%ff%fe",
    "..",
    "../../etc/passwd",
    "a/b",
    "null",
    "-1",
    "x" * 5000,
    "\t",
    "'; DROP TABLE",
    "\\",
    "u1?",
    "u1#",
    "%2F",
    "0" * 40,
]
FUZZ_K = ["", "0", "-1", "1", "1000", "1001", "1e3", "10.0", "0x10", " 5", "５", "9" * 50, "nan", "k", "[]"]
FUZZ_BODIES = [
    b"",
    b"null",
    b"[]",
    b"{}",
    b"0",
    b'"x"',
    b"{" * 500,
    b'{"user_ids": null}',
    b'{"user_ids": [[]]}',
    b'{"user_ids": [{}]}',
    b'{"user_ids": ["u1"], "k": 1e400}',
    b'{"user_ids": ["u1"], "k": -0}',
    b'{"user_ids": ["u1"], "k": 1000}',
    b"\xff\xfe",
    b'{"user_ids": ["u1"], "k": null}',
    b'{"user_ids": ["\\u0000"]}',
    b'{"user_ids": ["u1"]}' * 2,
]


def raw(text: str) -> str:
    """Percent-encode only what cannot go on the wire; '%' and '/' stay, to reach the server as such."""
    return urllib.parse.quote(text, safe="%/")


def test_no_request_gets_a_5xx(factor):
    _, scorer = factor
    rng = random.Random(7)
    statuses = set()
    for _ in range(250):
        kind = rng.random()
        if kind < 0.4:
            user = rng.choice(FUZZ_IDS + [f"u{rng.randrange(80)}"])
            response = scorer.client.get(f"/recommendations/{raw(user)}", params={"k": rng.choice(FUZZ_K)})
        elif kind < 0.75:
            body = rng.choice(
                FUZZ_BODIES
                + [
                    json.dumps(
                        {"user_ids": rng.sample(FUZZ_IDS, 3), "k": rng.choice([1, 3, "3", 2.5, True, None])}
                    ).encode()
                ]
            )
            response = scorer.client.post("/recommendations", content=body)
        else:
            method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
            path = rng.choice(
                [
                    "/",
                    "/recommendations",
                    "/recommendations/",
                    "/metrics",
                    "/version",
                    "/docs",
                    "/readyz/x",
                    "/%00",
                    "/" + raw(rng.choice(FUZZ_IDS)),
                ]
            )
            response = scorer.client.request(method, path, content=rng.choice(FUZZ_BODIES))
        statuses.add(response.status_code)
        assert response.status_code < 500, (response.request.method, response.request.url, response.text)
        assert response.headers["x-model-build"] == BUILD
    assert {200, 404, 405, 422} <= statuses
    assert scorer.client.get("/readyz").status_code == 200


def test_not_ready_until_the_folder_is_complete(tmp_path, start_scorer):
    model = write_model_folder(tmp_path / "42", "42", complete=False)
    scorer = start_scorer(model.path, "42")
    waiting = scorer.wait("/readyz", status=503)
    assert "complete.txt" in waiting.json()["detail"] and waiting.headers["x-model-build"] == "42"
    assert scorer.client.get("/healthz").json() == {"status": "alive"}
    # the kubelet's port says the same: alive, not ready, and why
    probed = scorer.wait_probe("/readyz", status=503)
    assert "complete.txt" in probed.json()["detail"] and probed.headers["x-model-build"] == "42"
    assert scorer.client.get(scorer.probe_url + "/healthz").json() == {"status": "alive"}
    assert not any('"api-built"' in line for line in scorer.log_lines())  # the probes need no FastAPI
    assert scorer.client.get("/recommendations/u1").status_code == 503  # FastAPI's answer, built for it
    assert sum('"api-built"' in line for line in scorer.log_lines()) == 1
    assert scorer.client.post("/recommendations", json={"user_ids": ["u1"]}).status_code == 503
    assert scorer.client.get("/version").status_code == 503
    modelshare.mark_complete(model.path, "42")
    scorer.wait("/readyz", status=200, timeout=10)
    assert scorer.wait_probe("/readyz", timeout=10).json() == {"status": "ready", "build": "42"}
    assert scorer.client.get("/recommendations/u1").json()["build"] == "42"


def test_ready_without_waiting_for_fastapi(tmp_path, start_scorer):
    # FastAPI's import takes longer than loading a MovieLens 1M model: the loader builds the
    # routes only after the model is in, and the probes and the fast path do not wait for them.
    model = write_model_folder(tmp_path / "44", "44")
    scorer = start_scorer(model.path, "44")
    assert scorer.wait("/readyz").json() == {"status": "ready", "build": "44"}
    deadline = time.monotonic() + 30
    while not any('"api-built"' in line for line in scorer.log_lines()):
        assert time.monotonic() < deadline, scorer.log.read_text()
        time.sleep(0.05)
    events = [json.loads(line)["event"] for line in scorer.log_lines() if line.startswith("{")]
    assert events.index("model-loaded") < events.index("api-built")
    assert scorer.client.get("/recommendations/u1", params={"k": "x"}).status_code == 422


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("tamper", "sha256"),
        ("wrong-build", "expected build '43'"),
        ("failed", "training failed: no usable rows in a.csv"),
    ],
)
def test_never_ready_on_a_bad_folder(tmp_path, start_scorer, damage, reason):
    model = write_model_folder(
        tmp_path / "43", "43" if damage != "wrong-build" else "40", complete=damage != "failed"
    )
    if damage == "tamper":
        vectors = model.path / "model" / "item_vectors.npy"
        data = bytearray(vectors.read_bytes())
        data[-1] ^= 0xFF
        vectors.write_bytes(bytes(data))
    if damage == "failed":
        modelshare.mark_failed(model.path, "no usable rows in a.csv")
    scorer = start_scorer(model.path, "43")
    scorer.wait("/healthz")
    for _ in range(200):
        readyz = scorer.client.get("/readyz")
        if reason in readyz.text:
            break
        time.sleep(0.05)
    assert readyz.status_code == 503 and reason in readyz.json()["detail"]
    for _ in range(200):  # the kubelet's port says so too, once the worker's heartbeat has
        probed = scorer.client.get(scorer.probe_url + "/readyz")
        if reason in probed.text:
            break
        time.sleep(0.05)
    assert probed.status_code == 503 and reason in probed.json()["detail"]
    assert scorer.client.get("/recommendations/u1").status_code == 503
    assert any('"not-serving"' in line and reason.split(":")[0] in line for line in scorer.log_lines())
