"""The `engine` suite: the real Pulumi engine runs the program against a real Kubernetes API server.

The toolchain (e2e/toolchain) gives `pulumi`, the Python language host, the Kubernetes provider and
the control plane; e2e/cluster.py starts a cluster on 127.0.0.1 with a kwok node. The stacks live in
a throwaway project folder, .e2e/engine/project, whose Pulumi.yaml is the repo's with the program at
the repo root and the virtualenv at the repo's .venv, on a file backend (.e2e/engine/state) with a
passphrase secrets provider. Plugins are never downloaded. Each scenario asserts what the engine and
the API server did, from `pulumi`'s JSON and the objects' own generation/resourceVersion.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from components import model_store
from e2e import toolchain
from e2e.cluster import Cluster
from e2e.report import Report

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
    "mlpipeline:images": "prebuilt",  # no docker provider: the suite needs no image, kwok runs none
    "mlpipeline:dataSource": "volume",
    "mlpipeline:dataClaim": "csv-data",
    "mlpipeline:modelShareGiB": "5",
    "mlpipeline:router": "gateway",
    "mlpipeline:gateway": {"name": "web", "namespace": "infra"},
    "mlpipeline:hostnames": ["reco.e2e.local"],
    "mlpipeline:gitSha": "e2e",
    "mlpipeline:trainTimeoutMinutes": "5",
    "mlpipeline:rolloutTimeoutMinutes": "3",
}


MODEL_CLAIM = model_store.CLAIM
# A re-declared retired record keeps everything but its place in the ledger's order.
RENUMBERED = ("sequence",)


class EngineError(AssertionError):
    pass


@dataclass
class Pulumi:
    """`pulumi` in the e2e project folder, with the toolchain first on PATH."""
    bin: Path
    kubeconfig: Path | None
    home: Path = HOME
    folder: str = "project"  # the project folder under home
    runs: list[dict] = field(default_factory=list)

    @property
    def project(self) -> Path:
        return self.home / self.folder

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
            **({"KUBECONFIG": str(self.kubeconfig)} if self.kubeconfig else {}),
            "NO_COLOR": "1",
        }

    def prepare(self) -> None:
        """The project folder: the repo's Pulumi.yaml pointed at the repo and its .venv."""
        for folder in (self.folder, "state", "pulumi-home", "logs"):
            if folder != self.folder and (self.home / folder).exists():
                continue  # shared by every project of the run
            shutil.rmtree(self.home / folder, ignore_errors=True)
            (self.home / folder).mkdir(parents=True)
        project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
        project["main"] = os.path.relpath(ROOT, self.project)
        project["runtime"]["options"]["virtualenv"] = os.path.relpath(ROOT / ".venv", self.project)
        (self.project / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))

    def __call__(self, *args: str, stack: str | None = STACK, check: bool = True,
                 timeout: float = 600) -> subprocess.CompletedProcess:
        command = ["pulumi", *args, "--non-interactive"]
        if stack is not None:
            command += ["--stack", stack]
        number = len(self.runs) + 1
        log = self.home / "logs" / f"{number:02d}-{args[0]}.log"
        start = time.monotonic()
        done = subprocess.run(command, cwd=self.project, env=self.env(), text=True, capture_output=True,
                              timeout=timeout, check=False)
        seconds = round(time.monotonic() - start, 2)
        log.write_text(f"$ {' '.join(command)}\n# exit {done.returncode} in {seconds} s\n"
                       f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}\n")
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
        found[kind] = (f"{base}/namespaces/{metadata.get('namespace', NAMESPACE)}/{plural[kind]}/{metadata['name']}",
                       metadata["name"])
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
        raise EngineError(f"expected one HTTPRoute in {NAMESPACE}, found {[r['metadata']['name'] for r in found]}")
    for rule in found[0]["spec"]["rules"]:
        if not any(match.get("headers") for match in rule.get("matches", [])):
            return {ref["name"]: ref.get("weight", 1) for ref in rule.get("backendRefs", [])}
    raise EngineError("the HTTPRoute has no split rule")


