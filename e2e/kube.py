"""What the engine suite reads from the API server (and the pods) about the e2e stack's releases.

Each function takes the running cluster (e2e/cluster.py) and a release record from the stack's
`releases` output: the paths of a release's Job, Deployment, Service and guards, their
generation/resourceVersion, the HTTPRoute's split, a fingerprint of everything the program manages in
the namespace, the host folder behind a claim, how long a Job ran, and whether every Ready scorer pod
answers for its build (an HTTP request to the pod's address). A check that fails raises EngineError.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path

from e2e.cluster import Cluster
from e2e.containers import ROWS
from e2e.stack import DATA_CLAIM, NAMESPACE
from trainer import sample


class EngineError(AssertionError):
    pass


def wait_gone(cluster: Cluster, path: str, timeout: float = 180) -> None:
    """Wait until the object at `path` is deleted (a namespace finishes Terminating, for one)."""
    deadline = time.monotonic() + timeout
    while (body := cluster.get(path)) is not None:
        if time.monotonic() > deadline:
            raise EngineError(f"{path} is still there after {timeout:.0f} s: {body.get('status')}")
        time.sleep(1)


def prepare_namespace(cluster: Cluster) -> Path:
    """What a user of the local stack does first: the namespace and the claim with the CSVs (the
    demo's interactions, which a real node trains on). Returns the claim's host folder."""
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": DATA_CLAIM, "namespace": NAMESPACE},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        }
    )
    data = claim_folder(cluster, DATA_CLAIM)
    sample.write(data, ROWS)
    return data


def objects_of(record: dict) -> dict[str, tuple[str, str]]:
    """kind -> (API path, name) of a release record's Job, Deployment and Service."""
    paths = {"job": "/apis/batch/v1", "deployment": "/apis/apps/v1", "service": "/api/v1"}
    plural = {"job": "jobs", "deployment": "deployments", "service": "services"}
    found = {}
    for kind, base in paths.items():
        metadata = record["objects"][kind]["metadata"]
        found[kind] = (
            f"{base}/namespaces/{namespace_of(record)}/{plural[kind]}/{metadata['name']}",
            metadata["name"],
        )
    return found


def versions_of(cluster: Cluster, record: dict) -> dict[str, tuple[int, str]]:
    """kind -> (metadata.generation, metadata.resourceVersion) of a release's objects."""
    result = {}
    for kind, (path, _name) in objects_of(record).items():
        body = cluster.get(path)
        if body is None:
            raise EngineError(f"{kind} {path} is not in the API server")
        result[kind] = (body["metadata"].get("generation"), body["metadata"]["resourceVersion"])
    return result


def routes(cluster: Cluster) -> list[dict]:
    listing = cluster.get(f"/apis/gateway.networking.k8s.io/v1/namespaces/{NAMESPACE}/httproutes") or {}
    return listing.get("items", [])


def route_weights(cluster: Cluster) -> dict[str, int]:
    """Service name -> weight on the split rule (the rule without a header match) of the one HTTPRoute."""
    found = routes(cluster)
    if len(found) != 1:
        raise EngineError(
            f"expected one HTTPRoute in {NAMESPACE}, found {[r['metadata']['name'] for r in found]}"
        )
    for rule in found[0]["spec"]["rules"]:
        if not any(match.get("headers") for match in rule.get("matches", [])):
            return {ref["name"]: ref.get("weight", 1) for ref in rule.get("backendRefs", [])}
    raise EngineError("the HTTPRoute has no split rule")


def namespace_of(record: dict) -> str:
    return record["objects"]["job"]["metadata"].get("namespace", NAMESPACE)


def guards_of(record: dict) -> dict[str, str]:
    """API path of each guard object of a release (components/release_guards.py) -> its kind."""
    scorer, job = f"score-{record['name']}", record["objects"]["job"]["metadata"]["name"]
    base = f"namespaces/{namespace_of(record)}"
    return {
        f"/apis/networking.k8s.io/v1/{base}/networkpolicies/{scorer}": "NetworkPolicy (scorer ingress)",
        f"/apis/networking.k8s.io/v1/{base}/networkpolicies/{job}": "NetworkPolicy (Job egress)",
        f"/apis/policy/v1/{base}/poddisruptionbudgets/{scorer}": "PodDisruptionBudget",
        f"/apis/autoscaling/v2/{base}/horizontalpodautoscalers/{scorer}": "HorizontalPodAutoscaler",
    }


def assert_release_live(cluster: Cluster, record: dict) -> dict:
    missing = [kind for path, kind in guards_of(record).items() if cluster.get(path) is None]
    if missing:
        raise EngineError(f"release {record['build']} lacks its {missing} in the API server")
    objects = objects_of(record)
    job = cluster.get(objects["job"][0])
    deployment = cluster.get(objects["deployment"][0])
    service = cluster.get(objects["service"][0])
    if job is None or not job.get("status", {}).get("succeeded"):
        raise EngineError(f"Job {objects['job'][1]} has not succeeded: {job and job.get('status')}")
    conditions = {c["type"]: c["status"] for c in (deployment or {}).get("status", {}).get("conditions", [])}
    if conditions.get("Available") != "True":
        raise EngineError(f"Deployment {objects['deployment'][1]} is not Available: {conditions}")
    if service is None:
        raise EngineError(f"Service {objects['service'][1]} is missing")
    return {kind: name for kind, (_path, name) in objects.items()}


def namespace_snapshot(cluster: Cluster, namespace: str = NAMESPACE) -> dict[str, str]:
    """kind/name -> fingerprint of what the program declares (labels, annotations, spec or data) of
    everything it manages in the namespace; status, which controllers keep writing, is left out."""
    snapshot = {}
    for base, plural in (
        ("/apis/batch/v1", "jobs"),
        ("/apis/apps/v1", "deployments"),
        ("/api/v1", "services"),
        ("/api/v1", "configmaps"),
        ("/api/v1", "secrets"),
        ("/api/v1", "persistentvolumeclaims"),
        ("/apis/gateway.networking.k8s.io/v1", "httproutes"),
        ("/apis/networking.k8s.io/v1", "networkpolicies"),
        ("/apis/policy/v1", "poddisruptionbudgets"),
        ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    ):
        listing = cluster.get(f"{base}/namespaces/{namespace}/{plural}") or {"items": []}
        for item in listing["items"]:
            metadata = item["metadata"]
            declared = {
                "labels": metadata.get("labels"),
                "annotations": metadata.get("annotations"),
                "spec": item.get("spec"),
                "data": item.get("data"),
            }
            snapshot[f"{plural}/{metadata['name']}"] = hashlib.sha256(
                json.dumps(declared, sort_keys=True).encode()
            ).hexdigest()[:16]
    return snapshot


def claim_folder(cluster: Cluster, claim: str, timeout: float = 60, namespace: str = NAMESPACE) -> Path:
    """The host folder behind a bound claim (the cluster's volumes are hostPath)."""
    deadline = time.monotonic() + timeout
    while True:
        body = cluster.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}") or {}
        if body.get("status", {}).get("phase") == "Bound":
            volume = cluster.get(f"/api/v1/persistentvolumes/{body['spec']['volumeName']}") or {}
            if "hostPath" in volume.get("spec", {}):
                return Path(volume["spec"]["hostPath"]["path"])
        if time.monotonic() > deadline:
            raise EngineError(f"claim {claim} is not Bound after {timeout:.0f} s: {body.get('status')}")
        time.sleep(0.5)


