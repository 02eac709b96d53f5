"""Promotion: a stack with `promoteFrom` (prod) deploys a release the source stack (dev) built.

Nothing is built or trained. For `pulumi up --config build=153` the stack reads release 153 from
the source stack's `releases` output (a StackReference) and records it in its own ledger:

    images, build, gitSha, createdAt, modelFolder    verbatim from the source record: the same
                                                     image digests, the same model folder
    Deployment, Service                              rendered for this stack (its namespace,
                                                     replicas, resources, gates), as any release
    Job promote-<build>                              in place of train-<build>: the waiter image
                                                     runs `python -m modelshare.promote`, copying
                                                     <source share>/<build> into this stack's
                                                     share and checking every sha256 against the
                                                     source manifest, and the model against this
                                                     stack's own gate, before writing complete.txt

The Deployment waits for the Job (as it waits for training elsewhere) and its waiter verifies the
manifest again before the scorer starts. The Job fails fast as training does: a damaged source file
or a build below this stack's gate fails it at the first refusal, and `pulumi up` with it, naming
the file or the gate. From then on the release is re-declared from this
stack's own ledger like any other, so the source may retire 153 without touching this stack.

SourceAccess (once per stack) reaches the source: its model share through a static
PersistentVolume on the volume the source exports (components/volume_source.py: the same Azure
Files share on azure, the same hostPath or provisioned volume on a local cluster), mounted
READ-ONLY, and, when the source has a registry with credentials (azure), through an image pull
Secret; a local cluster's nodes pull the source's digests from its `localRegistry` themselves. The
account key and the registry password come from the source stack's secret output
`promotionCredentials` and stay Pulumi secrets into the Kubernetes Secrets; they are never props of
a component.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import pulumi
import pulumi_kubernetes as k8s

from components import labels, release_spec, volume_source
from components.images import APPS
from components.model_store import ACCOUNT_KEY_KEY, ACCOUNT_NAME_KEY, static_claim
from components.registry import PULL_SECRET, pull_secret
from components.release import recorded_data_location
from components.sdk_internals import stack_output_now

SOURCE_CLAIM = "promotion-source"  # fixed, so the volume can be reserved for exactly this claim
SOURCE_MOUNT = "/mnt/source"  # the source stack's share, read-only
CREDENTIALS_OUTPUT = "promotionCredentials"  # secret stack output of a source stack


class PromotionError(ValueError):
    """The source stack's release cannot be promoted; the message says why."""


def job_name(dns_build: str) -> str:
    return f"promote-{dns_build}"


@dataclass(frozen=True)
class Source:
    """What a promoting stack reads from its source stack."""

    stack: str  # as configured in promoteFrom
    record: release_spec.ReleaseRecord | None  # the source's record of the build; None when this stack has it
    volume: Mapping[str, Any]  # the source's model share volume (its `modelStore` output's `volume`)
    account: str | None  # azure: the source's storage account (the share's node-stage secret names it)
    registry: str | None  # azure: the source's registry login server; local: None (nodes pull)
    credentials: pulumi.Output[Any] | None  # secret: storageKey, registryUsername, registryPassword

    @property
    def pull_secret_name(self) -> str | None:
        return PULL_SECRET if self.registry is not None and self.credentials is not None else None

    @property
    def stage_secret(self) -> str | None:
        """The Secret a promoting stack makes for the share's node stage, from the source's key."""
        return (
            f"{SOURCE_CLAIM}-storage" if self.credentials is not None and self.account is not None else None
        )

    @property
    def data_location(self) -> str | None:
        """Where the source trained the release: its record's training Job says."""
        if self.record is None:
            return None
        return recorded_data_location(self.record)


