"""The API at its edges, over raw sockets: what the HTTP server refuses itself (not HTTP, oversized
heads, requests that never finish arriving), bodies FastAPI cannot parse, ids and k in every form
a client may write them. Every answer is the documented one, with X-Model-Build, never a 5xx."""

from __future__ import annotations

import gzip
import json
import socket
import time

import pytest

from tests.apps.modelfolder import write_model_folder

BUILD = "41"
TIMEOUT = 1.0  # REQUEST_TIMEOUT_SECONDS of the scorer these tests start


def read_response(sock: socket.socket, deadline: float = 10.0) -> tuple[int, dict, bytes]:
    sock.settimeout(deadline)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def exchange(port: int, *parts: bytes, pause: float = 0.0) -> tuple[int, dict, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for part in parts:
            try:
                sock.sendall(part)
            except OSError:  # the server may refuse and close before everything is sent
                break
            time.sleep(pause)
        return read_response(sock)


def request(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    from tests.apps.scorer.conftest import Scorer

    folder = tmp_path_factory.mktemp("edges") / BUILD
    write_model_folder(folder, BUILD, n_users=30, n_items=40, per_user=4, seed=5)
    scorer = Scorer(
        folder, BUILD, folder.parent / "scorer.log", WORKERS="1", REQUEST_TIMEOUT_SECONDS=str(TIMEOUT)
    )
    try:
        scorer.wait()
        yield scorer
    finally:
        scorer.stop()


def assert_problem(status, headers, body, expected_status, phrase):
    assert status == expected_status, body
    assert headers["x-model-build"] == BUILD
    doc = json.loads(body)
    assert phrase in (doc.get("message") or doc["detail"])
    return doc


@pytest.mark.parametrize(
    "body, headers, phrase",
    [
        (b'{"user_ids": ["\xff\xfe"]}', {}, "not a JSON document in UTF-8"),
        (gzip.compress(b'{"user_ids": ["u1"]}'), {"Content_Encoding": "gzip"}, "compressed bodies"),
        (b"[" * 100_000 + b"]" * 100_000, {}, "not a JSON document"),
        (b'{"user_ids": ["u1"], "deep": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", {}, "not a JSON document"),
    ],
    ids=["not-utf8", "gzip", "nested-array", "nested-field"],
)
def test_a_body_fastapi_cannot_parse_gets_the_documented_422(edge, body, headers, phrase):
    status, response_headers, response = exchange(
        edge.port, request("POST", "/recommendations", body, **headers)
    )
    doc = assert_problem(status, response_headers, response, 422, phrase)
    assert doc["detail"][0]["loc"] == ["body"] and doc["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    "raw, status, phrase",
    [
        (b"FROB /healthz HTTP/1.1\r\nHost: t\r\n\r\n", 400, "not a valid HTTP/1.1 request"),
        (b"hello there\r\n\r\n", 400, "not a valid HTTP/1.1 request"),
        (b"GET /" + b"x" * 20_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "URL longer than"),
        (
            b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"y" * 20_000 + b"\r\n\r\n",
            431,
            "request head larger",
        ),
    ],
    ids=["bad-method", "not-http", "long-url", "big-header"],
)
def test_the_servers_own_refusals_name_the_build(edge, raw, status, phrase):
    assert_problem(*exchange(edge.port, raw), status, phrase)


def test_a_megabyte_of_headers_is_refused_while_it_arrives(edge):
    head = b"GET /healthz HTTP/1.1\r\nHost: t\r\n"
    lines = [b"X-Pad-%d: %s\r\n" % (i, b"z" * 1000) for i in range(1000)]  # 1 MB, in 64 KiB pieces
    pieces = [head] + [b"".join(lines[i : i + 64]) for i in range(0, len(lines), 64)]
    started = time.monotonic()
    assert_problem(*exchange(edge.port, *pieces, pause=0.01), 431, "request head larger")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "parts, phrase",
    [
        (
            [b"POST /recommendations HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n", b'{"user_ids": '],
            "did not arrive",
        ),
        ([b"GET /healthz HTTP/1.1\r\nHost: t\r\n"], "did not arrive"),
    ],
    ids=["body-never-completes", "head-never-completes"],
)
def test_a_request_that_never_finishes_arriving_gets_408(edge, parts, phrase):
    started = time.monotonic()
    assert_problem(*exchange(edge.port, *parts), 408, phrase)
    assert TIMEOUT <= time.monotonic() - started < TIMEOUT + 3


def test_an_idle_connection_is_closed_without_an_answer(edge):
    with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock:
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed, nothing written: a pooled client sees a clean close
        assert time.monotonic() - started < TIMEOUT + 3 + 5  # + uvicorn's keep-alive timeout at most


def test_a_slow_but_steady_request_is_answered(edge):
    body = json.dumps({"user_ids": ["u1", "u2"], "k": 3}).encode()
    head = request("POST", "/recommendations", body)[: -len(body)]
    pieces = [head] + [body[i : i + 10] for i in range(0, len(body), 10)]
    status, headers, response = exchange(edge.port, *pieces, pause=TIMEOUT / len(pieces) / 2)
    assert status == 200 and headers["x-model-build"] == BUILD
    assert [r["user_id"] for r in json.loads(response)["results"]] == ["u1", "u2"]


def test_an_oversized_chunked_body_is_refused_with_413(edge):
    head = b"POST /recommendations HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"x" * 60_000
    pieces = [head] + [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 40  # 2.4 MB, no Content-Length
    status, headers, _ = exchange(edge.port, *pieces)
    assert status == 413 and headers["x-model-build"] == BUILD


@pytest.mark.parametrize(
    "method, path, body, status, k",
    [
        ("GET", "/recommendations/u1?k=2", None, 200, 2),
        ("GET", "/recommendations/u1?k=2.0", None, 200, 2),
        ("POST", "/recommendations", {"user_ids": ["u1"], "k": 2}, 200, 2),
        ("POST", "/recommendations", {"user_ids": ["u1"], "k": 2.0}, 200, 2),
        ("GET", "/recommendations/u1?k=2.5", None, 422, None),
        ("POST", "/recommendations", {"user_ids": ["u1"], "k": 2.5}, 422, None),
        ("POST", "/recommendations", {"user_ids": ["u1"], "k": "2"}, 422, None),
        ("POST", "/recommendations", {"user_ids": ["u1"], "k": True}, 422, None),
    ],
)
def test_k_is_read_alike_in_the_query_and_the_body(edge, method, path, body, status, k):
    response = edge.client.request(method, path, content=None if body is None else json.dumps(body))
    assert response.status_code == status, response.text
    if status == 200:
        doc = response.json()
        result = doc["results"][0] if "results" in doc else doc
        assert len(result["items"]) == k


@pytest.mark.parametrize(
    "path, user_id",
    [
        ("/recommendations/team/u1", "team/u1"),
        ("/recommendations/team%2Fu1", "team/u1"),
        ("/recommendations/%20", " "),
    ],
)
def test_any_id_with_slashes_is_an_id(edge, path, user_id):
    response = edge.client.get(path)
    assert response.status_code == 200 and response.json()["user_id"] == user_id


def test_an_empty_id_is_a_422_not_a_redirect(edge):
    for response in [
        edge.client.get("/recommendations/"),
        edge.client.post("/recommendations", json={"user_ids": ["u1", ""]}),
    ]:
        assert response.status_code == 422, response.text
        assert "at least 1 character" in response.json()["message"]
        assert response.headers["x-model-build"] == BUILD
    assert edge.client.get("/healthz/").status_code == 404  # no 307 to /healthz
