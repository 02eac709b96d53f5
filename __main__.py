"""`pulumi up --config build=N`: release N (images, training Job, scoring Deployment + Service)
beside the releases kept from earlier runs, on the stack's namespace, model share and registry,
and the router that splits the stable address across them.

A stack with `promoteFrom` (prod) builds and trains nothing: release N comes from the source
stack's ledger (same image digests) and a Job copies its model, verified, into this stack's share.

Everything the update will do (releases kept and retired, traffic split, router settings, the
source's record) is planned and checked first (components/plan.py): a bad config fails before any
object changes. Every component's arguments are built here, from the settings; no component
reads the config itself.
"""

import pulumi

from components import feedback_key, labels, release_spec, volume_source
from components.azure_group import AzureGroup, AzureGroupArgs
from components.feedback_key import FeedbackKey, FeedbackKeyArgs
from components.ledger import Ledger, LedgerArgs
from components.model_store import ModelStore, ModelStoreArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.namespace import Namespace, NamespaceArgs
from components.plan import DEPLOYED_OUTPUT, HISTORY_OUTPUT, TRAFFIC_OUTPUT, plan_update, read_previous
from components.promotion import (
    CREDENTIALS_OUTPUT,
    SourceAccess,
    SourceAccessArgs,
    credentials_output,
    read_source,
)
from components.registry import Registry, RegistryArgs
from components.release_guards import OperatingPolicy
from components.router import Router, RouterArgs
from components.settings import Settings
from components.training_data import TrainingData, TrainingDataArgs

PROMOTE_FROM = "mlpipeline/promote-from"  # annotation: the stack a promoting stack reads

settings = Settings.load()


def shared(name: str, component: str, **annotations: str) -> dict:
    """Labels and annotations of an object the whole stack shares (not one release's)."""
    return {
        "labels": labels.for_stack(name, component, settings.stack, settings.build.id),
        "annotations": labels.provenance(settings.build.id, settings.git_sha, **annotations),
    }


# --- plan: previous outputs -> what this update does ----------------------------------------------
previous = read_previous()
plan = plan_update(settings, previous)
source = None
if settings.promote_from is not None:  # the source's record, when the build is new here
    source = read_source(settings.promote_from, settings.build.id if plan.releases.new_build else None)

# --- the stack's namespace, model share, registry and training data -------------------------------
namespace = Namespace("namespace", NamespaceArgs(name=settings.namespace, **shared("namespace", "namespace")))
in_namespace = pulumi.ResourceOptions(depends_on=[namespace])
azure = (
    AzureGroup(
        "azure",
        AzureGroupArgs(
            name=settings.azure_resource_group,
            location=settings.azure_location,
            tags={"project": settings.project, "stack": settings.stack, "managed-by": "pulumi"},
        ),
    )
    if settings.is_azure
    else None
)
store = ModelStore(
    "models",
    ModelStoreArgs(
        namespace=settings.namespace,
        size_gib=settings.model_share_gib,
        azure=azure,
        storage_class=settings.local_storage_class,
        access_mode=settings.local_access_mode,
        **shared("model-store", "storage"),
    ),
    opts=in_namespace,
)
# A training stack builds images (into its registry on azure) and reads data; a promoting stack
# does neither: it pulls the source's images and copies the source's model.
registry = data = access = None
if source is None:
    if azure is not None:
        registry = Registry(
            "registry",
            RegistryArgs(namespace=settings.namespace, azure=azure, **shared("registry", "registry")),
            opts=in_namespace,
        )
    data = TrainingData(
        "data",
        TrainingDataArgs(
            source=settings.data,
            namespace=settings.namespace,
            store=store,
            blob_key=settings.blob_key,
            **shared("training-data", "data"),
        ),
        opts=in_namespace,
    )
else:
    access = SourceAccess(
        "promotion",
        SourceAccessArgs(
            namespace=settings.namespace,
            source=source,
            size_gib=settings.model_share_gib,
            **shared("promotion-source", "promotion", **{PROMOTE_FROM: source.stack}),
        ),
        opts=in_namespace,
    )

# The key that authenticates the scorer's request ids: one Secret, mounted by the releases rendered with it.
feedback = (
    FeedbackKey(
        "feedback",
        FeedbackKeyArgs(
            namespace=settings.namespace, key=settings.feedback_key, **shared("feedback-key", "feedback")
        ),
        opts=in_namespace,
    )
    if settings.feedback_key is not None
    else None
)

