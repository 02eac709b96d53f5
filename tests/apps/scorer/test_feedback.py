"""POST /feedback (docs/CONTRACTS.md, section 4): an event about a served list, attributed to the
build that served it by its request id, counted once per pod however often it is replayed, and
logged as a line that joins the prediction log on `request_id`."""

import collections
import json
import os
import re
import time
import tracemalloc

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scorer.feedback import Ids, NotIssued, SeenEvents
from tests.apps.modelfolder import write_model_folder
from tests.apps.scorer.test_api import BUILD


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` that carry `labels` (in whatever order they are written)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def served_list(scorer, user: str = "u3") -> tuple[str, list[str]]:
    reply = scorer.client.get(f"/recommendations/{user}", params={"k": 3})
    assert reply.status_code == 200
    return reply.headers["x-request-id"], [entry["item_id"] for entry in reply.json()["items"]]


def forged(build: str, issued: float | None = None) -> str:
    """An id of the shape the scorer issues, as anyone could make it without a key."""
    return f"{build}.{int(time.time() if issued is None else issued):08x}{os.urandom(8).hex()}"


def test_an_event_is_counted_for_the_build_that_served_the_list_and_joins_the_prediction_log(factor):
    _, scorer = factor
    request_id, items = served_list(scorer)
    before = scorer.client.get("/metrics").text
    reply = scorer.client.post(
        "/feedback", json={"request_id": request_id, "item_id": items[1], "event": "click"}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"request_id": request_id, "served_by": BUILD, "counted": True}
    after = scorer.client.get("/metrics").text
    counted = {"served_by": BUILD, "event": "click"}
    assert (
        metric(after, "scorer_feedback_total", **counted) - metric(before, "scorer_feedback_total", **counted)
        == 1
    )
    time.sleep(0.2)  # the worker's write reaches the log file
    lines = [json.loads(line) for line in scorer.log_lines() if request_id in line]
    prediction = next(line for line in lines if line["event"] == "prediction")
    feedback = next(line for line in lines if line["event"] == "feedback")
    assert feedback["item"] in prediction["items"] and feedback["feedback"] == "click"
    assert feedback["served_by"] == prediction["build"] == BUILD and feedback["counted"] is True


def test_a_replayed_event_counts_once_whichever_worker_takes_it(factor):
    _, scorer = factor
    request_id, items = served_list(scorer, "u8")
    event = {"request_id": request_id, "item_id": items[0], "event": "purchase"}
    before = scorer.client.get("/metrics").text
    # A new connection each time: the two worker processes both take some of them.
    answers = [
        scorer.client.post("/feedback", json=event, headers={"connection": "close"}) for _ in range(20)
    ]
    assert [a.json()["counted"] for a in answers].count(True) == 1
    other_item = scorer.client.post("/feedback", json={**event, "item_id": items[1]})
    other_event = scorer.client.post("/feedback", json={**event, "event": "click"})
    assert other_item.json()["counted"] and other_event.json()["counted"]  # different events, counted
    after = scorer.client.get("/metrics").text

    def moved(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert moved("scorer_feedback_total", served_by=BUILD, event="purchase") == 2
    assert moved("scorer_feedback_replays_total", event="purchase") == 19
    time.sleep(0.2)
    logged = [json.loads(line) for line in scorer.log_lines() if request_id in line and '"feedback"' in line]
    purchases = [line for line in logged if line["item"] == items[0] and line["feedback"] == "purchase"]
    assert len(purchases) == 20 and sum(line["counted"] for line in purchases) == 1


def test_any_pod_counts_an_event_for_the_build_named_in_the_id(factor):
    _, scorer = factor
    canary_list = forged("153")  # a list the canary (another release) served
    reply = scorer.client.post(
        "/feedback", json={"request_id": canary_list, "item_id": "i1", "event": "click"}
    )
    assert reply.json()["served_by"] == "153"
    assert (
        metric(scorer.client.get("/metrics").text, "scorer_feedback_total", served_by="153", event="click")
        == 1
    )


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"request_id": "abc", "item_id": "i1", "event": "click"}, 422, "body.request_id"),
        ({"request_id": "41." + "0" * 24, "item_id": "i1", "event": "view"}, 422, "body.event"),
        ({"request_id": "41." + "0" * 24, "item_id": "", "event": "click"}, 422, "body.item_id"),
        ({"item_id": "i1", "event": "click"}, 422, "body.request_id: Field required"),
        ({"request_id": 41, "item_id": "i1", "event": "click"}, 422, "body.request_id"),
        # Well formed, but issued in 1970, or an hour from now: no live build issued it.
        ({"request_id": "41." + "0" * 24, "item_id": "i1", "event": "click"}, 404, "request_id: "),
        ({"request_id": forged("41", time.time() + 3600), "item_id": "i1", "event": "click"}, 404, "future"),
    ],
)
def test_invalid_or_impossible_events_are_refused_naming_the_field(factor, body, status, message):
    _, scorer = factor
    reply = scorer.client.post("/feedback", json=body)
    assert reply.status_code == status, reply.text
    text = reply.json().get("message") or reply.json()["detail"]
    assert message in text, text


def test_events_older_than_the_window_and_unconfigured_events_are_refused(tmp_path, start_scorer):
    folder = write_model_folder(tmp_path / "5", "5", n_users=10, n_items=12).path
    scorer = start_scorer(folder, "5", FEEDBACK_WINDOW_SECONDS="60", FEEDBACK_EVENTS="click,add_to_cart")
    scorer.wait()
    old = scorer.client.post(
        "/feedback", json={"request_id": forged("5", time.time() - 120), "item_id": "i1", "event": "click"}
    )
    assert old.status_code == 404 and "FEEDBACK_WINDOW_SECONDS=60" in old.json()["detail"]
    fresh = {"request_id": forged("5"), "item_id": "i1"}
    assert scorer.client.post("/feedback", json={**fresh, "event": "add_to_cart"}).status_code == 200
    refused = scorer.client.post("/feedback", json={**fresh, "event": "purchase"})
    assert refused.status_code == 422 and "click, add_to_cart" in refused.json()["message"]


def test_with_a_key_only_ids_issued_by_a_holder_of_it_count(tmp_path, start_scorer):
    key = tmp_path / "feedback.key"
    key.write_text(os.urandom(24).hex())
    champion, canary = (
        start_scorer(
            write_model_folder(tmp_path / b, b, n_users=10, n_items=12).path, b, FEEDBACK_KEY_FILE=str(key)
        )
        for b in ("6", "7")
    )
    champion.wait(), canary.wait()
    request_id = canary.client.get("/recommendations/u1").headers["x-request-id"]
    assert re.fullmatch(r"7\.[0-9a-f]{40}", request_id)
    # The champion's pod takes the canary's event: the router's split does not matter.
    taken = champion.client.post(
        "/feedback", json={"request_id": request_id, "item_id": "i1", "event": "click"}
    )
    assert taken.status_code == 200 and taken.json()["served_by"] == "7"
    tampered = request_id[:-1] + ("0" if request_id[-1] != "0" else "1")
    for fake in (forged("7"), tampered):
        refused = champion.client.post(
            "/feedback", json={"request_id": fake, "item_id": "i1", "event": "click"}
        )
        assert refused.status_code == 404 and "request_id" in refused.json()["detail"]
    assert str(key.read_text()) not in champion.log.read_text()  # the key never reaches a log


def test_a_bad_key_file_stops_the_scorer_naming_it(tmp_path, start_scorer):
    folder = write_model_folder(tmp_path / "8", "8", n_users=10, n_items=12).path
    short = tmp_path / "short.key"
    short.write_text("too-short")
    scorer = start_scorer(folder, "8", FEEDBACK_KEY_FILE=str(short))
    assert scorer.process.wait(timeout=30) == 2
    assert "FEEDBACK_KEY_FILE" in scorer.log.read_text()


# ---- the dedupe table: bounded whatever the flood ----------------------------------------------


def test_a_flood_of_distinct_events_costs_no_memory_and_recent_replays_still_count_once(tmp_path):
    path = tmp_path / "seen"
    table = SeenEvents(path, slots=4096)
    ids = Ids("41", None, 86400)
    now = int(time.time())
    recent: collections.deque = collections.deque(maxlen=512)

    def flood(events: int) -> None:
        for n in range(events):
            request_id = ids.issue().decode()
            assert table.first(request_id, f"i{n}", "click", now)
            recent.append((request_id, f"i{n}"))

    tracemalloc.start()
    flood(10_000)
    before = tracemalloc.get_traced_memory()[0]
    flood(40_000)  # ten times what the table holds
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert path.stat().st_size == 4096 * 16 and grown < 16 * 1024
    # The table holds the most recent events: their replays are refused.
    assert not any(table.first(request_id, item, "click", now) for request_id, item in recent)
    # A second worker's mapping of the same file sees them too.
    assert not SeenEvents(path, slots=4096).first(*recent[0], "click", now)


def test_the_oldest_id_is_forgotten_first_when_a_bucket_is_full(tmp_path):
    table = SeenEvents(None, slots=8)  # one bucket of 8
    for n in range(8):
        assert table.first(f"r{n}", "i", "click", issued=100 + n)
    assert table.first("r8", "i", "click", issued=200)  # evicts r0, issued first
    assert table.first("r0", "i", "click", issued=100)  # so r0 counts again...
    assert not table.first("r7", "i", "click", issued=107)  # ...while the newer ones do not


def test_an_id_is_checked_for_shape_age_and_tag():
    ids, keyed = Ids("41", None, 60), Ids("41", b"k" * 16, 60)
    now = time.time()
    assert ids.check(ids.issue().decode(), now)[0] == "41"
    assert keyed.check(keyed.issue().decode(), now)[0] == "41"
    for bad, reason in [
        ("41", "not a request id"),
        (ids.issue().decode(), "no authentication tag"),
        (forged("41", now - 61), "ago"),
    ]:
        with pytest.raises(NotIssued, match=reason):
            (keyed if reason == "no authentication tag" else ids).check(bad, now)


def test_without_a_key_a_worker_counts_for_a_bounded_number_of_builds():
    ids = Ids("41", None, 60)
    now = time.time()
    for n in range(16):
        ids.check(forged(str(n)), now)
    ids.check(forged("3"), now)  # one it counts already
    with pytest.raises(NotIssued, match="16 builds"):
        ids.check(forged("forged-build"), now)
