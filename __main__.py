"""`pulumi up --config build=N`: release N (images, training Job, scoring Deployment + Service)
beside the releases kept from earlier runs, on the stack's namespace, model share and registry."""

import pulumi

from components.azure_group import AzureGroup, AzureGroupArgs
from components.ledger import Ledger, LedgerArgs
from components.model_store import ModelStore, ModelStoreArgs
from components.namespace import Namespace, NamespaceArgs
from components.registry import Registry, RegistryArgs
from components.settings import Settings
from components.training_data import TrainingData, TrainingDataArgs

settings = Settings.load()

namespace = Namespace("namespace", NamespaceArgs.of(settings))
in_namespace = pulumi.ResourceOptions(depends_on=[namespace])
azure = AzureGroup("azure", AzureGroupArgs.of(settings)) if settings.is_azure else None
store = ModelStore("models", ModelStoreArgs.of(settings, azure), opts=in_namespace)
registry = Registry("registry", RegistryArgs.of(settings, azure), opts=in_namespace) if azure else None
data = TrainingData("data", TrainingDataArgs.of(settings, store), opts=in_namespace)

ledger = Ledger("ledger", LedgerArgs(
    settings=settings,
    store=store,
    data=data,
    registry=registry,
    depends_on=[namespace, store, data] + ([registry] if registry else []),
))

pulumi.export("releases", ledger.records)
pulumi.export("liveBuilds", ledger.live_builds)
pulumi.export("retiredBuilds", ledger.retired)
pulumi.export("addresses", {build: release.address for build, release in ledger.releases.items()})
pulumi.export("namespace", settings.namespace)
pulumi.export("modelStore", {
    "claim": store.claim_name,
    "account": store.account_name,
    "share": store.share_name,
    "csvContainer": store.csv_container,
})
pulumi.export("registry", registry.server if registry else None)
pulumi.export("trainingData", data.location)
