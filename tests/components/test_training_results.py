"""What training produced is in the ledger when `pulumi up` returns: the trainer's termination message,
read with the deployer's credentials once the build's Job completed, joins the record in the same
update's `releases` output; an `up` that changes nothing changes no output; a completed Job whose
results cannot be read fails the update naming the Job."""

import contextvars
import http.server
import json
import threading

import pytest

from components import training_results
from components.training_results import TrainingResultsError
from local.render import RenderError, render
from tests.components.conftest import GIT_SHA

SUMMARY = {
    "build": "153",
    "modelSha256": "ab" * 32,
    "gitSha": GIT_SHA,
    "data": {"source": "blob://account/csv/2018/05/08", "sha256": "cd" * 32, "files": 2, "rowsUsed": 40000},
    "family": "ease",
    "params": {"lambda": 300.0},
    "test": {"precision_at_k": 0.12, "recall_at_k": 0.3, "ndcg_at_k": 0.31, "map_at_k": 0.1},
    "liftNdcg": 2.9,
    "gatePassed": True,
}


def message(summary):
    human = f"build {summary['build']} trained (ease, NDCG@10 0.3100, lift 2.9); gate: ..."
    return human + "\n" + json.dumps({**summary, "champion": None})  # the trainer writes null


def up(build, previous=None, pod_messages=None, **kwargs):
    return render(
        "dev",
        {"build": build, "gitSha": GIT_SHA},
        previous_outputs=None if previous is None else previous.outputs,
        pod_messages=pod_messages,
        **kwargs,
    )


@pytest.fixture(scope="module")
def first():
    return up("153", pod_messages={"train-153": message(SUMMARY)})


def test_the_update_that_trains_a_build_records_what_training_produced(first):
    record = first.outputs["releases"]["153"]
    training = record["training"]
    assert training == SUMMARY  # the summary as the trainer wrote it (its nulls left out)
    assert training["data"]["sha256"] == "cd" * 32 and training["modelSha256"] == "ab" * 32
    assert training["test"]["ndcg_at_k"] == 0.31
    assert all("@sha256:" in ref for ref in record["images"].values())  # and the images' digests
    # The objects stay as declared: `training` sits beside them.
    (job,) = first.k8s("Job")
    assert record["objects"]["job"] == job


def test_an_up_that_changes_nothing_changes_no_output_and_no_resource_input(first):
    again = up("153", first, pod_messages={})  # nothing is read again: no message needed
    assert again.outputs == first.outputs
    before = {r.urn: r.inputs for r in first.resources}
    after = {r.urn: r.inputs for r in again.resources}
    # The release's images are built only by the update that renders it (components/ledger.py).
    assert set(after) <= set(before) and all(after[urn] == before[urn] for urn in after)


def test_the_next_build_records_its_own_results_and_keeps_the_earlier_ones(first):
    summary = {**SUMMARY, "build": "154", "modelSha256": "ef" * 32}
    second = up("154", first, pod_messages={"train-154": message(summary)})
    assert second.outputs["releases"]["153"] == first.outputs["releases"]["153"]
    assert second.outputs["releases"]["154"]["training"] == summary


@pytest.mark.parametrize(
    ("messages", "found"),
    [
        ({}, "0 message(s) found"),  # pods deleted, or never a message
        ({"train-153": message({**SUMMARY, "build": "999"})}, "1 message(s) found"),  # another build's
        ({"train-153": "build 153 trained; gate: ...\n{truncated"}, "1 message(s) found"),  # cut short
    ],
)
def test_a_completed_job_without_a_readable_summary_fails_the_update_naming_the_job(messages, found):
    with pytest.raises(
        RenderError, match="Job mlpipeline-dev/train-153 completed, but none of its pods'"
    ) as err:
        up("153", pod_messages=messages)
    assert "build 153's training summary" in str(err.value) and found in str(err.value)


def test_pods_that_cannot_be_read_fail_naming_the_job():
    def unreachable(namespace, job):
        raise ConnectionRefusedError("connection refused: 127.0.0.1:6443")

    def read():
        training_results.READER.set(unreachable)
        return training_results.read("mlpipeline-dev", "train-153", "153")

    with pytest.raises(
        TrainingResultsError, match="Job mlpipeline-dev/train-153 completed, but its pods could"
    ):
        contextvars.Context().run(read)


def test_a_preview_reads_nothing_and_leaves_the_record_unknown():
    preview = up("153", pod_messages={}, preview=True)  # no message: reading would fail
    assert "releases" in preview.unknown_outputs


def test_a_promoted_release_carries_its_sources_results_and_reads_no_job(first):
    prod = render(
        "prod",
        {"build": "153", "gitSha": GIT_SHA},
        other_stacks={"organization/mlpipeline/dev": first.outputs},
        pod_messages={},  # promote-153 leaves no training summary: none is read
    )
    assert prod.outputs["releases"]["153"]["training"] == SUMMARY


# --- the read itself, against an API server answering on 127.0.0.1 -----------------------------


def pod(name, containers):
    return {
        "metadata": {"name": name, "namespace": "mlpipeline-dev", "labels": {"job-name": "train-153"}},
        "status": {"containerStatuses": containers},
    }


def terminated(name, text):
    state = {"terminated": {"exitCode": 0, "reason": "Completed", "message": text}}
    return {"name": name, "state": state, "ready": False, "restartCount": 0, "image": "x", "imageID": ""}


class ApiServer(http.server.BaseHTTPRequestHandler):
    pods: list = []
    paths: list = []

    def do_GET(self):  # noqa: N802 - the handler's interface
        ApiServer.paths.append(self.path)
        body = json.dumps(
            {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": self.pods}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_from_cluster_reads_the_trainer_messages_of_the_jobs_pods(tmp_path, monkeypatch):
    ApiServer.pods = [
        pod("train-153-lost", [terminated("trainer", "")]),  # a pod lost with its node: no message
        pod("train-153-abcde", [terminated("trainer", message(SUMMARY)), terminated("sidecar", "other")]),
    ]
    ApiServer.paths = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}
                    ],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                    "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "x",
                }
            )
        )
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        messages = contextvars.Context().run(training_results.from_cluster, "mlpipeline-dev", "train-153")
    finally:
        server.shutdown()
        server.server_close()
    assert messages == [message(SUMMARY)]
    assert ApiServer.paths == ["/api/v1/namespaces/mlpipeline-dev/pods?labelSelector=job-name%3Dtrain-153"]
    assert training_results.parse(messages[0], "153") == {**SUMMARY, "champion": None}
