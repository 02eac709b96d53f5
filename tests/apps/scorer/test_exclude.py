"""`exclude` on a request (docs/CONTRACTS.md, section 4): item ids never returned, on the single
and the batch route, on the scorer's fast path and through FastAPI alike."""

import pytest

from tests.apps.scorer.test_api import BUILD, assert_same


def top_unseen_except(model, user_id: str, excluded: set[str], k: int) -> list[str]:
    scores = {item: score for item, score in model.unseen_scores(user_id).items() if item not in excluded}
    return [item for item, _ in sorted(scores.items(), key=lambda pair: -pair[1])[:k]]


def ids(answer: dict) -> list[str]:
    return [entry["item_id"] for entry in answer["items"]]


@pytest.mark.parametrize("served", ["factor", "itemitem"])
def test_excluded_items_are_never_returned_and_the_next_best_take_their_place(served, request):
    model, scorer = request.getfixturevalue(served)
    best = ids(scorer.client.get("/recommendations/u7", params={"k": 5}).json())
    basket = [best[0], best[2], "not-in-the-catalogue"]
    answer = scorer.client.get("/recommendations/u7", params=[("k", "5")] + [("exclude", i) for i in basket])
    assert answer.status_code == 200 and answer.json()["build"] == BUILD
    assert ids(answer.json()) == top_unseen_except(model, "u7", set(basket), 5)
    assert len(ids(answer.json())) == 5  # still k items: the next best fill in


def test_the_batch_route_excludes_for_every_user_the_unknown_ones_too(factor):
    model, scorer = factor
    popular = [model.item_ids[i] for i in model.popular[:3]]
    basket = [popular[0], ids(scorer.client.get("/recommendations/u2?k=1").json())[0]]
    reply = scorer.client.post(
        "/recommendations", json={"user_ids": ["u2", "u9", "newcomer"], "k": 4, "exclude": basket}
    )
    assert reply.status_code == 200
    known, other, newcomer = reply.json()["results"]
    assert ids(known) == top_unseen_except(model, "u2", set(basket), 4)
    assert ids(other) == top_unseen_except(model, "u9", set(basket), 4)
    assert newcomer["fallback"] == "popular" and ids(newcomer)[:2] == popular[1:3]
    assert not set(basket) & set(ids(newcomer))


def test_fastapi_answers_what_the_fast_path_answers(factor):
    _, scorer = factor
    basket = [("exclude", "i3"), ("exclude", "i4")]
    fast = scorer.client.get("/recommendations/u5", params=[("k", "6"), *basket]).json()
    # An unknown parameter takes the request off the fast path (FastAPI ignores it).
    slow = scorer.client.get("/recommendations/u5", params=[("k", "6"), ("debug", "1"), *basket]).json()
    assert_same(fast, slow)
    body = {"user_ids": ["u5"], "k": 6, "exclude": ["i3", "i4"]}
    batch = scorer.client.post("/recommendations", json=body).json()
    slow_batch = scorer.client.post("/recommendations", json={**body, "k": 6.0}).json()  # 6.0: FastAPI's
    assert_same(batch["results"][0], fast) and assert_same(slow_batch["results"][0], fast)


@pytest.mark.parametrize(
    "method, path, body, message",
    [
        ("GET", "/recommendations/u1?exclude=", None, "query.exclude.0"),
        ("GET", "/recommendations/u1?" + "&".join(["exclude=i"] * 101), None, "query.exclude"),
        ("GET", "/recommendations/u1?exclude=" + "i" * 257, None, "query.exclude.0"),
        ("POST", "/recommendations", {"user_ids": ["u1"], "exclude": [""]}, "body.exclude.0"),
        ("POST", "/recommendations", {"user_ids": ["u1"], "exclude": "i1"}, "body.exclude"),
        ("POST", "/recommendations", {"user_ids": ["u1"], "exclude": ["i"] * 101}, "body.exclude"),
        ("POST", "/recommendations", {"user_ids": ["u1"], "exclude": ["i" * 257]}, "body.exclude.0"),
        ("POST", "/recommendations", {"user_ids": ["u1"], "exclude": [7]}, "body.exclude.0"),
    ],
)
def test_a_malformed_exclude_is_a_422_naming_it(factor, method, path, body, message):
    _, scorer = factor
    reply = scorer.client.request(method, path, json=body)
    assert reply.status_code == 422 and reply.json()["message"].startswith(message), reply.text
