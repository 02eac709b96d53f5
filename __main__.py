"""`pulumi up --config build=N`: release N (images, training Job, scoring Deployment + Service)
beside the releases kept from earlier runs, on the stack's namespace, model share and registry,
and the router that splits the stable address across them.

A stack with `promoteFrom` (prod) builds and trains nothing: release N comes from the source
stack's ledger (same image digests) and a Job copies its model, verified, into this stack's share.

Everything the update will do (releases kept and retired, traffic split, router settings, the
source's record) is planned and checked first: a bad config fails before any object changes.
"""

import dataclasses

import pulumi

from components import labels, promotion, training_results
from components.azure_group import AzureGroup, AzureGroupArgs
from components.ledger import (
    DEPLOYED_OUTPUT,
    HISTORY_OUTPUT,
    TRAFFIC_OUTPUT,
    Ledger,
    LedgerArgs,
    plan_update,
    read_previous,
)
from components.model_store import ModelStore, ModelStoreArgs
from components.monitoring import Monitoring
from components.namespace import Namespace, NamespaceArgs
from components.registry import Registry, RegistryArgs
from components.router import LiveRelease, Router
from components.settings import Settings
from components.training_data import TrainingData, TrainingDataArgs

PROMOTE_FROM = "mlpipeline/promote-from"  # annotation: the stack a promoting stack reads

settings = Settings.load()
previous = read_previous()
# What the releases' training Jobs produced since (their trainers' termination messages) joins their records.
previous = dataclasses.replace(previous, releases=training_results.attach(previous.releases, settings.namespace))
plan = plan_update(settings, previous)
promoting = settings.promote_from is not None
source = (
    promotion.read_source(settings.promote_from, settings.build if plan.releases.new_build else None)
    if promoting else None
)

namespace = Namespace("namespace", NamespaceArgs.of(settings))
in_namespace = pulumi.ResourceOptions(depends_on=[namespace])
azure = AzureGroup("azure", AzureGroupArgs.of(settings)) if settings.is_azure else None
store = ModelStore("models", ModelStoreArgs.of(settings, azure), opts=in_namespace)
# A training stack builds images (into its registry on azure) and reads data; a promoting stack
# does neither: it pulls the source's images and copies the source's model.
registry = None
data = None
access = None
if not promoting:
    registry = Registry("registry", RegistryArgs.of(settings, azure), opts=in_namespace) if azure else None
    data = TrainingData("data", TrainingDataArgs.of(settings, store), opts=in_namespace)
else:
    access = promotion.SourceAccess(
        "promotion",
        namespace=settings.namespace,
        account_name=source.model_store["account"],
        share_name=source.model_store["share"],
        account_key=source.credentials["storageKey"],
        registry_server=source.registry,
        registry_username=source.credentials["registryUsername"],
        registry_password=source.credentials["registryPassword"],
        labels=labels.for_stack("promotion-source", "promotion", settings.stack, settings.build),
        annotations=labels.provenance(settings.build, settings.git_sha, **{PROMOTE_FROM: source.stack}),
        size_gib=settings.model_share_gib,
        opts=in_namespace,
    )

ledger = Ledger("ledger", LedgerArgs(
    settings=settings,
    plan=plan,
    store=store,
    data=data,
    registry=registry,
    source=source,
    depends_on=[namespace, store] + [r for r in (data, registry, access) if r is not None],
))

router = Router(
    "score",
    kind=settings.router,
    releases=[
        LiveRelease(
            build=release.build,
            dns_name=release.dns_name,
            service_name=release.service_name,
            port=release.service_port,
            target_port=release.target_port,
            selector_labels=release.selector_labels,
            deployment=release.deployment,
        )
        for release in ledger.releases.values()
    ],
    plan=plan.traffic,
    namespace=settings.namespace,
    labels=labels.for_stack("router", "router", settings.stack, settings.build),
    annotations=labels.provenance(settings.build, settings.git_sha),
    gateway=settings.gateway,
    hostnames=settings.hostnames,
    opts=in_namespace,
)

Monitoring(
    "monitoring",
    kind=settings.monitoring,
    namespace=settings.namespace,
    weights=router.weights,
    champion=router.champion,
    object_labels={**labels.for_stack("monitoring", "monitoring", settings.stack, settings.build),
                   **settings.monitoring_labels},
    opts=in_namespace,
)

pulumi.export("releases", ledger.records)
pulumi.export("liveBuilds", ledger.live_builds)
pulumi.export("retiredBuilds", ledger.retired)
pulumi.export(HISTORY_OUTPUT, ledger.history)
pulumi.export(DEPLOYED_OUTPUT, list(plan.releases.deployed))
pulumi.export(TRAFFIC_OUTPUT, {
    "router": settings.router,
    "mode": plan.traffic.mode,  # explicit: the split stays until traffic is set again; auto: newest takes 100
    "canaryPercent": settings.canary_percent,
    "weights": router.weights,
    "champion": router.champion,  # the next update's "previous champion": retention keeps it warm
    "shadow": None if plan.traffic.shadow is None else {
        "build": plan.traffic.shadow.build, "percent": plan.traffic.shadow.percent},
    "stableService": router.service_name,
})
pulumi.export("addresses", {build: release.address for build, release in ledger.releases.items()})
pulumi.export("namespace", settings.namespace)
pulumi.export("modelStore", {
    "claim": store.claim_name,
    "account": store.account_name,
    "share": store.share_name,
    "csvContainer": store.csv_container,
})
pulumi.export("registry", registry.server if registry else (source.registry if source else None))
pulumi.export("trainingData", data.location if data else None)
pulumi.export("promotedFrom", source.stack if source else None)
if store.account_key is not None and registry is not None:
    # For the stacks that promote from this one (read through a StackReference); a secret.
    pulumi.export(promotion.CREDENTIALS_OUTPUT, promotion.credentials_output(
        store.account_key, registry.username, registry.password))
