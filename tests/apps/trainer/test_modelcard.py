"""The model card of real training runs: the verdict first and true to metrics.json, the numbers a
person checks, valid inline SVG plots, nothing fetched from elsewhere, pinned by the manifest."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET

import pytest

import modelshare
from trainer import modelcard, sample

from .conftest import QUICK, run_trainer


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """Build 1 on one day's data, build 2 on the next day's with build 1 as its champion: two halves
    of one sample, the same world drawn twice (no drift)."""
    root = tmp_path_factory.mktemp("card")
    sample.write(root / "all", 24_000, files=2, seed=7)
    for n, day in enumerate(("day1", "day2")):
        (root / day).mkdir()
        (root / "all" / f"part-{n:05d}.csv").rename(root / day / "part-00000.csv")
    for build, day, champion in (
        ("1", "day1", {}),
        ("2", "day2", {"GATE_CHAMPION_MODELFOLDER": root / "share" / "1", "GATE_CHAMPION_TOLERANCE": "0.5"}),
    ):
        run = run_trainer(
            MODELFOLDER=root / "share" / build,
            BUILD_NUMBER=build,
            DATA_DIR=root / day,
            GIT_SHA="c0ffee",
            **QUICK,
            **champion,
        )
        assert run.returncode == 0, run.stdout + run.stderr
    return root / "share"


def text(page: str) -> str:
    """What a reader sees: tags dropped, entities decoded, white space collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def test_the_card_is_in_the_manifest_and_self_contained(released):
    folder = released / "2"
    manifest = modelshare.verify(folder, build="2")
    assert "model/card.html" in manifest["files"]
    page = (folder / "model" / "card.html").read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "<script" not in page
    assert not re.search(r"(src|href)\s*=", page), "the card fetches nothing"
    plots = re.findall(r"<svg.*?</svg>", page, flags=re.DOTALL)
    assert len(plots) >= 4  # the gains, and three histograms beside the champion's
    for plot in plots:
        ET.fromstring(plot)  # each one is well-formed SVG


def test_the_verdict_comes_first_and_says_what_metrics_json_says(released):
    metrics = modelshare.read_json(released / "2" / "metrics.json")
    page = (released / "2" / "model" / "card.html").read_text(encoding="utf-8")
    first = text(page[page.index("<h1") : page.index("</h1>")])
    gain = metrics["champion"]["ndcg_gain"]
    expected = (
        "Better than the champion (build 1)" if gain["interval"][0] > 0 else "Not worse than the champion"
    )
    assert first.startswith("Build 2: " + expected), first
    verdict = text(page[: page.index("<h2")])  # what is read before anything else
    lo, hi = gain["interval"]
    assert f"paired gain {gain['gain']:+.4f}, 90% interval [{lo:+.4f}, {hi:+.4f}]" in verdict
    popularity = metrics["popularity_ndcg_gain"]
    assert popularity["interval"][0] > 0  # the planted data rewards a model over popularity
    assert (
        f"NDCG@10 {metrics['model']['ndcg_at_k']:.4f} against popularity's "
        f"{metrics['popularity']['ndcg_at_k']:.4f}"
    ) in verdict
    assert "data drift against the champion's data: no figure above its warning threshold" in verdict


def test_the_card_shows_the_data_the_model_and_the_time(released):
    page = text((released / "2" / "model" / "card.html").read_text(encoding="utf-8"))
    metrics = modelshare.read_json(released / "2" / "metrics.json")
    profile = modelshare.read_json(released / "2" / "model" / "data_profile.json")
    drift = modelshare.read_json(released / "2" / "model" / "drift.json")
    assert f"users {profile['n_users']:,} {drift['champion_profile']['n_users']:,}" in page
    assert f"Family {metrics['family']}" in page and re.search(r"Training took [\d.,]+ s", page)
    assert "git c0ffee" in page and "part-00000.csv" in page
    for figure, value in drift["figures"].items():
        assert f"{value:.4f}" in page or f"{value:+.4f}" in page, figure


def test_a_release_below_the_gate_says_so_first_with_the_reasons(released):
    """The card of a failing build, rendered from real metrics with the gate's failures."""
    metrics = modelshare.read_json(released / "2" / "metrics.json")
    profile = modelshare.read_json(released / "2" / "model" / "data_profile.json")
    drift = modelshare.read_json(released / "2" / "model" / "drift.json")
    reason = "data drift: new_user_share 0.9000 (...) >= DRIFT_FAIL_NEW_USER_SHARE 0.5"
    metrics["gate"] = {"passed": False, "failures": [reason], "checks": [], "notes": []}
    page = modelcard.render("2", metrics, profile, drift, {"source": "/data"}, 12.0)
    verdict = text(page[: page.index("<h2")])
    assert "Build 2: Below the quality gate: not to be served" in verdict and reason in verdict


def test_without_a_champion_the_card_says_nothing_was_compared(released):
    page = text((released / "1" / "model" / "card.html").read_text(encoding="utf-8"))
    assert "Build 1: Passes the quality gate (no champion compared)" in page
    assert "No champion named: no drift comparison." in page