# --- releases: kept ones from their records, the new one rendered (components/release_spec.py) ----
# Each release declares its guards (network policies, disruption budget, autoscaler) from the stack's
# operating policy: the one thing of an older release that follows the config (components/README.md).
ledger = Ledger(
    "ledger",
    LedgerArgs(
        plan=plan.releases,
        build=settings.build,
        git_sha=settings.git_sha,
        template=release_spec.ReleaseTemplate(
            namespace=settings.namespace,
            models_claim=store.claim_name,
            data_env=data.env if data else [],
            data_volumes=data.volumes if data else [],
            data_mounts=data.mounts if data else [],
            trainer_env=settings.trainer_env,
            gate_min_ndcg=settings.gate_min_ndcg,
            gate_min_lift=settings.gate_min_lift,
            wait_timeout_seconds=settings.wait_timeout_seconds,
            train_timeout_seconds=settings.train_timeout_minutes * 60,
            rollout_timeout_seconds=settings.rollout_timeout_minutes * 60,
            replicas=settings.min_replicas,
            resources=settings.resources,
            pull_secret=source.pull_secret_name
            if source
            else (registry.pull_secret_name if registry else None),
            champion=plan.gate_champion,
            champion_tolerance=settings.champion_tolerance,
            drift_env=settings.drift_env,
            data_location=data.location if data else (source.data_location if source else None),
            # pushed to a registry (azure's, the source's, or localRegistry): pulled by digest
            images_pushed=settings.images != "prebuilt"
            and (registry is not None or source is not None or settings.local_registry is not None),
            scorer_env=feedback_key.scorer_env(
                settings.feedback_events, settings.feedback_window_seconds, keyed=feedback is not None
            ),
            scorer_volumes=[feedback.volume] if feedback else [],
            scorer_mounts=[feedback.mount] if feedback else [],
        ),
        policy=OperatingPolicy(
            min_replicas=settings.min_replicas,
            max_replicas=settings.max_replicas,
            ingress_from=[*settings.scorer_ingress_from, *settings.metrics_scrapers],
            job_egress=data.egress if data else [],
        ),
        registry=registry,
        push_to=settings.local_registry,
        prebuilt_images=settings.images == "prebuilt",
        source=source,
        depends_on=[namespace, store] + [r for r in (data, registry, access, feedback) if r is not None],
        guards_depend_on=[namespace],
    ),
)

# --- the stable address: weights decided by the plan (components/traffic.py) ----------------------
router = Router(
    "score",
    RouterArgs(
        kind=settings.router,
        releases=list(ledger.releases.values()),
        plan=plan.traffic,
        namespace=settings.namespace,
        gateway=settings.gateway,
        hostnames=settings.hostnames,
        **shared("router", "router"),
    ),
    opts=in_namespace,
)

# --- how Prometheus watches the releases ----------------------------------------------------------
Monitoring(
    "monitoring",
    MonitoringArgs(
        kind=settings.monitoring,
        namespace=settings.namespace,
        weights=router.weights,
        champion=router.champion,
        labels={**shared("monitoring", "monitoring")["labels"], **settings.monitoring_labels},
    ),
    opts=in_namespace,
)

# --- outputs (docs/CONTRACTS.md, section 5) -------------------------------------------------------
# The ledger moves on only once every release is live (its Service exists after its Job completed
# and its Deployment became Available): when an update fails (a training refused, a rollout past its
# deadline), the stack keeps the previous outputs, so the next update neither keeps the failed build
# as live with the traffic nor retires a release that still serves (`make e2e`, scenario 7).
releases_live = pulumi.Output.all(*(release.service.id for release in ledger.releases.values()))


def once_live(value: object) -> pulumi.Output:
    return pulumi.Output.all(releases_live, value).apply(lambda resolved: resolved[1])


pulumi.export("releases", once_live(ledger.records))
pulumi.export("liveBuilds", once_live(ledger.live_builds))
pulumi.export("retiredBuilds", once_live(ledger.retired))
pulumi.export(HISTORY_OUTPUT, once_live(ledger.history))
pulumi.export(DEPLOYED_OUTPUT, once_live(list(plan.releases.deployed)))
pulumi.export(
    TRAFFIC_OUTPUT,
    once_live(
        {
            "router": settings.router,
            # explicit: the split stays until traffic is set again; auto: the newest takes 100
            "mode": plan.traffic.mode,
            "canaryPercent": settings.canary_percent,
            "weights": router.weights,
            "champion": router.champion,  # the next update's "previous champion": retention keeps it warm
            "shadow": None
            if plan.traffic.shadow is None
            else {"build": plan.traffic.shadow.build, "percent": plan.traffic.shadow.percent},
            "stableService": router.service_name,
        }
    ),
)
pulumi.export("addresses", {build: release.address for build, release in ledger.releases.items()})
pulumi.export("namespace", settings.namespace)
pulumi.export(
    "modelStore",
    {
        "claim": store.claim_name,
        "account": store.account_name,
        "share": store.share_name,
        "csvContainer": store.csv_container,
        # what a promoting stack mounts read-only: the volume bound to the claim, once it is bound
        "volume": volume_source.exported(releases_live, settings.namespace, store.claim_name),
    },
)
pulumi.export("registry", registry.server if registry else (source.registry if source else None))
pulumi.export("trainingData", data.location if data else None)
pulumi.export("promotedFrom", source.stack if source else None)
if store.account_key is not None and registry is not None:
    # For the stacks that promote from this one (read through a StackReference); a secret.
    credentials = credentials_output(store.account_key, registry.username, registry.password)
    pulumi.export(CREDENTIALS_OUTPUT, credentials)
