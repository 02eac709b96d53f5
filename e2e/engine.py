"""The `engine` suite: the real Pulumi engine runs the program against a real Kubernetes API server.

The toolchain (e2e/toolchain) gives `pulumi`, the Python language host, the Kubernetes provider and
the control plane; e2e/cluster.py starts a cluster on 127.0.0.1 whose node is a real kubelet
(e2e/node.py: containerd runs the pods, so the Job trains on CSVs written to the data claim, the
waiter gates and the scorer serves) or, where a kubelet cannot run, kwok (the report's
`cluster.node` says which, and why not the kubelet). The stacks live in
a throwaway project folder, .e2e/engine/project, whose Pulumi.yaml is the repo's with the program at
the repo root and the virtualenv at the repo's .venv, on a file backend (.e2e/engine/state) with a
passphrase secrets provider. Plugins are never downloaded. Each scenario asserts what the engine and
the API server did, from `pulumi`'s JSON and the objects' own generation/resourceVersion.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml

from components import model_store
from components.images import prebuilt_refs
from e2e import docker_engine, toolchain
from e2e.cluster import Cluster
from e2e.containers import FAST, ROWS
from e2e.node import Node, install_packages, unavailable
from e2e.report import Report
from local import demo
from trainer import sample

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".e2e" / "engine"
SUITE = "engine"
NAMESPACE = "mlpipeline-e2e"
STACK = "e2e"
PROMOTING_STACK = "e2e-prod"  # promoteFrom: e2e, as prod promotes dev
PASSPHRASE = "e2e-only-passphrase"  # guards the throwaway state's secrets; nothing else
# The e2e stack: the local stack's settings, the default router kind (Gateway API) for real.
STACK_CONFIG = {
    "mlpipeline:cloud": "local",
    "mlpipeline:namespace": NAMESPACE,
    "mlpipeline:keepReleases": "3",
    "mlpipeline:images": "prebuilt",  # no docker provider: the harness loads the images into the node
    "mlpipeline:dataSource": "volume",
    "mlpipeline:dataClaim": "csv-data",
    "mlpipeline:modelShareGiB": "5",
    "mlpipeline:router": "gateway",
    "mlpipeline:gateway": {"name": "web", "namespace": "infra"},
    "mlpipeline:hostnames": ["reco.e2e.local"],
    "mlpipeline:gitSha": "e2e",
    "mlpipeline:trainTimeoutMinutes": "5",
    "mlpipeline:rolloutTimeoutMinutes": "3",
    "mlpipeline:trainerEnv": FAST["trainerEnv"],  # a small tuning budget: the real node trains on 2 cores
}
# Every build a scenario deploys: their images (mlpipeline/<app>:<build>) go into the real node.
BUILDS = ("1", "2", "3")
FAILED_BUILD = "7"  # scenario 7's build, trained on bad CSVs


MODEL_CLAIM = model_store.CLAIM
# A re-declared retired record keeps everything but its place in the ledger's order.
RENUMBERED = ("sequence",)


class EngineError(AssertionError):
    pass


@dataclass
class Pulumi:
    """`pulumi` in the e2e project folder, with the toolchain first on PATH."""

    bin: Path
    kubeconfig: Path
    home: Path = HOME
    runs: list[dict] = field(default_factory=list)

    @property
    def project(self) -> Path:
        return self.home / "project"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "PULUMI_HOME": str(self.home / "pulumi-home"),
            "PULUMI_BACKEND_URL": f"file://{self.home / 'state'}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_SKIP_CONFIRMATIONS": "true",
            "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
            "KUBECONFIG": str(self.kubeconfig),
            "NO_COLOR": "1",
        }

    def prepare(self) -> None:
        """The project folder: the repo's Pulumi.yaml pointed at the repo and its .venv (the file
        backend, Pulumi's home and the logs beside it)."""
        for folder in ("project", "state", "pulumi-home", "logs"):
            (self.home / folder).mkdir(parents=True, exist_ok=True)
        project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
        project["main"] = os.path.relpath(ROOT, self.project)
        project["runtime"]["options"]["virtualenv"] = os.path.relpath(ROOT / ".venv", self.project)
        (self.project / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))

    def __call__(
        self, *args: str, stack: str | None = STACK, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        command = ["pulumi", *args, "--non-interactive"]
        if stack is not None:
            command += ["--stack", stack]
        number = len(self.runs) + 1
        log = self.home / "logs" / f"{number:02d}-{args[0]}.log"
        start = time.monotonic()
        done = subprocess.run(
            command,
            cwd=self.project,
            env=self.env(),
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        seconds = round(time.monotonic() - start, 2)
        log.write_text(
            f"$ {' '.join(command)}\n# exit {done.returncode} in {seconds} s\n"
            f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}\n"
        )
        self.runs.append({"args": list(args), "exit": done.returncode, "seconds": seconds, "log": str(log)})
        if check and done.returncode != 0:
            tail = (done.stdout + done.stderr)[-4000:]
            raise EngineError(f"`pulumi {' '.join(args)}` exited {done.returncode} (log {log}):\n{tail}")
        return done

    def seconds(self) -> float:
        return self.runs[-1]["seconds"]

    def outputs(self, stack: str = STACK) -> dict:
        return json.loads(self("stack", "output", "--json", "--show-secrets", stack=stack).stdout or "{}")

    def new_stack(self, name: str, config: dict) -> None:
        self("stack", "init", name, "--secrets-provider", "passphrase", stack=None)
        path = self.project / f"Pulumi.{name}.yaml"
        existing = yaml.safe_load(path.read_text()) if path.exists() else {}
        existing = existing or {}
        existing.setdefault("config", {}).update(config)
        path.write_text(yaml.safe_dump(existing, sort_keys=False))

    def up(self, *config: str, stack: str = STACK, check: bool = True) -> subprocess.CompletedProcess:
        flags = [flag for pair in config for flag in ("--config", pair)]
        return self("up", "--yes", "--skip-preview", *flags, stack=stack, check=check, timeout=900)

    def preview_json(self, *config: str, stack: str = STACK) -> dict:
        flags = [flag for pair in config for flag in ("--config", pair)]
        done = self("preview", "--diff", "--json", *flags, stack=stack, timeout=600)
        return json.loads(done.stdout)


# --- reading the API server -------------------------------------------------------------------


def objects_of(record: dict) -> dict[str, tuple[str, str]]:
    """kind -> (API path, name) of a release record's Job, Deployment and Service."""
    paths = {"job": "/apis/batch/v1", "deployment": "/apis/apps/v1", "service": "/api/v1"}
    plural = {"job": "jobs", "deployment": "deployments", "service": "services"}
    found = {}
    for kind, base in paths.items():
        metadata = record["objects"][kind]["metadata"]
        found[kind] = (
            f"{base}/namespaces/{metadata.get('namespace', NAMESPACE)}/{plural[kind]}/{metadata['name']}",
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


def guards_of(record: dict) -> dict[str, str]:
    """API path of each guard object of a release (components/release_guards.py) -> its kind."""
    scorer, job = f"score-{record['name']}", f"train-{record['name']}"
    base = f"namespaces/{NAMESPACE}"
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


def namespace_snapshot(cluster: Cluster) -> dict[str, str]:
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
        listing = cluster.get(f"{base}/namespaces/{NAMESPACE}/{plural}") or {"items": []}
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


def preview_steps(preview: dict) -> list[dict]:
    """The steps of a `pulumi preview --json` that change something (reads of StackReferences aside)."""
    return [step for step in preview.get("steps", []) if step.get("op") not in ("same", "read")]


def urn_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def of_release(name: str, dns_build: str) -> bool:
    """Whether a resource name belongs to one release: its component (ledger-release-<build>[-...]) or
    its guards (guards-<build>[-...]: network policies, disruption budget, autoscaler)."""
    prefix = f"-release-{dns_build}"
    return (
        name.endswith(prefix)
        or f"{prefix}-" in name
        or name == f"guards-{dns_build}"
        or name.startswith(f"guards-{dns_build}-")
    )


# --- what the real node runs ------------------------------------------------------------------


def claim_folder(cluster: Cluster, claim: str, timeout: float = 60) -> Path:
    """The host folder behind a bound claim (the cluster's volumes are hostPath)."""
    deadline = time.monotonic() + timeout
    while True:
        body = cluster.get(f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims/{claim}") or {}
        if body.get("status", {}).get("phase") == "Bound":
            volume = cluster.get(f"/api/v1/persistentvolumes/{body['spec']['volumeName']}") or {}
            if "hostPath" in volume.get("spec", {}):
                return Path(volume["spec"]["hostPath"]["path"])
        if time.monotonic() > deadline:
            raise EngineError(f"claim {claim} is not Bound after {timeout:.0f} s: {body.get('status')}")
        time.sleep(0.5)


def write_bad_csv(good: Path, folder: Path) -> int:
    """An ETL drop gone wrong: the good interactions with every third row's separator changed, so
    a third of the rows are malformed (above TRAIN_MAX_REJECTED_SHARE). Returns the rows written."""
    folder.mkdir(parents=True, exist_ok=True)
    header, *rows = next(iter(sorted(good.glob("*.csv")))).read_text().splitlines()
    rows = rows[:6000]
    broken = [row.replace(",", ";") if number % 3 == 0 else row for number, row in enumerate(rows)]
    (folder / "interactions.csv").write_text("\n".join([header, *broken]) + "\n")
    return len(rows)


def job_seconds(cluster: Cluster, record: dict) -> float | None:
    """How long a release's Job ran, from its status (start to completion)."""
    status = (cluster.get(objects_of(record)["job"][0]) or {}).get("status", {})
    if not status.get("completionTime"):
        return None
    start, end = (datetime.fromisoformat(status[key]) for key in ("startTime", "completionTime"))
    return (end - start).total_seconds()


def serves(cluster: Cluster, record: dict, user: str) -> dict:
    """Ask every Ready scorer pod of a release for recommendations, at its pod address: each must
    answer for the release's build."""
    selector = urllib.parse.quote(",".join(f"{k}={v}" for k, v in record["service"]["selector"].items()))
    listing = cluster.get(f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={selector}") or {}
    answers = {}
    for pod in listing.get("items", []):
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        if conditions.get("Ready") != "True":
            continue
        url = f"http://{pod['status']['podIP']}:{record['service']['targetPort']}/recommendations/{user}?k=3"
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                body = json.loads(reply.read())
                answers[pod["metadata"]["name"]] = {
                    "build": reply.headers.get("X-Model-Build"),
                    "items": len(body.get("items", [])),
                }
        except (urllib.error.URLError, OSError) as error:
            answers[pod["metadata"]["name"]] = {"error": str(error)}
    if not answers or any(a.get("build") != record["build"] or not a.get("items") for a in answers.values()):
        raise EngineError(
            f"build {record['build']} does not serve from every Ready pod: {answers or 'no Ready pod'}"
        )
    return answers


# --- the suite --------------------------------------------------------------------------------


def run(report: Report) -> None:
    with report.scenario(SUITE, "toolchain"):
        report.facts["toolchain"] = toolchain.ensure()
    if "toolchain" not in report.facts:
        return
    run_on_cluster(report)


def run_on_cluster(report: Report) -> None:
    """Scenarios 1 to 8 on a 127.0.0.1 cluster with a real node; 1 to 6 and 8 with kwok's."""
    folder = Path(report.facts["toolchain"]["cache"])
    started: list[Cluster] = []  # whichever cluster came up, stopped whatever happens
    shutil.rmtree(HOME, ignore_errors=True)  # a fresh file backend for this run's stacks
    try:
        with report.scenario(SUITE, "cluster up") as details:
            began = time.monotonic()
            cluster, facts = start_cluster(folder, started)
            report.facts["cluster"] = {
                "server": cluster.server,
                "kubeconfig": str(cluster.kubeconfig),
                "start_seconds": round(time.monotonic() - began, 2),
                **facts,
            }
            details.update(facts)
        if "cluster" in report.facts:
            Scenarios(report, started[-1], Pulumi(folder / "bin", started[-1].kubeconfig)).run()
    finally:
        for cluster in started:
            cluster.stop()


def start_cluster(folder: Path, started: list[Cluster]) -> tuple[Cluster, dict]:
    """A cluster whose node is a kubelet with the suite's images, or kwok's where the kubelet cannot
    run or start here; the facts say which node and why not the kubelet."""

    def cluster(node: Node | None) -> Cluster:
        started.append(
            Cluster(
                folder / "bin",
                crds=folder / "crds" / "gateway-api",
                stages=folder / "kwok-stages.yaml",
                node=node,
            )
        )
        return started[-1]

    reason = install_packages() or unavailable(folder / "bin")
    if reason is None:
        node = Node(folder / "bin")
        real = cluster(node)
        try:
            began = time.monotonic()
            real.start()
            facts = {"node": "kubelet", "node_start_seconds": round(time.monotonic() - began, 2)}
            # One build of the images serves every build id: the tag is the only stamp (local.containers)
            built = docker_engine.build_images(BUILDS[0])
            facts["images"] = node.load_images(
                {
                    name: built[app]
                    for build in (*BUILDS, FAILED_BUILD)
                    for app, name in prebuilt_refs(build).items()
                }
            )
            return real, facts
        except Exception as error:  # noqa: BLE001 - reported, and the suite runs on kwok instead
            reason = f"the kubelet node did not come up: {type(error).__name__}: {str(error)[-1500:]}"
            real.stop()
    kwok = cluster(None)
    kwok.start()
    return kwok, {"node": "kwok", "kubelet_not_run": reason}


class Scenarios:
    def __init__(self, report: Report, cluster: Cluster, pulumi: Pulumi):
        self.report, self.cluster, self.pulumi = report, cluster, pulumi
        self.figures = report.facts.setdefault("engine", {})

    def scenario(self, name: str):
        return self.report.scenario(SUITE, name)

    def run(self) -> None:
        self.pulumi.prepare()
        self.prepare_namespace()
        self.pulumi.new_stack(STACK, STACK_CONFIG)
        passed = self.first_release()
        if passed:
            passed = self.second_release()
        if passed:
            self.traffic_and_rollback()
            self.retire_and_redeploy()
            self.promoting_stack()
        self.bad_config()
        if passed and self.cluster.node is not None:
            self.failed_training()
        elif self.cluster.node is None:
            self.figures["scenario 7"] = "not run: kwok's Job pods complete without running the trainer"
        self.destroy()
        self.figures["pulumi_runs"] = self.pulumi.runs

    def prepare_namespace(self) -> None:
        """What a user of the local stack does first: the namespace and the claim with the CSVs."""
        self.cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        self.cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "csv-data", "namespace": NAMESPACE},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }
        )
        self.data = claim_folder(self.cluster, "csv-data")
        sample.write(self.data, ROWS)  # the demo's interactions: the real node trains on them

    def first_release(self) -> bool:
        with self.scenario("1 preview, then up build=1") as details:
            preview = self.pulumi.preview_json("mlpipeline:build=1")
            creates = [s for s in preview_steps(preview) if s["op"] == "create"]
            details["preview_creates"] = len(creates)
            details["preview_seconds"] = self.pulumi.seconds()
            if not creates:
                raise EngineError("the first preview plans no creates")
            self.pulumi.up("mlpipeline:build=1")
            details["up_seconds"] = self.pulumi.seconds()
            releases = self.pulumi.outputs()["releases"]
            details["job_seconds"] = job_seconds(self.cluster, releases["1"])
            if list(releases) != ["1"]:
                raise EngineError(f"stack output releases holds {list(releases)}, expected ['1']")
            details["objects"] = assert_release_live(self.cluster, releases["1"])
            details["routes"] = [r["metadata"]["name"] for r in routes(self.cluster)]
            details["weights"] = route_weights(self.cluster)
            return True
        return False

    def second_release(self) -> bool:
        with self.scenario("2 build=2 beside build 1, build 1 untouched") as details:
            before = self.pulumi.outputs()["releases"]["1"]
            versions_before = versions_of(self.cluster, before)
            changes = [
                (step["op"], urn_name(step["urn"]))
                for step in preview_steps(self.pulumi.preview_json("mlpipeline:build=2"))
            ]
            details["preview_steps"] = changes
            # Build 1's autoscaler follows the traffic like the router does: at 0 % it is pinned at its
            # minimum (kept warm for a rollback). Everything else of build 1 stays as it was.
            follows_traffic = ("update", f"guards-{before['name']}-autoscaler")
            build1 = [
                (op, name)
                for op, name in changes
                if of_release(name, before["name"]) and (op, name) != follows_traffic
            ]
            if build1:
                raise EngineError(f"the preview of build 2 changes build 1's resources: {build1}")
            creates = [name for op, name in changes if op == "create"]
            if not creates or any(not of_release(name, "2") for name in creates):
                raise EngineError(
                    f"the preview of build 2 creates {creates}, expected build 2's resources only"
                )
            self.pulumi.up("mlpipeline:build=2")
            releases = self.pulumi.outputs()["releases"]
            if sorted(releases) != ["1", "2"]:
                raise EngineError(f"releases after build 2: {sorted(releases)}")
            versions_after = versions_of(self.cluster, releases["1"])
            details["build1_generation_resourceVersion"] = {
                "before": versions_before,
                "after": versions_after,
            }
            if versions_after != versions_before:
                raise EngineError(f"build 1's objects changed: {versions_before} -> {versions_after}")
            for build in ("1", "2"):
                assert_release_live(self.cluster, releases[build])
            details["weights"] = route_weights(self.cluster)
            return True
        return False

    def traffic_and_rollback(self) -> None:
        with self.scenario(
            "3 traffic 90/10 reaches the route; rollback 100/0 changes the router (and autoscalers) only"
        ) as details:
            releases = self.pulumi.outputs()["releases"]
            services = {build: releases[build]["service"]["name"] for build in ("1", "2")}
            before = namespace_snapshot(self.cluster)
            self.pulumi.up('mlpipeline:traffic={"1": 90, "2": 10}')
            weights = route_weights(self.cluster)
            details["split"] = weights
            if weights.get(services["1"]) != 90 or weights.get(services["2"]) != 10:
                raise EngineError(f"route weights {weights}, expected 90/10 on {services}")
            self.pulumi.up('mlpipeline:traffic={"1": 100}')
            weights = route_weights(self.cluster)
            details["rollback"] = weights
            if weights.get(services["1"]) != 100 or weights.get(services["2"], 0) != 0:
                raise EngineError(f"route weights after rollback {weights}")
            after_rollback = namespace_snapshot(self.cluster)
            changed = sorted(
                k for k in set(before) | set(after_rollback) if before.get(k) != after_rollback.get(k)
            )
            details["changed_objects"] = changed
            # The router, and the autoscalers that follow the traffic (pinned at minimum at 0 %).
            if any(not key.startswith(("httproutes/", "horizontalpodautoscalers/")) for key in changed):
                raise EngineError(f"traffic changes touched more than the router and autoscalers: {changed}")

    def retire_and_redeploy(self) -> None:
        with self.scenario(
            "4 keepReleases=2 and build 3 retire build 1; build=1 re-declares it verbatim"
        ) as details:
            original = self.pulumi.outputs()["releases"]["1"]
            build1 = objects_of(original)
            # Retention never drops the release serving the traffic: move it to build 2 first.
            self.pulumi.up('mlpipeline:traffic={"2": 100}')
            self.pulumi("config", "set", "mlpipeline:keepReleases", "2")
            self.pulumi.up("mlpipeline:build=3", "mlpipeline:traffic=auto")
            outputs = self.pulumi.outputs()
            details["after_build3"] = {
                "live": sorted(outputs["releases"]),
                "retired": outputs["retiredBuilds"],
            }
            if sorted(outputs["releases"]) != ["2", "3"] or "1" not in outputs["retiredReleases"]:
                raise EngineError(
                    f"after build 3 with keepReleases=2: live {sorted(outputs['releases'])}, "
                    f"retired records {sorted(outputs['retiredReleases'])}"
                )
            left = {kind: name for kind, (path, name) in build1.items() if self.cluster.get(path) is not None}
            left.update(
                {
                    kind: path
                    for path, kind in guards_of(original).items()
                    if self.cluster.get(path) is not None
                }
            )
            if left:
                raise EngineError(f"build 1's objects are still in the API server: {left}")
            # The model folders live on the share, which no retirement touches: its claim stays bound.
            claims = {
                name.split("/", 1)[1]
                for name in namespace_snapshot(self.cluster)
                if name.startswith("persistentvolumeclaims/")
            }
            details["claims"] = sorted(claims)
            if MODEL_CLAIM not in claims:
                raise EngineError(
                    f"the model share's claim {MODEL_CLAIM} is gone after retiring build 1: {claims}"
                )
            self.pulumi.up("mlpipeline:build=1")
            again = self.pulumi.outputs()["releases"]
            details["after_redeploy"] = sorted(again)
            if "1" not in again:
                raise EngineError(f"build=1 did not re-declare build 1: live {sorted(again)}")
            differ = sorted(
                k
                for k in set(original) | set(again["1"])
                if k not in RENUMBERED and original.get(k) != again["1"].get(k)
            )
            if differ:
                raise EngineError(f"build 1 re-declared with other {differ} than its retired record")
            details["objects"] = assert_release_live(self.cluster, again["1"])

    def promoting_stack(self) -> None:
        """A prod-like stack promoting from the e2e stack, as far as it runs without Azure: the program
        reads the source's ledger through a real StackReference on the file backend and checks the
        record before declaring anything (the Azure share, registry and copy Job are only under mocks)."""
        with self.scenario("5 a promoting stack reads the source stack's releases (file backend)") as details:
            live = sorted(self.pulumi.outputs()["releases"], key=int)
            # prod's own config, promoting from this suite's stack instead of dev
            prod = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]
            self.pulumi.new_stack(
                PROMOTING_STACK,
                {
                    **prod,
                    "mlpipeline:promoteFrom": STACK,
                    "mlpipeline:namespace": f"{NAMESPACE}-prod",
                    "mlpipeline:gitSha": "e2e",
                },
            )
            before = namespace_snapshot(self.cluster)
            expected = {
                "99": f"build 99 is not a live release of stack {STACK} (its releases: {', '.join(live)})",
                live[-1]: f"stack {STACK}'s images of build {live[-1]} are not pinned by digest",
            }
            for build, message in expected.items():
                done = self.pulumi(
                    "preview", "--config", f"mlpipeline:build={build}", stack=PROMOTING_STACK, check=False
                )
                output = done.stdout + done.stderr
                details[f"build {build}"] = next(
                    (line.strip() for line in output.splitlines() if message in line), None
                )
                if done.returncode == 0 or details[f"build {build}"] is None:
                    raise EngineError(
                        f"promoting build {build}: exit {done.returncode}, expected {message!r}:\n"
                        f"{output[-3000:]}"
                    )
            if namespace_snapshot(self.cluster) != before:
                raise EngineError("a refused promotion changed objects in the source's namespace")
            self.pulumi("stack", "rm", "--yes", "--force", stack=PROMOTING_STACK)

    def bad_config(self) -> None:
        live = sorted(self.pulumi.outputs().get("releases", {}), key=int)[:2]
        weights = json.dumps(dict(zip(live, (50, 10))))
        for name, config, expected in (
            (
                "6 weights not summing to 100 fail before any change",
                f"mlpipeline:traffic={weights}",
                f"traffic {weights} rejected: weights sum to 60, not 100",
            ),
            (
                "6 unknown key fails before any change",
                "mlpipeline:trafic=1",
                "unknown config key(s) mlpipeline:trafic",
            ),
        ):
            with self.scenario(name) as details:
                before = namespace_snapshot(self.cluster)
                done = self.pulumi.up(config, check=False)
                output = done.stdout + done.stderr
                details["exit"] = done.returncode
                details["message"] = next(
                    (line.strip() for line in output.splitlines() if expected in line), None
                )
                if done.returncode == 0:
                    raise EngineError(f"`pulumi up --config {config}` succeeded")
                if details["message"] is None:
                    raise EngineError(f"the failure does not name {expected!r}:\n{output[-3000:]}")
                after = namespace_snapshot(self.cluster)
                if after != before:
                    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
                    raise EngineError(f"objects changed although the config was refused: {changed}")
                # `up --config` wrote the refused value into the stack's config file: take it out
                self.pulumi("config", "rm", config.split("=")[0])

    def failed_training(self) -> None:
        """Scenario 7 (real node only): the trainer refuses bad CSVs, the Job fails, `pulumi up` stops
        there with the trainer's reason; the live releases' objects are untouched and they serve, and
        the stack's outputs (the ledger the next update reads) are still those of the last good one."""
        previous = None
        with self.scenario(
            "7 a failed training (bad CSV) fails up at the Job with the trainer's reason; "
            "the old releases keep serving, the ledger stays"
        ) as details:
            outputs = self.pulumi.outputs()
            live = outputs["releases"]
            before = {build: versions_of(self.cluster, record) for build, record in live.items()}
            details["trained_seconds"] = {build: job_seconds(self.cluster, r) for build, r in live.items()}
            details["bad_rows"] = write_bad_csv(self.data, self.data / "bad")
            previous = self.pulumi("config", "get", "mlpipeline:build").stdout.strip()
            done = self.pulumi.up(f"mlpipeline:build={FAILED_BUILD}", "mlpipeline:csvFolder=bad", check=False)
            output = done.stdout + done.stderr
            details["exit"], details["up_seconds"] = done.returncode, self.pulumi.seconds()
            expected = ("the data cannot make a trustworthy model", "are broken", "TRAIN_MAX_REJECTED_SHARE")
            details["reason"] = next(
                (line.strip() for line in output.splitlines() if expected[0] in line), None
            )
            job = self.cluster.get(f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/train-{FAILED_BUILD}") or {}
            conditions = job.get("status", {}).get("conditions", [])
            details["job_conditions"] = {c["type"]: c.get("reason") for c in conditions}
            if done.returncode == 0:
                raise EngineError(f"`pulumi up` of build {FAILED_BUILD} on bad CSVs succeeded")
            if details["reason"] is None or not all(part in output for part in expected):
                raise EngineError(
                    f"the failure does not give the trainer's reason {expected}:\n{output[-4000:]}"
                )
            if details["job_conditions"].get("Failed") is None:
                raise EngineError(f"Job train-{FAILED_BUILD} has not failed: {job.get('status')}")
            if self.cluster.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/score-{FAILED_BUILD}"):
                raise EngineError(
                    f"the update went past the failed Job: Deployment score-{FAILED_BUILD} exists"
                )
            after = {build: versions_of(self.cluster, record) for build, record in live.items()}
            if after != before:
                raise EngineError(
                    f"the failed update changed the live releases' objects: {before} -> {after}"
                )
            user = demo.sample_users(self.data, 1)[0]
            details["serving"] = {build: serves(self.cluster, record, user) for build, record in live.items()}
            for record in live.values():
                assert_release_live(self.cluster, record)
            moved = {
                key: {"before": outputs.get(key), "after": value}
                for key, value in self.pulumi.outputs().items()
                if outputs.get(key) != value
            }
            details["outputs_changed"] = sorted(moved)
            if moved:
                raise EngineError(
                    f"the failed update moved the stack's outputs on, so the next update "
                    f"would read a ledger with build {FAILED_BUILD} live: "
                    f"{json.dumps(moved)[:3000]}"
                )
        # the stack's config as before, whatever happened: the live build and the data folder
        shutil.rmtree(self.data / "bad", ignore_errors=True)
        self.pulumi("config", "rm", "mlpipeline:csvFolder", check=False)
        if previous:
            self.pulumi("config", "set", "mlpipeline:build", previous)

    def destroy(self) -> None:
        with self.scenario("8 destroy leaves nothing behind") as details:
            self.pulumi("destroy", "--yes", "--skip-preview", timeout=900)
            details["destroy_seconds"] = self.pulumi.seconds()
            left = {}
            namespace = self.cluster.get(f"/api/v1/namespaces/{NAMESPACE}")
            if namespace is not None and namespace["status"].get("phase") != "Terminating":
                left["namespace"] = namespace["status"]
            snapshot = namespace_snapshot(self.cluster)
            snapshot.pop("persistentvolumeclaims/csv-data", None)  # the user's data claim, not the stack's
            left.update(snapshot)
            details["left"] = left
            if left:
                raise EngineError(f"objects left after destroy: {left}")
