"""The Pulumi SDK internals the program relies on (components/sdk_internals.py) are still there and
still behave as used. A pulumi upgrade fails here first, naming what moved, before any rendering does."""

import asyncio
import contextvars
import importlib
import importlib.metadata
import re

import pulumi
import pulumi_kubernetes as k8s
import pytest

from components import sdk_internals
from components.build import PROJECT_ROOT
from local.render import MASK, render_components


def test_the_pinned_sdk_is_the_one_the_internals_were_checked_against():
    requirements = (PROJECT_ROOT / "requirements.txt").read_text(encoding="utf-8")
    pinned = re.search(r"^pulumi==(\S+)", requirements, flags=re.MULTILINE).group(1)
    installed = importlib.metadata.version("pulumi")
    assert pinned == installed == sdk_internals.SDK_VERSION, (
        f"pulumi {installed} is installed, {pinned} pinned, components/sdk_internals.py was checked against "
        f"{sdk_internals.SDK_VERSION}: check each function there against the new SDK's sources, run "
        "tests/components/test_sdk_internals.py, then set SDK_VERSION"
    )


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("pulumi.runtime.sync_await", "_sync_await"),
        ("pulumi.runtime.config", "CONFIG"),
        ("pulumi.runtime.config", "get_config_env"),
        ("pulumi.runtime.rpc", "is_rpc_secret"),
        ("pulumi.runtime.rpc", "deserialize_properties"),
        ("pulumi.runtime.settings", "ROOT"),
        ("pulumi.runtime.stack", "run_pulumi_func"),
        ("pulumi.runtime.mocks", "MockMonitor"),
    ],
)
def test_every_internal_is_still_there(module, name):
    assert hasattr(importlib.import_module(module), name), (
        f"{module}.{name} is gone from pulumi {importlib.metadata.version('pulumi')}: "
        "components/sdk_internals.py needs another way to do what it did"
    )


def test_the_mock_monitor_still_takes_registrations_as_the_harness_records_them():
    for method in ("RegisterResource", "ReadResource", "RegisterResourceOutputs"):
        assert callable(getattr(sdk_internals.MockMonitor, method, None)), f"MockMonitor.{method} is gone"


def test_sync_await_gives_the_value_of_an_awaitable():
    async def answer():
        await asyncio.sleep(0)
        return 42

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        assert sdk_internals.sync_await(answer()) == 42
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_configured_keys_are_every_key_given_to_the_program():
    def configure():
        pulumi.runtime.set_all_config({"mlpipeline:build": "153", "mlpipeline:tarffic": "{}"})
        return sdk_internals.configured_keys()

    assert {"mlpipeline:build", "mlpipeline:tarffic"} <= contextvars.Context().run(configure)


def test_a_stack_output_is_a_plain_value_while_the_program_runs():
    releases = {"153": {"build": "153", "sequence": 1}}

    def declare():
        ref = pulumi.StackReference("organization/mlpipeline/dev")
        value = sdk_internals.stack_output_now(ref, "releases")
        assert not isinstance(value, pulumi.Output)  # needed as a value: it decides what to declare
        return {"releases": value, "absent": sdk_internals.stack_output_now(ref, "nothing")}

    rendering = render_components(declare, previous_outputs={"releases": releases})
    assert rendering.result == {"releases": releases, "absent": None}


def test_secrets_are_recognised_in_what_reaches_the_engine():
    rendering = render_components(
        lambda: k8s.core.v1.Secret(
            "s", metadata={"name": "s"}, string_data=pulumi.Output.secret({"k": "hush"})
        )
    )
    secret = rendering.one("Secret")
    assert secret.public_inputs["stringData"] == MASK
    assert secret.inputs["stringData"] == {"k": "hush"}
