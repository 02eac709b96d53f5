"""What training produced reaches the ledger from the next update: the trainers' termination messages,
read with the deployer's credentials, join their releases' records; the objects stay as declared."""

import json

from components.plan import normalize
from local.render import render
from tests.components.conftest import GIT_SHA

SUMMARY = {
    "build": "153",
    "modelSha256": "ab" * 32,
    "data": {"sha256": "cd" * 32, "files": 2, "rowsUsed": 40000},
    "family": "ease",
    "params": {"lambda": 300.0},
    "test": {"ndcg_at_k": 0.31},
    "liftNdcg": 2.9,
    "gatePassed": True,
}
MESSAGE = "build 153 trained (ease, NDCG@10 0.3100, lift 2.9); gate: ...\n" + json.dumps(SUMMARY)


def test_a_finished_training_reaches_the_record_at_the_next_update_and_nothing_else_changes():
    first = render("dev", {"build": "153", "gitSha": GIT_SHA})
    assert "training" not in first.outputs["releases"]["153"]  # the Job runs during this update
    second = render(
        "dev",
        {"build": "154", "gitSha": GIT_SHA},
        previous_outputs=first.outputs,
        pod_messages={"train-153": MESSAGE},
    )
    record = second.outputs["releases"]["153"]
    assert record["training"] == SUMMARY
    assert normalize({k: v for k, v in record.items() if k != "training"}) == normalize(
        first.outputs["releases"]["153"]
    )
    third = render("dev", {"build": "155", "gitSha": GIT_SHA}, previous_outputs=second.outputs)  # pods gone
    assert third.outputs["releases"]["153"]["training"] == SUMMARY  # kept from the record


def test_a_missing_or_foreign_message_leaves_the_record_as_it_is():
    first = render("dev", {"build": "153", "gitSha": GIT_SHA})
    foreign = MESSAGE.replace('"build": "153"', '"build": "999"')
    for messages in ({}, {"train-153": foreign}, {"train-153": "training of build 153 failed: no rows"}):
        second = render(
            "dev", {"build": "154", "gitSha": GIT_SHA}, previous_outputs=first.outputs, pod_messages=messages
        )
        assert "training" not in second.outputs["releases"]["153"]
