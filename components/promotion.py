"""Promotion: a stack with `promoteFrom` (prod) copies the source stack's model instead of training.

SourceShare   once per stack: the source stack's Azure file share, mounted READ-ONLY through
              a static PersistentVolume + claim, authenticated by a Secret holding the source
              account key (a Pulumi secret end to end: config/StackReference -> Secret).
Promotion     once per build: Job `promote-<build>` running the release's waiter image as
              `python -m modelshare.promote`, which copies <source>/<build> into this stack's
              share and checks every file's sha256 against the source manifest before it
              writes complete.txt. The waiter of the promoted release then verifies the same
              manifest before the scorer starts. Idempotent, like training: a re-run is a no-op.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
from pulumi_kubernetes.batch.v1 import Job, JobSpecArgs
from pulumi_kubernetes.core.v1 import (
    CapabilitiesArgs,
    ContainerArgs,
    CSIPersistentVolumeSourceArgs,
    EnvVarArgs,
    ObjectReferenceArgs,
    PersistentVolume,
    PersistentVolumeClaim,
    PersistentVolumeClaimSpecArgs,
    PersistentVolumeClaimVolumeSourceArgs,
    PersistentVolumeSpecArgs,
    PodSecurityContextArgs,
    PodSpecArgs,
    PodTemplateSpecArgs,
    ResourceRequirementsArgs,
    SeccompProfileArgs,
    Secret,
    SecretReferenceArgs,
    SecurityContextArgs,
    VolumeArgs,
    VolumeMountArgs,
    VolumeResourceRequirementsArgs,
)
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

MODELS_MOUNT = "/mnt/models"  # this stack's share, as in every pod of the stack (Contract 1)
SOURCE_MOUNT = "/mnt/source"  # the source stack's share, read-only
AZURE_FILE_DRIVER = "file.csi.azure.com"
# The waiter image's non-root user; the Job runs under the same restricted profile as the pods.
RUN_AS = 10001


class SourceShare(pulumi.ComponentResource):
    """The source stack's Azure file share, mountable read-only in this stack's namespace."""

    def __init__(
        self,
        name: str,
        *,
        account_name: pulumi.Input[str],
        share_name: pulumi.Input[str],
        account_key: pulumi.Input[str],
        namespace: pulumi.Input[str],
        labels: Mapping[str, str] | None = None,
        resource_group: pulumi.Input[str] | None = None,
        capacity: str = "100Gi",
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        # The key is never a prop of this component: props go to the state in plain text.
        super().__init__("mlpipeline:promotion:SourceShare", name, None, opts)
        labels = {**(labels or {}), "app.kubernetes.io/component": "promotion"}
        secret = Secret(
            f"{name}-key",
            metadata=ObjectMetaArgs(namespace=namespace, labels=labels),
            type="Opaque",
            # Key names the Azure Files CSI driver reads.
            string_data=pulumi.Output.secret(
                {"azurestorageaccountname": account_name, "azurestorageaccountkey": account_key}
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        attributes: dict[str, pulumi.Input[str]] = {"shareName": share_name}
        if resource_group is not None:  # only when the account is outside the cluster's group
            attributes["resourceGroup"] = resource_group
        claim_name = name  # fixed, so the volume can be reserved for exactly this claim
        volume = PersistentVolume(
            f"{name}-pv",
            metadata=ObjectMetaArgs(
                labels=labels, annotations={"pv.kubernetes.io/provisioned-by": AZURE_FILE_DRIVER}
            ),
            spec=PersistentVolumeSpecArgs(
                capacity={"storage": capacity},
                access_modes=["ReadOnlyMany"],
                persistent_volume_reclaim_policy="Retain",  # never delete the source's files
                storage_class_name="",  # static: bound to the claim below, never provisioned
                claim_ref=ObjectReferenceArgs(namespace=namespace, name=claim_name),
                # Read-only at the SMB mount, not only in the pod spec; world-readable so the
                # non-root Job can read whatever uid owns the files.
                mount_options=[
                    "ro",
                    "dir_mode=0555",
                    "file_mode=0444",
                    "mfsymlinks",
                    "cache=strict",
                    "nosharesock",
                ],
                csi=CSIPersistentVolumeSourceArgs(
                    driver=AZURE_FILE_DRIVER,
                    read_only=True,
                    # Unique per cluster; the driver refuses '#' in a self-chosen handle.
                    volume_handle=pulumi.Output.all(namespace, account_name, share_name).apply(
                        lambda parts: "-".join(["mlpipeline-source", *parts])
                    ),
                    volume_attributes=attributes,
                    node_stage_secret_ref=SecretReferenceArgs(name=secret.metadata.name, namespace=namespace),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        claim = PersistentVolumeClaim(
            f"{name}-pvc",
            metadata=ObjectMetaArgs(name=claim_name, namespace=namespace, labels=labels),
            spec=PersistentVolumeClaimSpecArgs(
                access_modes=["ReadOnlyMany"],
                storage_class_name="",
                volume_name=volume.metadata.name,
                resources=VolumeResourceRequirementsArgs(requests={"storage": capacity}),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.claim_name: pulumi.Output[str] = claim.metadata.name
        self.register_outputs({"claim_name": self.claim_name})


class Promotion(pulumi.ComponentResource):
    """Copies one build's model folder from the source share into this stack's share."""

    def __init__(
        self,
        name: str,
        *,
        build: str,
        dns_name: str,
        waiter_image: pulumi.Input[str],
        models_claim: pulumi.Input[str],
        source_claim: pulumi.Input[str],
        namespace: pulumi.Input[str] | None = None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        timeout_seconds: int = 1800,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mlpipeline:promotion:Promotion", name, None, opts)
        labels = {**(labels or {}), "app.kubernetes.io/component": "promotion"}
        annotations = dict(annotations or {})
        env = {
            "SOURCE_MODELFOLDER": f"{SOURCE_MOUNT}/{build}",
            "MODELFOLDER": f"{MODELS_MOUNT}/{build}",
            "BUILD_NUMBER": build,
        }
        container = ContainerArgs(
            name="promote",
            image=waiter_image,
            command=["python", "-m", "modelshare.promote"],
            env=[EnvVarArgs(name=key, value=value) for key, value in env.items()],
            volume_mounts=[
                VolumeMountArgs(name="models", mount_path=MODELS_MOUNT),
                VolumeMountArgs(name="source", mount_path=SOURCE_MOUNT, read_only=True),
            ],
            resources=ResourceRequirementsArgs(
                requests={"cpu": "100m", "memory": "128Mi"}, limits={"memory": "512Mi"}
            ),
            security_context=SecurityContextArgs(
                allow_privilege_escalation=False,
                read_only_root_filesystem=True,
                run_as_non_root=True,
                capabilities=CapabilitiesArgs(drop=["ALL"]),
            ),
        )
        job = Job(
            f"{name}-job",
            metadata=ObjectMetaArgs(
                name=f"promote-{dns_name}", namespace=namespace, labels=labels, annotations=annotations
            ),
            spec=JobSpecArgs(
                backoff_limit=2,
                active_deadline_seconds=timeout_seconds,
                template=PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(labels=labels, annotations=annotations),
                    spec=PodSpecArgs(
                        restart_policy="Never",
                        automount_service_account_token=False,  # the copy needs no API access
                        security_context=PodSecurityContextArgs(
                            run_as_non_root=True,
                            run_as_user=RUN_AS,
                            run_as_group=RUN_AS,
                            fs_group=RUN_AS,
                            seccomp_profile=SeccompProfileArgs(type="RuntimeDefault"),
                        ),
                        containers=[container],
                        volumes=[
                            VolumeArgs(
                                name="models",
                                persistent_volume_claim=PersistentVolumeClaimVolumeSourceArgs(
                                    claim_name=models_claim
                                ),
                            ),
                            VolumeArgs(
                                name="source",
                                persistent_volume_claim=PersistentVolumeClaimVolumeSourceArgs(
                                    claim_name=source_claim, read_only=True
                                ),
                            ),
                        ],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                # pulumi-kubernetes waits for the Job to complete: allow a large model's copy.
                custom_timeouts=pulumi.CustomTimeouts(
                    create=f"{timeout_seconds}s", update=f"{timeout_seconds}s"
                ),
            ),
        )
        self.job_name: pulumi.Output[str] = job.metadata.name
        self.job = job
        self.register_outputs({"job_name": self.job_name})
