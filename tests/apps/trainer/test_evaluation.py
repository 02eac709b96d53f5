"""The holdout split, the ranking metrics and the tuner: the numbers metrics.json is made of."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse, stats

from trainer import families
from trainer.metrics import Popularity, evaluate, paired_gain, per_user
from trainer.split import MIN_ITEMS, nested_holdout, sample_users
from trainer.tuning import Climb, clear_winner, tune


def random_matrix(users=200, items=120, density=0.08, seed=0):
    matrix = sparse.random(users, items, density=density, format="csr", random_state=seed, dtype=np.float32)
    matrix.data[:] = np.random.default_rng(seed).integers(1, 5, matrix.nnz)
    return matrix


def test_holdout_is_a_seeded_per_user_partition():
    matrix = random_matrix()
    train, test, _, _ = nested_holdout(matrix, 0.2, [7, 1])
    assert (train + test != matrix).nnz == 0 and train.multiply(test).nnz == 0
    counts, held = np.diff(matrix.indptr), np.diff(test.indptr)
    assert np.all(held[counts < MIN_ITEMS] == 0)
    assert np.all(held[counts >= MIN_ITEMS] == np.maximum(1, np.floor(0.2 * counts[counts >= MIN_ITEMS])))
    again = nested_holdout(matrix, 0.2, [7, 1])[0]
    other = nested_holdout(matrix, 0.2, [8, 1])[0]
    assert (again != train).nnz == 0 and (other != train).nnz > 0
    users = sample_users(test, 10, [7, 3])
    assert len(users) == 10 and np.all(held[users] > 0)


def test_nested_holdout_carves_validation_from_training_only():
    matrix = random_matrix(seed=4)
    train, test, fit, validation = nested_holdout(matrix, 0.2, [7, 1])
    assert (train + test != matrix).nnz == 0 and train.multiply(test).nnz == 0
    assert (fit + validation != train).nnz == 0 and fit.multiply(validation).nnz == 0
    assert validation.multiply(test).nnz == 0
    counts = np.diff(train.indptr)
    held = np.diff(validation.indptr)
    assert np.all(held[counts < MIN_ITEMS] == 0)
    assert np.all(held[counts >= MIN_ITEMS] == np.maximum(1, np.floor(0.2 * counts[counts >= MIN_ITEMS])))
    again = nested_holdout(matrix, 0.2, [7, 1])
    assert all((a != b).nnz == 0 for a, b in zip(again, (train, test, fit, validation)))
    assert (nested_holdout(matrix, 0.2, [8, 1])[3] != validation).nnz > 0


class Fixed:
    """A ranker that returns a given list for every user."""

    def __init__(self, ranking):
        self.ranking = np.asarray(ranking)

    def top_k(self, users, seen, k):
        return np.tile(self.ranking[:k], (len(users), 1))


def test_metrics_match_a_hand_computed_example():
    relevant = sparse.csr_matrix(np.array([[0, 1, 0, 0, 1, 1] + [0] * 6], dtype=np.float32))
    seen = sparse.csr_matrix((1, 12), dtype=np.float32)
    # ranking: hit at ranks 1 and 3 of 10; 3 relevant items
    result = evaluate(Fixed([1, 0, 4, 2, 3, 6, 7, 8, 9, 10]), np.array([0]), seen, relevant, k=10)
    dcg = 1 + 1 / np.log2(4)
    ideal = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert result == pytest.approx(
        {
            "precision_at_k": 0.2,
            "recall_at_k": 2 / 3,
            "ndcg_at_k": dcg / ideal,
            "map_at_k": (1 + 2 / 3) / 3,
        },
        abs=1e-6,
    )


def test_per_user_metrics_are_the_users_own_and_average_to_the_means():
    relevant = sparse.csr_matrix(
        np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 1, 1, 0, 0]], dtype=np.float32)
    )
    seen = sparse.csr_matrix((3, 5), dtype=np.float32)
    users = np.array([0, 1, 2])
    values = per_user(Fixed([0, 1, 2]), users, seen, relevant, k=3)
    # user 0: hit at rank 1; user 1: no hit; user 2: hits at ranks 2 and 3 of 2 relevant
    ideal_2 = 1 + 1 / np.log2(3)
    np.testing.assert_allclose(values["ndcg_at_k"], [1.0, 0.0, (1 / np.log2(3) + 1 / np.log2(4)) / ideal_2])
    np.testing.assert_allclose(values["recall_at_k"], [1.0, 0.0, 1.0])
    means = evaluate(Fixed([0, 1, 2]), users, seen, relevant, k=3)
    assert means == pytest.approx({name: value.mean() for name, value in values.items()}, abs=1e-6)


def test_paired_gain_is_the_mean_difference_with_a_student_t_interval():
    rng = np.random.default_rng(4)
    baseline = rng.random(400)
    ours = baseline + 0.05 + rng.normal(0, 0.1, 400)
    gain = paired_gain(ours, baseline)
    reference = stats.ttest_rel(ours, baseline).confidence_interval(0.95)
    assert gain["gain"] == pytest.approx(np.mean(ours - baseline), abs=1e-6)
    assert gain["interval"] == pytest.approx([reference.low, reference.high], abs=1e-6)
    assert gain["relative"] == pytest.approx(gain["gain"] / baseline.mean(), abs=1e-6)
    assert gain["interval"][0] > 0 and gain["users"] == 400 and gain["confidence"] == 0.95
    narrower = paired_gain(ours, baseline, 0.90)["interval"]
    reference = stats.ttest_rel(ours, baseline).confidence_interval(0.90)
    assert narrower == pytest.approx([reference.low, reference.high], abs=1e-6)
    same = paired_gain(baseline, baseline)  # a model against itself gains nothing, surely
    assert same["gain"] == 0 and same["interval"] == [0, 0]


def test_ease_is_the_closed_form_with_edlae_regularization():
    matrix = random_matrix(users=120, items=30, density=0.2, seed=6)
    for dropout in (0.0, 0.33):
        model = families.fit("ease", {"lambda": 5.0, "dropout": dropout, "input": "binary"}, matrix, 2, 0)
        binary = (matrix.toarray() > 0).astype(np.float64)
        gram = binary.T @ binary
        # Steck 2020 (EDLAE): Lambda = lambda I + p / (1 - p) diag(G); B = I - P diag(1 / diag(P))
        inverse = np.linalg.inv(gram + np.diag(5.0 + dropout / (1 - dropout) * np.diag(gram)))
        expected = np.eye(30) - inverse / np.diag(inverse)
        np.testing.assert_allclose(model.right, expected, atol=1e-5)
        np.testing.assert_array_equal(np.diag(model.right), 0)


class LuckyFor(Fixed):
    """Ranks item 0 first for the given users, third for everyone else."""

    def __init__(self, lucky):
        super().__init__([1, 2, 0, 3, 4])
        self.lucky = set(lucky)

    def top_k(self, users, seen, k):
        return np.array([[0, 1, 2, 3, 4] if user in self.lucky else [1, 2, 0, 3, 4] for user in users])[:, :k]


def test_a_family_is_served_over_plain_als_only_when_its_validation_gain_is_clear():
    relevant = sparse.csr_matrix(np.tile([[1, 0, 0, 0, 0]], (60, 1)).astype(np.float32))  # item 0, for all
    seen, users = sparse.csr_matrix((60, 5), dtype=np.float32), np.arange(60)

    def ndcg(lucky):
        return per_user(LuckyFor(lucky), users, seen, relevant)["ndcg_at_k"]

    plain = ndcg([])
    ahead_by_luck = {"ease": ndcg([7]), "als-plain": plain}  # better for one user of 60
    assert clear_winner("ease", ahead_by_luck)[0] == "als-plain"
    clearly_ahead = {"ease": ndcg(range(0, 60, 2)), "als-plain": plain}  # better for half of them
    winner, gain = clear_winner("ease", clearly_ahead)
    assert winner == "ease" and gain["family"] == "ease" and gain["interval"][0] > 0
    assert clear_winner("ease", {"ease": ndcg([7])}) == ("ease", None)


def test_popularity_ranks_the_most_shared_unseen_items():
    train = sparse.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 1, 1]], dtype=np.float32))
    seen = sparse.csr_matrix(np.array([[1, 0, 0, 0]], dtype=np.float32))
    assert Popularity(train).top_k(np.array([0]), seen, 2).tolist() == [[1, 2]]


def test_every_family_serves_through_the_one_product_it_is_evaluated_with():
    matrix = random_matrix(seed=3)
    users = np.arange(20)
    for name, space in families.SPACES.items():
        model = families.fit(name, families.canonical(name, space["starts"][0]), matrix, 2, 0)
        items = model.item_vectors
        for user in users[:5]:
            vector = model.user_vectors[user]
            vector = vector.toarray().ravel() if sparse.issparse(vector) else vector
            served = np.asarray(items @ vector).ravel()
            np.testing.assert_allclose(served, model.scores(np.array([user]))[0], rtol=1e-4, atol=1e-5)
        best = model.top_k(users, matrix[users], 5)
        assert not any(set(best[i]) & set(matrix[i].indices) for i in range(len(users)))


def test_the_blend_adds_the_spread_scaled_scores_of_ease_and_als_in_one_product():
    matrix = random_matrix(seed=6)
    ease = families.fit("ease", {"lambda": 30.0, "dropout": 0.25, "input": "log"}, matrix, 2, 0)
    als = families.fit(
        "als-plain", {"factors": 8, "regularization": 1.0, "alpha": 3.0, "iterations": 5}, matrix, 2, 0
    )
    users = np.arange(30)
    params = {"weight": 0.35, "ease": ease.params, "als": {"family": "als-plain", **als.params}}
    blended = families.blend(ease, als, 0.35, 0, params)
    expected = 0.35 * ease.scores(users) / families.score_spread(ease, 0) + 0.65 * als.scores(
        users
    ) / families.score_spread(als, 0)
    np.testing.assert_allclose(blended.scores(users), expected, rtol=1e-4, atol=1e-6)
    items = blended.item_vectors  # the scorer's one product: ITEM_VECTORS @ user_vector
    assert items.shape == (matrix.shape[1], matrix.shape[1] + 8)
    for user in users[:5]:
        served = items @ blended.user_vectors[user].toarray().ravel()
        np.testing.assert_allclose(served, expected[user], rtol=1e-4, atol=1e-6)
    best = blended.top_k(users, matrix[users], 5)
    assert not any(set(best[i]) & set(matrix[i].indices) for i in range(len(users)))
    # the served fit: both parts refitted with their own params, blended with the tuned weight
    refit = families.fit("ease+als", params, matrix, 2, 0)
    assert refit.family == "ease+als" and refit.params == params
    np.testing.assert_allclose(refit.scores(users), expected, rtol=1e-3, atol=1e-5)


def test_the_blend_tunes_its_weight_on_the_best_ease_and_als_without_refitting():
    matrix = random_matrix(users=300, items=80, density=0.1, seed=5)
    _, _, train, validation = nested_holdout(matrix, 0.2, [1, 2])
    users = sample_users(validation, 1000, [1, 4])
    selection = tune(
        ("als-plain", "ease", "ease+als"),
        train,
        train,
        validation,
        users,
        threads=2,
        seed=1,
        max_trials=3,
        budget_seconds=600,
        log=lambda *a, **k: None,
    )
    record = selection.record
    blends = [t for t in record["trials"] if t["family"] == "ease+als"]
    assert [t["params"]["weight"] for t in blends] == families.BLEND_WEIGHTS[:3]
    best = {name: record["families"][name]["params"] for name in ("als-plain", "ease")}
    assert all(t["params"]["ease"] == best["ease"] for t in blends)
    assert all(t["params"]["als"] == {"family": "als-plain", **best["als-plain"]} for t in blends)
    entry = record["families"]["ease+als"]
    assert entry["validation_ndcg"] == max(t["validation_ndcg"] for t in blends)
    assert entry["trials"] == 3 and not entry["converged"]  # 3 of the 5 weights: the trial cap
    assert selection.models["ease+als"].params == entry["params"]


def test_tuning_is_deterministic_for_a_seed():
    matrix = random_matrix(users=300, items=80, density=0.1, seed=5)
    _, _, train, validation = nested_holdout(matrix, 0.2, [1, 2])
    users = sample_users(validation, 1000, [1, 4])

    def run():
        selection = tune(
            ("als-plain", "ease"),
            train,
            train,
            validation,
            users,
            threads=2,
            seed=1,
            max_trials=4,
            budget_seconds=600,
            log=lambda *a, **k: None,
        )
        return (
            selection.family,
            selection.params,
            [(t["params"], t["validation_ndcg"]) for t in selection.record["trials"]],
        )

    first = run()
    assert first == run()
    assert len(first[2]) == 8


def test_the_climb_leaves_the_best_starts_basin_for_a_better_one():
    # The best start (128 factors) is a local optimum; the second best start (32 factors) leads,
    # two steps away, to the best setting. One climb from the best start would never get there.
    peaks = {(128, 100.0, 3.0): 0.50, (32, 10.0, 1.0): 0.45, (32, 30.0, 1.0): 0.55, (64, 30.0, 1.0): 0.60}

    def score(params):
        return peaks.get((params["factors"], params["regularization"], params["alpha"]), 0.1)

    climb = Climb("als-plain", max_trials=40)
    while (proposal := climb.propose()) is not None:
        step, branch = proposal.pop("_step", None), proposal.pop("_branch", None)
        climb.report(proposal, score(proposal), step, branch)
    assert climb.best[0] == 0.60 and climb.best[1]["factors"] == 64
    assert climb.trials <= 40


def test_a_zero_budget_still_fits_one_model_per_family():
    matrix = random_matrix(users=300, items=80, density=0.1, seed=5)
    _, _, train, validation = nested_holdout(matrix, 0.2, [1, 2])
    selection = tune(
        ("als-plain", "item-knn"),
        train,
        train,
        validation,
        sample_users(validation, 1000, 0),
        threads=2,
        seed=1,
        max_trials=5,
        budget_seconds=0,
        log=lambda *a, **k: None,
    )
    assert len(selection.record["trials"]) == 2 and selection.record["budget_exhausted"]


def test_item_knn_ranks_its_stored_scores_like_the_dense_product():
    matrix = random_matrix(users=150, items=200, density=0.03, seed=9)
    model = families.fit("item-knn", {"similarity": "cosine", "K": 20, "input": "binary"}, matrix, 2, 0)
    users = np.arange(150)
    fast = model.top_k(users, matrix[users], 10)
    dense = model.scores(users).astype(np.float32)
    for user in users:
        scores = dense[user].copy()
        scores[matrix[user].indices] = -np.inf
        positive = int(min(10, (scores > 0).sum()))
        ranked = fast[user][:positive]
        np.testing.assert_allclose(scores[ranked], np.sort(scores)[::-1][:positive], rtol=1e-6)
        assert np.all(fast[user][positive:] == -1)
