"""GET /model-card: the real scorer serves the card a real training run wrote, byte for byte, as a
page that may load nothing else; a release without one gets a 404 in the API's error shape."""

from __future__ import annotations

import pytest

import modelshare
from tests.apps.modelfolder import write_model_folder
from tests.apps.trainer.conftest import QUICK, run_trainer
from trainer import sample


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    sample.write(root / "data", 8_000, seed=11)
    run = run_trainer(MODELFOLDER=root / "7", BUILD_NUMBER="7", DATA_DIR=root / "data", **QUICK)
    assert run.returncode == 0, run.stdout + run.stderr
    return root / "7"


def test_the_scorer_serves_the_trained_card(trained, start_scorer):
    scorer = start_scorer(trained, "7")
    scorer.wait()
    answer = scorer.client.get("/model-card", headers={"X-Request-ID": "card-1"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "text/html; charset=utf-8"
    assert answer.content == (trained / "model" / "card.html").read_bytes()
    assert answer.headers["x-model-build"] == "7" and answer.headers["x-request-id"].startswith("7.")
    assert answer.headers["content-security-policy"] == "default-src 'none'; style-src 'unsafe-inline'"
    assert "Build 7: Passes the quality gate" in answer.text
    metrics = scorer.client.get("/metrics").text
    assert 'scorer_requests_total{method="GET",route="/model-card",status="200"} 1.0' in metrics
    assert "/model-card" in scorer.client.get("/openapi.json").json()["paths"]


def test_a_release_without_a_card_answers_404_saying_why(tmp_path, start_scorer):
    folder = tmp_path / "8"
    write_model_folder(folder, "8", n_users=20, n_items=15, per_user=3, seed=1)
    assert "model/card.html" not in modelshare.verify(folder, build="8")["files"]
    scorer = start_scorer(folder, "8")
    scorer.wait()
    answer = scorer.client.get("/model-card")
    assert answer.status_code == 404 and answer.headers["x-model-build"] == "8"
    assert answer.json() == {
        "detail": "build 8 has no model card (model/card.html): trained before cards were written"
    }


def test_no_card_before_the_model_is_loaded(tmp_path, start_scorer):
    folder = tmp_path / "9"
    folder.mkdir()  # training still running: no complete.txt
    scorer = start_scorer(folder, "9")
    scorer.wait("/healthz")
    answer = scorer.client.get("/model-card")
    assert answer.status_code == 503 and answer.json()["detail"].startswith("no model loaded: waiting for")
