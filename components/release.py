"""One release = one build: its training Job, scoring Deployment and Service, declared from its record,
and the guards around them.

A Release never renders anything: it declares exactly the objects of its record (rendered once,
for a new build, by components/release_spec.py). The same code path serves a new build and every
kept one, which is what makes old releases byte-for-byte stable across `pulumi up`s. It is also the
one reader of a record's objects (with the ledger that keeps the records): what others need - the
build, the Job's name and pod labels, the scorer's selector, ports and Service - it exposes as typed
attributes.

Around its pods it declares its guards (components/release_guards.py: NetworkPolicies, disruption
budget, autoscaler) from the stack's operating policy, the one part of a release that follows the
stack's config. Nothing of a release follows the traffic: an idle release's autoscaler sits at its
minimum by itself, so moving traffic is a router change only.

Ordering: Deployment after the Job completed (pulumi-kubernetes awaits Job completion, with the
timeout from the record's `pulumi.com/timeoutSeconds`), Service after the Deployment is
Available. A failed training therefore fails the update at once, instead of a Deployment waiting
out its rollout timeout on a model that will never come. The waiter init container still holds
every pod (first rollout, restarts, rescheduling) until the model verifies and passes the gate.

Deployments get `ignore_changes=["spec.replicas"]`: their autoscaler owns the count.
Jobs get `ignore_changes=["spec"]`: a Job's pod template is immutable, a replacement would
re-run training, and its spec is already pinned by the record; this is the second lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import labels
from components.build import Build
from components.release_guards import OperatingPolicy, ReleaseGuards, ReleaseGuardsArgs
from components.release_spec import ReleaseRecord

KINDS = {"job": ("batch/v1", "Job"), "deployment": ("apps/v1", "Deployment"), "service": ("v1", "Service")}


class RecordError(ValueError):
    """A release record that cannot be declared; the message names the build and the field."""


@dataclass(frozen=True)
class ReleaseArgs:
    record: ReleaseRecord  # image refs may still be Outputs for a new build
    policy: OperatingPolicy  # the stack's, for its guards
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)  # namespace, claim, secrets
    guards_depend_on: Sequence[pulumi.Resource] = field(default_factory=tuple)  # the namespace


def check_objects(record: Mapping[str, Any]) -> None:
    build = record.get("build", "?")
    objects = record.get("objects")
    if not isinstance(objects, Mapping):
        raise RecordError(f"release {build}: record has no objects")
    for key, (api_version, kind) in KINDS.items():
        obj = objects.get(key)
        if not isinstance(obj, Mapping) or obj.get("apiVersion") != api_version or obj.get("kind") != kind:
            raise RecordError(f"release {build}: objects.{key} must be a {api_version} {kind}")
        if not isinstance(obj.get("metadata"), Mapping) or not obj["metadata"].get("name"):
            raise RecordError(f"release {build}: objects.{key}.metadata.name is missing")
        if not isinstance(obj.get("spec"), Mapping):
            raise RecordError(f"release {build}: objects.{key}.spec is missing")
    if record.get("name") != Build(str(build)).dns:
        raise RecordError(f"release {build}: name {record.get('name')!r} is not the build's DNS form")


# What other modules need of a record they hold before any Release exists (a source stack's
# record): read here, so that no module outside the ledger and this one knows the record's nested
# shape. Each tolerates a record without the field (None).
def _recorded_job_metadata(record: Mapping[str, Any]) -> Mapping[str, Any]:
    return record.get("objects", {}).get("job", {}).get("metadata", {})


def recorded_data_location(record: Mapping[str, Any]) -> str | None:
    """Where the release's Job read its training data (its mlpipeline/data annotation)."""
    return _recorded_job_metadata(record).get("annotations", {}).get(labels.DATA)


def recorded_scorer_secrets(record: Mapping[str, Any]) -> set[str]:
    """The Secrets the release's scorer pods mount as volumes (e.g. the feedback key's)."""
    pod = record.get("objects", {}).get("deployment", {}).get("spec", {}).get("template", {}).get("spec", {})
    return {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}


class Release(pulumi.ComponentResource):
    build: Build  # as given to `pulumi up`, and its DNS-safe form (the record's name)
    git_sha: str  # the source revision the release was built from
    namespace: str
    job_name: str  # train-<dns> or promote-<dns>
    job_pod_labels: Mapping[str, str]  # the Job's pod template labels
    deployment_name: str  # score-<dns>
    service_name: str
    service_port: int
    target_port: int  # the scorer container's port
    selector_labels: Mapping[str, str]  # exactly this release's scorer pods
    address: str  # cluster DNS name of the release's Service
    job: k8s.batch.v1.Job
    deployment: k8s.apps.v1.Deployment
    service: k8s.core.v1.Service
    guards: ReleaseGuards
    record: ReleaseRecord  # as declared; a new build's image refs are still Outputs

    def __init__(self, name: str, args: ReleaseArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlpipeline:release:Release", name, None, opts)
        record = args.record
        check_objects(record)
        objects = record["objects"]
        base = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))

        # Never replaced by a change (its spec is locked), only on request: `pulumi up --replace
        # <its URN>` runs a refused or failed Job again, deleted first since its name is fixed.
        self.job = k8s.batch.v1.Job(
            f"{name}-train",
            metadata=objects["job"]["metadata"],
            spec=objects["job"]["spec"],
            opts=pulumi.ResourceOptions.merge(
                base, pulumi.ResourceOptions(ignore_changes=["spec"], delete_before_replace=True)
            ),
        )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-score",
            metadata=objects["deployment"]["metadata"],
            spec=objects["deployment"]["spec"],
            # The release's HorizontalPodAutoscaler (components/release_guards.py) owns the replica
            # count once the Deployment exists; the record's is the starting count.
            opts=pulumi.ResourceOptions.merge(
                base, pulumi.ResourceOptions(depends_on=[self.job], ignore_changes=["spec.replicas"])
            ),
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=objects["service"]["metadata"],
            spec=objects["service"]["spec"],
            opts=pulumi.ResourceOptions.merge(base, pulumi.ResourceOptions(depends_on=[self.deployment])),
        )

        service = record["service"]
        job = objects["job"]
        self.build = Build(record["build"])
        self.git_sha = record["gitSha"]
        self.namespace = objects["deployment"]["metadata"]["namespace"]
        self.job_name = job["metadata"]["name"]
        self.job_pod_labels = dict(job["spec"]["template"]["metadata"]["labels"])
        self.deployment_name = objects["deployment"]["metadata"]["name"]
        self.service_name = service["name"]
        self.service_port = int(service["port"])
        self.target_port = int(service["targetPort"])
        self.selector_labels = dict(service["selector"])
        self.address = service["address"]
        self.record = record
        self.guards = self._guards(args)
        self.register_outputs({"build": self.build.id, "address": self.address})

    def _guards(self, args: ReleaseArgs) -> ReleaseGuards:
        # Named guards-<dns> under the release (not <release name>-guards): the URN it always had.
        name = f"guards-{self.build.dns}"
        return ReleaseGuards(
            name,
            ReleaseGuardsArgs(
                namespace=self.namespace,
                score_name=self.deployment_name,
                score_selector=self.selector_labels,
                port=self.target_port,
                job_name=self.job_name,
                job_pod_labels=self.job_pod_labels,
                policy=args.policy,
                labels=labels.recommended("release-guards", name, self.build.id, "policy"),
                annotations=labels.provenance(self.build.id, self.git_sha),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.guards_depend_on)),
        )