def read_source(stack: str, build: str | None) -> Source:
    """Reference the source stack; with `build`, also take (and check) its record of that build."""
    parts = stack.count("/")
    qualified = (
        stack
        if parts == 2
        else (
            f"{pulumi.get_organization()}/{stack}"
            if parts == 1
            else f"{pulumi.get_organization()}/{pulumi.get_project()}/{stack}"
        )
    )
    ref = pulumi.StackReference(qualified)
    record = None
    if build is not None:
        # Which objects to declare depends on the record: needed as a value, as the ledger's own.
        releases = stack_output_now(ref, "releases")
        record = source_record(build, stack, releases if isinstance(releases, Mapping) else None)
    store = stack_output_now(ref, "modelStore")
    store = store if isinstance(store, Mapping) else {}
    if not isinstance(store.get("volume"), Mapping):
        raise PromotionError(
            f"stack {stack} exports no model share volume (its modelStore output has no volume): "
            f"run `pulumi up` on {stack} once with this version, then promote"
        )
    offered = stack_output_now(ref, CREDENTIALS_OUTPUT) is not None
    registry = stack_output_now(ref, "registry")
    source = Source(
        stack=stack,
        record=record,
        volume=store["volume"],
        account=store.get("account"),
        registry=registry if isinstance(registry, str) else None,
        credentials=pulumi.Output.secret(ref.require_output(CREDENTIALS_OUTPUT)) if offered else None,
    )
    try:  # checked with the plan, before any object is declared
        volume_source.check(
            source.volume, f"stack {stack}'s model share volume", source.stage_secret is not None
        )
    except volume_source.VolumeSourceError as exc:
        raise PromotionError(str(exc)) from None
    return source


def source_record(
    build: str, source_stack: str, releases: Mapping[str, Any] | None
) -> release_spec.ReleaseRecord:
    """The source stack's record of `build`, checked to be promotable."""
    releases = releases or {}
    if build not in releases:
        listed = ", ".join(sorted(releases, key=lambda b: _sequence(releases[b]))) or "none"
        raise PromotionError(
            f"build {build} is not a live release of stack {source_stack} (its releases: {listed}); "
            "promote a build the source still has"
        )
    record = releases[build]
    images = record.get("images") if isinstance(record, Mapping) else None
    if not isinstance(images, Mapping) or set(images) != set(APPS):
        raise PromotionError(
            f"stack {source_stack}'s record of build {build} has no images {', '.join(APPS)}"
        )
    unpinned = sorted(app for app, ref in images.items() if "@sha256:" not in str(ref))
    if unpinned:
        raise PromotionError(
            f"stack {source_stack}'s images of build {build} are not pinned by digest "
            f"({', '.join(unpinned)}): "
            "only a release pushed to a registry can be promoted"
        )
    if record.get("modelFolder") != release_spec.model_folder(build):
        raise PromotionError(
            f"stack {source_stack}'s record of build {build} has model folder {record.get('modelFolder')!r}, "
            f"expected {release_spec.model_folder(build)}"
        )
    return cast(release_spec.ReleaseRecord, dict(record))


def _sequence(record: Any) -> float:
    return record.get("sequence", 0) if isinstance(record, Mapping) else 0


def promoted_record(
    t: release_spec.ReleaseTemplate, b: release_spec.BuildInfo, source_stack: str
) -> release_spec.ReleaseRecord:
    """The record of a promoted release: `b` holds the source's images, git sha and created time,
    `t` this stack's settings; the training Job's place is taken by the copy Job."""
    record = release_spec.record(t, b, promotion_job(t, b))
    record["promotedFrom"] = source_stack
    return record