def job_seconds(cluster: Cluster, record: dict) -> float | None:
    """How long a release's Job ran, from its status (start to completion)."""
    status = (cluster.get(objects_of(record)["job"][0]) or {}).get("status", {})
    if not status.get("completionTime"):
        return None
    start, end = (datetime.fromisoformat(status[key]) for key in ("startTime", "completionTime"))
    return (end - start).total_seconds()


def pods_of(cluster: Cluster, record: dict, labels: dict[str, str]) -> list[dict]:
    """The pods with these labels in a release's namespace."""
    selector = urllib.parse.quote(",".join(f"{k}={v}" for k, v in labels.items()))
    listing = cluster.get(f"/api/v1/namespaces/{namespace_of(record)}/pods?labelSelector={selector}") or {}
    return listing.get("items", [])


def job_message(cluster: Cluster, record: dict) -> str | None:
    """The termination message of a release's Job (its last pod's container), as `pulumi up` quotes it."""
    pods = pods_of(cluster, record, {"job-name": objects_of(record)["job"][1]})
    for pod in sorted(pods, key=lambda pod: pod["metadata"]["creationTimestamp"], reverse=True):
        for status in pod.get("status", {}).get("containerStatuses", []):
            message = status.get("state", {}).get("terminated", {}).get("message")
            if message:
                return message.strip()
    return None


def scorer_pods(cluster: Cluster, record: dict) -> list[dict]:
    """Every scorer pod of a release (its Service's selector), Ready or not."""
    return pods_of(cluster, record, record["service"]["selector"])


def ready_pod_urls(cluster: Cluster, record: dict) -> dict[str, str]:
    """Pod name -> base URL (pod IP and the scorer's port) of every Ready scorer pod of a release."""
    urls = {}
    for pod in scorer_pods(cluster, record):
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        if conditions.get("Ready") == "True":
            urls[pod["metadata"]["name"]] = (
                f"http://{pod['status']['podIP']}:{record['service']['targetPort']}"
            )
    return urls


def serves(cluster: Cluster, record: dict, user: str) -> dict:
    """Ask every Ready scorer pod of a release for recommendations, at its pod address: each must
    answer for the release's build."""
    answers = {}
    for name, base in ready_pod_urls(cluster, record).items():
        try:
            with urllib.request.urlopen(f"{base}/recommendations/{user}?k=3", timeout=10) as reply:
                body = json.loads(reply.read())
                answers[name] = {
                    "build": reply.headers.get("X-Model-Build"),
                    "items": [item["item_id"] for item in body.get("items", [])],
                }
        except (urllib.error.URLError, OSError) as error:
            answers[name] = {"error": str(error)}
    if not answers or any(a.get("build") != record["build"] or not a.get("items") for a in answers.values()):
        raise EngineError(
            f"build {record['build']} does not serve from every Ready pod: {answers or 'no Ready pod'}"
        )
    return answers