def assert_release_live(cluster: Cluster, record: dict) -> dict:
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
    """kind/name -> resourceVersion of everything the program manages in the namespace."""
    snapshot = {}
    for base, plural in (("/apis/batch/v1", "jobs"), ("/apis/apps/v1", "deployments"), ("/api/v1", "services"),
                         ("/api/v1", "configmaps"), ("/api/v1", "secrets"), ("/api/v1", "persistentvolumeclaims"),
                         ("/apis/gateway.networking.k8s.io/v1", "httproutes")):
        listing = cluster.get(f"{base}/namespaces/{NAMESPACE}/{plural}") or {"items": []}
        for item in listing["items"]:
            snapshot[f"{plural}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
    return snapshot


def preview_steps(preview: dict) -> list[dict]:
    """The steps of a `pulumi preview --json` that change something (reads of StackReferences aside)."""
    return [step for step in preview.get("steps", []) if step.get("op") not in ("same", "read")]


def urn_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def of_release(name: str, dns_build: str) -> bool:
    """Whether a resource name belongs to one release's component (ledger-release-<build>[-...])."""
    prefix = f"-release-{dns_build}"
    return name.endswith(prefix) or f"{prefix}-" in name


# --- the suite --------------------------------------------------------------------------------

def run(report: Report) -> None:
    with report.scenario(SUITE, "toolchain"):
        report.facts["toolchain"] = toolchain.ensure()
    if "toolchain" not in report.facts:
        return
    run_on_cluster(report)


def run_on_cluster(report: Report) -> None:
    """Scenarios 1 to 6 and 8 on a 127.0.0.1 cluster with a kwok node."""
    folder = Path(report.facts["toolchain"]["cache"])
    cluster = Cluster(folder / "bin", crds=folder / "crds" / "gateway-api", stages=folder / "kwok-stages.yaml")
    shutil.rmtree(HOME, ignore_errors=True)  # a fresh file backend for this run's stacks
    try:
        with report.scenario(SUITE, "cluster up"):
            began = time.monotonic()
            cluster.start()
            report.facts["cluster"] = {"server": cluster.server, "kubeconfig": str(cluster.kubeconfig),
                                       "start_seconds": round(time.monotonic() - began, 2), "node": "kwok"}
        if "cluster" in report.facts:
            Scenarios(report, cluster, Pulumi(folder / "bin", cluster.kubeconfig)).run()
    finally:
        cluster.stop()


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
        self.destroy()
        self.figures["pulumi_runs"] = self.pulumi.runs

    def prepare_namespace(self) -> None:
        """What a user of the local stack does first: the namespace and the claim with the CSVs."""
        self.cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        self.cluster.apply({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "csv-data", "namespace": NAMESPACE},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        })

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
            changes = [(step["op"], urn_name(step["urn"])) for step in
                       preview_steps(self.pulumi.preview_json("mlpipeline:build=2"))]
            details["preview_steps"] = changes
            build1 = [(op, name) for op, name in changes if of_release(name, before["name"])]
            if build1:
                raise EngineError(f"the preview of build 2 changes build 1's resources: {build1}")
            creates = [name for op, name in changes if op == "create"]
            if not creates or any(not of_release(name, "2") for name in creates):
                raise EngineError(f"the preview of build 2 creates {creates}, expected build 2's resources only")
            self.pulumi.up("mlpipeline:build=2")
            releases = self.pulumi.outputs()["releases"]
            if sorted(releases) != ["1", "2"]:
                raise EngineError(f"releases after build 2: {sorted(releases)}")
            versions_after = versions_of(self.cluster, releases["1"])
            details["build1_generation_resourceVersion"] = {"before": versions_before, "after": versions_after}
            if versions_after != versions_before:
                raise EngineError(f"build 1's objects changed: {versions_before} -> {versions_after}")
            for build in ("1", "2"):
                assert_release_live(self.cluster, releases[build])
            details["weights"] = route_weights(self.cluster)
            return True
        return False

    def traffic_and_rollback(self) -> None:
        with self.scenario("3 traffic 90/10 reaches the route; rollback 100/0 changes the router only") as details:
            releases = self.pulumi.outputs()["releases"]
            services = {build: releases[build]["service"]["name"] for build in ("1", "2")}
            before = namespace_snapshot(self.cluster)
            self.pulumi.up('mlpipeline:traffic={"1": 90, "2": 10}')
            weights = route_weights(self.cluster)
            details["split"] = weights
            if weights.get(services["1"]) != 90 or weights.get(services["2"]) != 10:
                raise EngineError(f"route weights {weights}, expected 90/10 on {services}")
            after_split = namespace_snapshot(self.cluster)
            self.pulumi.up('mlpipeline:traffic={"1": 100}')
            weights = route_weights(self.cluster)
            details["rollback"] = weights
            if weights.get(services["1"]) != 100 or weights.get(services["2"], 0) != 0:
                raise EngineError(f"route weights after rollback {weights}")
            after_rollback = namespace_snapshot(self.cluster)
            changed = sorted(k for k in set(before) | set(after_rollback) if before.get(k) != after_rollback.get(k))
            details["changed_objects"] = changed
            if any(not key.startswith("httproutes/") for key in changed):
                raise EngineError(f"traffic changes touched more than the router: {changed}")
            del after_split

    def retire_and_redeploy(self) -> None:
        with self.scenario("4 keepReleases=2 and build 3 retire build 1; build=1 re-declares it verbatim") as details:
            original = self.pulumi.outputs()["releases"]["1"]
            build1 = objects_of(original)
            # Retention never drops the release serving the traffic: move it to build 2 first.
            self.pulumi.up('mlpipeline:traffic={"2": 100}')
            self.pulumi("config", "set", "mlpipeline:keepReleases", "2")
            self.pulumi.up("mlpipeline:build=3", "mlpipeline:traffic=auto")
            outputs = self.pulumi.outputs()
            details["after_build3"] = {"live": sorted(outputs["releases"]), "retired": outputs["retiredBuilds"]}
            if sorted(outputs["releases"]) != ["2", "3"] or "1" not in outputs["retiredReleases"]:
                raise EngineError(f"after build 3 with keepReleases=2: live {sorted(outputs['releases'])}, "
                                  f"retired records {sorted(outputs['retiredReleases'])}")
            left = {kind: name for kind, (path, name) in build1.items() if self.cluster.get(path) is not None}
            if left:
                raise EngineError(f"build 1's objects are still in the API server: {left}")
            # The model folders live on the share, which no retirement touches: its claim stays bound.
            claims = {name.split("/", 1)[1] for name in namespace_snapshot(self.cluster)
                      if name.startswith("persistentvolumeclaims/")}
            details["claims"] = sorted(claims)
            if MODEL_CLAIM not in claims:
                raise EngineError(f"the model share's claim {MODEL_CLAIM} is gone after retiring build 1: {claims}")
            self.pulumi.up("mlpipeline:build=1")
            again = self.pulumi.outputs()["releases"]
            details["after_redeploy"] = sorted(again)
            if "1" not in again:
                raise EngineError(f"build=1 did not re-declare build 1: live {sorted(again)}")
            differ = sorted(k for k in set(original) | set(again["1"])
                            if k not in RENUMBERED and original.get(k) != again["1"].get(k))
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
            self.pulumi.new_stack(PROMOTING_STACK, {**prod, "mlpipeline:promoteFrom": STACK,
                                                    "mlpipeline:namespace": f"{NAMESPACE}-prod",
                                                    "mlpipeline:gitSha": "e2e"})
            before = namespace_snapshot(self.cluster)
            expected = {
                "99": f"build 99 is not a live release of stack {STACK} (its releases: {', '.join(live)})",
                live[-1]: f"stack {STACK}'s images of build {live[-1]} are not pinned by digest",
            }
            for build, message in expected.items():
                done = self.pulumi("preview", "--config", f"mlpipeline:build={build}", stack=PROMOTING_STACK,
                                   check=False)
                output = done.stdout + done.stderr
                details[f"build {build}"] = next((line.strip() for line in output.splitlines() if message in line),
                                                 None)
                if done.returncode == 0 or details[f"build {build}"] is None:
                    raise EngineError(f"promoting build {build}: exit {done.returncode}, expected {message!r}:\n"
                                      f"{output[-3000:]}")
            if namespace_snapshot(self.cluster) != before:
                raise EngineError("a refused promotion changed objects in the source's namespace")
            self.pulumi("stack", "rm", "--yes", "--force", stack=PROMOTING_STACK)

    def bad_config(self) -> None:
        live = sorted(self.pulumi.outputs().get("releases", {}), key=int)[:2]
        weights = json.dumps(dict(zip(live, (50, 10))))
        for name, config, expected in (
            ("6 weights not summing to 100 fail before any change", f"mlpipeline:traffic={weights}",
             f"traffic {weights} rejected: weights sum to 60, not 100"),
            ("6 unknown key fails before any change", "mlpipeline:trafic=1", "unknown config key(s) mlpipeline:trafic"),
        ):
            with self.scenario(name) as details:
                before = namespace_snapshot(self.cluster)
                done = self.pulumi.up(config, check=False)
                output = done.stdout + done.stderr
                details["exit"] = done.returncode
                details["message"] = next((line.strip() for line in output.splitlines() if expected in line), None)
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