def promotion_job(t: release_spec.ReleaseTemplate, b: release_spec.BuildInfo) -> dict[str, Any]:
    """Job promote-<build>: copy and verify the source's model folder, in the release's own pod
    profile (waiter image, pull secret, restricted security context, model share), with the
    training Job's deadline and resources: it takes that Job's place, and its two copies at a time
    each want a CPU (modelshare.promote), where the waiter's half a CPU would serialise them.

    It fails fast as training does (release_spec.job): modelshare.promote refuses a build below
    this stack's own gate (the GATE_* the waiter gets) or a damaged source file before it writes
    complete.txt, naming the gate or the file in its termination message, and the first refusal
    fails the Job and `pulumi up` within seconds, instead of the waiter crash-looping until the
    rollout deadline. The copy is idempotent (a complete, verifying copy is left alone), so a
    `pulumi up` after a lost node or a flaky mount finishes the job."""
    copier = release_spec.container(
        "promote",
        b.images["waiter"],
        "modelshare.promote",
        [
            {"name": "SOURCE_MODELFOLDER", "value": f"{SOURCE_MOUNT}/{b.build.id}"},
            {"name": "MODELFOLDER", "value": release_spec.model_folder(b.build.id)},
            {"name": "BUILD_NUMBER", "value": b.build.id},
            *({"name": name, "value": value} for name, value in release_spec.gate_env(t).items()),
        ],
        t.resources["trainer"],
        models_read_only=False,
        extra_mounts=[{"name": "source", "mountPath": SOURCE_MOUNT, "readOnly": True}],
    )
    copier["terminationMessagePolicy"] = release_spec.TERMINATION_MESSAGE_POLICY
    source = {"name": "source", "persistentVolumeClaim": {"claimName": SOURCE_CLAIM, "readOnly": True}}
    pod = {**release_spec.pod_spec(t.models_claim, t.pull_secret, "Never", [source]), "containers": [copier]}
    return release_spec.job(
        job_name(b.build.dns),
        t.namespace,
        labels.recommended("promoter", job_name(b.build.dns), b.build.id, "promotion"),
        release_spec.provenance(t, b),
        t.train_timeout_seconds,
        pod,
    )


@dataclass(frozen=True)
class SourceAccessArgs:
    namespace: str
    source: Source
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    size_gib: int = 100


class SourceAccess(pulumi.ComponentResource):
    """The source stack's model share (read-only) and registry (pull), in this stack's namespace."""

    claim_name: str
    pull_secret_name: str | None

    def __init__(self, name: str, args: SourceAccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # Credentials are never props of this component: props go to the state in plain text.
        super().__init__("mlpipeline:promotion:SourceAccess", name, None, opts)
        namespace, source = args.namespace, args.source
        child = pulumi.ResourceOptions(parent=self)
        meta = {"labels": dict(args.labels), "annotations": dict(args.annotations)}
        try:  # read_source checked it already: this guards a Source made otherwise
            spec = volume_source.read_only_spec(
                source.volume,
                namespace=namespace,
                claim=SOURCE_CLAIM,
                size=f"{args.size_gib}Gi",
                stage_secret=source.stage_secret,
            )
        except volume_source.VolumeSourceError as exc:
            raise PromotionError(f"stack {source.stack}: {exc}") from None
        secrets = []
        if source.stage_secret is not None:
            # The share's node-stage secret: the source's is in its own namespace, maybe cluster.
            assert source.credentials is not None
            secrets.append(
                k8s.core.v1.Secret(
                    f"{name}-storage",
                    metadata={**meta, "name": source.stage_secret, "namespace": namespace},
                    type="Opaque",
                    string_data=pulumi.Output.secret(
                        {ACCOUNT_NAME_KEY: source.account, ACCOUNT_KEY_KEY: source.credentials["storageKey"]}
                    ),
                    opts=child,
                )
            )
        static_claim(
            name,
            namespace=namespace,
            claim=SOURCE_CLAIM,
            metadata=meta,
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self, depends_on=secrets),
        )
        self.pull_secret_name = source.pull_secret_name
        if source.pull_secret_name is not None:
            # The promoted releases' pods pull the source's images by digest from its registry.
            assert source.credentials is not None and source.registry is not None
            pull_secret(
                f"{name}-pull-secret",
                {**meta, "name": source.pull_secret_name, "namespace": namespace},
                source.registry,
                source.credentials["registryUsername"],
                source.credentials["registryPassword"],
                opts=child,
            )
        self.claim_name = SOURCE_CLAIM
        self.register_outputs({"claimName": self.claim_name, "pullSecretName": self.pull_secret_name})


def credentials_output(
    account_key: pulumi.Input[str], registry_username: pulumi.Input[str], registry_password: pulumi.Input[str]
) -> pulumi.Output[dict]:
    """What a source stack exports, as one secret, for the stacks that promote from it."""
    return pulumi.Output.secret(
        {
            "storageKey": account_key,
            "registryUsername": registry_username,
            "registryPassword": registry_password,
        }
    )
