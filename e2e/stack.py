"""The engine suite's stack: its name, namespace, settings and builds (the `local` stack's settings
with the default router kind, Gateway API, for real), shared by the suite's scenarios and by
`python -m bench engine`.
"""

from __future__ import annotations

from components import model_store
from e2e.containers import FAST

STACK = "e2e"
PROMOTING_STACK = "e2e-prod"  # promoteFrom: e2e, as prod promotes dev
NIGHTLY_STACK = "dev"  # scenario 10: the nightly workflow names its stack; canaryPercent from Pulumi.dev.yaml
NAMESPACE = "mlpipeline-e2e"
DATA_CLAIM = "csv-data"  # the user's claim with the interactions CSVs, made before the first `up`
MODEL_CLAIM = model_store.CLAIM
STACK_CONFIG = {
    "mlpipeline:cloud": "local",
    "mlpipeline:namespace": NAMESPACE,
    "mlpipeline:keepReleases": "3",
    "mlpipeline:images": "prebuilt",  # kwok's pods run nothing; on a real node, engine_images()
    "mlpipeline:dataSource": "volume",
    "mlpipeline:dataClaim": DATA_CLAIM,
    "mlpipeline:modelShareGiB": "5",
    "mlpipeline:router": "gateway",
    "mlpipeline:gateway": {"name": "web", "namespace": "infra"},
    "mlpipeline:hostnames": ["reco.e2e.local"],
    "mlpipeline:gitSha": "e2e",
    "mlpipeline:trainTimeoutMinutes": "5",
    "mlpipeline:rolloutTimeoutMinutes": "3",
    "mlpipeline:trainerEnv": FAST["trainerEnv"],  # a small tuning budget: the real node trains on 2 cores
}
FAILED_BUILD = "7"  # scenario 7's build, trained on bad CSVs


def engine_images(registry_host: str) -> dict:
    """The stack on a real node: the engine builds and pushes the images (pulumi-docker-build) to the
    suite's registry, as a kind or minikube user's `localRegistry`, and the pods pull them by digest."""
    return {**STACK_CONFIG, "mlpipeline:images": "build", "mlpipeline:localRegistry": registry_host}
