"""Every use of the Pulumi Python SDK's non-public parts, in one place.

The program needs a few things the SDK has no public API for: a stack output as a plain value
while the program runs (which releases exist decides which resources to declare, so an Output
will not do), the names of every configured key (to reject a misspelt one), and, for running
`__main__.py` under mocks (local/render.py, the tests), the mock monitor and the runtime's
program runner and root resource. They are checked against the pinned SDK (requirements.txt) by
tests/components/test_sdk_internals.py, which fails naming the part that moved when an upgrade
changes one of them. Nothing else in the project imports from `pulumi.runtime.<module>`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pulumi
from pulumi.runtime import config as _config
from pulumi.runtime import mocks as _mocks
from pulumi.runtime import rpc as _rpc
from pulumi.runtime import settings as _settings
from pulumi.runtime import stack as _stack
from pulumi.runtime import sync_await as _sync

T = TypeVar("T")

SDK_VERSION = "3.272.0"  # the pulumi release these parts were checked against; requirements.txt pins it

# The stock mock monitor; local/mocks.py and the component tests subclass it to record registrations.
MockMonitor = _mocks.MockMonitor


def sync_await(awaitable: Awaitable[T]) -> T:
    """Wait for `awaitable` inside the running program (the SDK pumps its own event loop)."""
    return _sync._sync_await(awaitable)


def stack_output_now(ref: pulumi.StackReference, name: str) -> Any:
    """The value of output `name` of the referenced stack, secret or not; None when it has none.

    Read during preview too: a StackReference is read, not created, so its value is known then."""
    details = sync_await(ref.get_output_details(name))
    return details.value if details.value is not None else details.secret_value


def configured_keys() -> set[str]:
    """Every config key the program was given ("project:key"), from the CLI or from mocks."""
    return set(_config.CONFIG.get()) | set(_config.get_config_env())


def is_secret(value: Any) -> bool:
    """Whether a deserialized property is a secret wrapper ({<sig>: <secret sig>, "value": ...})."""
    return _rpc.is_rpc_secret(value)


def deserialize_properties(struct: Any) -> Any:
    """A registration request's properties as Python values, secrets still wrapped."""
    return _rpc.deserialize_properties(struct)


def reset_root_resource() -> None:
    """Forget the root stack resource, so that the next program run under mocks creates its own."""
    _settings.ROOT.set(None)


async def run_program(program: Callable[[], Any]) -> None:
    """Run `program` as the SDK runs a Pulumi program, waiting for every registration."""
    await _stack.run_pulumi_func(program)
