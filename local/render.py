"""Evaluate the Pulumi program under mocks: every resource it declares, with its inputs, and its outputs.

The one mock harness: it runs `__main__.py` (or, for component tests, any function declaring
resources: `render_components`) without a Pulumi engine. Used by the tests, the benchmark and
`make demo` (which plays the rendered Job and Deployment as local processes):

    rendering = render("local", {"build": "153"})
    rendering = render("local", {"build": "154"}, previous_releases=rendering.outputs["releases"])
    rendering.k8s("Job")          # [{"apiVersion": "batch/v1", "kind": "Job", "metadata": ..., "spec": ...}]

The mocks (local/mocks.py) answer in place of the engine, the providers and the kubelet: the
stack's StackReference to itself answers `previous_outputs` (all outputs of the last update), or
{"releases": previous_releases}; other stacks, images, the trainers' termination messages
(`pod_messages`) and Azure's names and fake secrets (MOCK_SECRETS) are described there.

Each call runs in a fresh contextvars.Context with its own event loop, so Pulumi's global
state (settings, root stack, config) does not leak from one evaluation into the next and many
evaluations can run in one process. Config comes from Pulumi.<stack>.yaml (as the CLI reads it;
Pulumi.yaml's defaults are not applied - the program's defaults are in code) overlaid by `config`.

`python -m local.render STACK [KEY=VALUE ...] [--previous FILE]` prints the rendering as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import runpy
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml

from components import catalogue, sdk_internals, training_results, volume_source
from local.mocks import MASK, ORGANIZATION, Mocks, Monitor, RenderedResource, RenderError, binder, kubelet

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "__main__.py"
PROJECT = "mlpipeline"
SECRET_KEYS = tuple(key.name for key in catalogue.KEYS if key.secret)  # set as `--secret` would


@dataclass
class Rendering:
    stack: str
    config: dict[str, str]
    resources: list[RenderedResource]
    outputs: dict[str, Any]  # stack outputs, secrets in clear
    secret_outputs: set[str] = field(default_factory=set)
    unknown_outputs: set[str] = field(default_factory=set)  # only known after an update (preview)
    result: Any = None  # render_components: what `declare` returned

    def of_type(self, type_: str) -> list[RenderedResource]:
        return [r for r in self.resources if r.type == type_]

    def by_urn(self) -> dict[str, RenderedResource]:
        return {r.urn: r for r in self.resources}

    def one(self, kind: str) -> RenderedResource:
        """The only resource of `kind` (the last part of its type: Job, HTTPRoute, Router...)."""
        return _only([r for r in self.resources if r.kind == kind], f"of kind {kind!r}")

    def depends_on(self, resource: RenderedResource) -> set[str]:
        """Names of the resources `resource` waits for (its explicit and implicit dependencies)."""
        names = {r.urn: r.name for r in self.resources}
        return {names.get(urn, urn) for urn in resource.options.get("dependencies", [])}

    def named(self, name: str) -> RenderedResource:
        return _only([r for r in self.resources if r.name == name], f"named {name!r}")

    def descendants(self, urn: str) -> list[RenderedResource]:
        """Every resource below `urn` in the parent tree."""
        children: dict[str | None, list[RenderedResource]] = {}
        for r in self.resources:
            children.setdefault(r.parent, []).append(r)
        found, todo = [], [urn]
        while todo:
            for child in children.get(todo.pop(), []):
                found.append(child)
                todo.append(child.urn)
        return found

    def k8s(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Kubernetes objects as manifests (secrets in clear), optionally of one kind."""
        return [r.inputs for r in self.resources if r.is_kubernetes and (kind is None or r.kind == kind)]

    def public_outputs(self) -> dict[str, Any]:
        return {k: (MASK if k in self.secret_outputs else v) for k, v in self.outputs.items()}


def _only(matches: list[RenderedResource], what: str) -> RenderedResource:
    if len(matches) != 1:
        raise KeyError(f"{len(matches)} resources {what}: {[r.name for r in matches]}")
    return matches[0]


def stack_config(stack: str) -> dict[str, Any]:
    """The plain values of Pulumi.<stack>.yaml, keys without the project prefix."""
    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.exists():
        return {}
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    values = {}
    for key, value in (document.get("config") or {}).items():
        namespace, _, name = key.rpartition(":")
        if namespace not in ("", PROJECT):
            continue
        if isinstance(value, Mapping) and "secure" in value:
            continue  # encrypted with the stack's key: only the CLI can read it
        values[name] = value
    return values


def _config_strings(values: Mapping[str, Any]) -> dict[str, str]:
    # Pulumi hands every config value to the program as a string; maps and lists as JSON.
    out = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (dict, list)):
            text = json.dumps(value)
        else:
            text = str(value)
        out[key if ":" in key else f"{PROJECT}:{key}"] = text
    return out


def render(
    stack: str,
    config: Mapping[str, Any] | None = None,
    previous_releases: Mapping[str, Any] | None = None,
    previous_outputs: Mapping[str, Any] | None = None,
    other_stacks: Mapping[str, Mapping[str, Any]] | None = None,
    use_stack_file: bool = True,
    preview: bool = False,
    pod_messages: Mapping[str, str] | None = None,
) -> Rendering:
    """Run the program for `stack` under mocks and return what it declared and exported.
    `pod_messages`: job name -> the termination message its trainer left (None: the mocked
    trainer's, `mock_trainer_message`)."""
    values = {**(stack_config(stack) if use_stack_file else {}), **(config or {})}
    strings = _config_strings(values)
    context = contextvars.Context()  # fresh Pulumi globals for this evaluation
    previous = (
        previous_outputs
        if previous_outputs is not None
        else (None if previous_releases is None else {"releases": previous_releases})
    )
    return context.run(
        _render,
        stack,
        strings,
        previous,
        dict(other_stacks or {}),
        preview,
        _run_program_file,
        None if pod_messages is None else dict(pod_messages),
    )


def render_components(
    declare: Callable[[], Any],
    stack: str = "dev",
    config: Mapping[str, Any] | None = None,
    previous_outputs: Mapping[str, Any] | None = None,
) -> Rendering:
    """Run `declare` as the whole program (component tests): what it declares, and in `result` what
    it returns (an Output is awaited). Same mocks as `render`, no stack file."""
    strings = _config_strings(config or {})
    return contextvars.Context().run(_render, stack, strings, previous_outputs, {}, False, declare, None)


def _run_program_file() -> None:
    runpy.run_path(str(PROGRAM), run_name="__main__")


def _render(stack, strings, previous, other_stacks, preview, declare, pod_messages) -> Rendering:
    mocks = Mocks(PROJECT, stack, previous, other_stacks, preview)
    monitor = Monitor(mocks)
    # No cluster under mocks: the trainers' termination messages are the given or the mocked ones.
    training_results.READER.set(kubelet(monitor, pod_messages))
    volume_source.READER.set(binder(monitor))
    policy = asyncio.get_event_loop_policy()
    try:
        outer_loop = policy.get_event_loop()
    except RuntimeError:
        outer_loop = None
    loop = asyncio.new_event_loop()
    policy.set_event_loop(loop)  # Pulumi's runtime schedules its work on the thread's current loop
    try:
        sdk_internals.reset_root_resource()
        pulumi.runtime.set_mocks(
            mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor, organization=ORGANIZATION
        )
        pulumi.runtime.set_all_config(strings, [k for k in strings if k.split(":", 1)[1] in SECRET_KEYS])
        outputs, secret, unknown, result = loop.run_until_complete(_evaluate(declare))
    finally:
        policy.set_event_loop(outer_loop)  # leave the caller's loop (e.g. other Pulumi tests') in place
        loop.close()
    return Rendering(
        stack=stack,
        config=strings,
        resources=monitor.registered,
        outputs=outputs,
        secret_outputs=secret,
        unknown_outputs=unknown,
        result=result,
    )


async def _evaluate(declare: Callable[[], Any]) -> tuple[dict[str, Any], set[str], set[str], Any]:
    failure: list[BaseException] = []
    returned: list[Any] = []

    def program() -> None:
        try:
            returned.append(declare())
        except BaseException as exc:  # noqa: BLE001 - reported after the runtime settles
            failure.append(exc)
            raise

    try:
        await sdk_internals.run_program(program)
    except BaseException as exc:  # noqa: BLE001
        raise (failure[0] if failure else RenderError(str(exc))) from None
    stack = pulumi.runtime.get_root_resource()
    outputs, secret, unknown = {}, set(), set()
    for key, value in (stack.outputs if isinstance(stack, pulumi.runtime.stack.Stack) else {}).items():
        # An Output's value is plain data already; deep-unwrapping it again costs O(size) Outputs.
        output = value if isinstance(value, pulumi.Output) else pulumi.Output.from_input(value)
        outputs[key] = await output.future(with_unknowns=True)
        if await output.is_secret():
            secret.add(key)
        if not await output.is_known():
            unknown.add(key)
    result = returned[0] if returned else None
    if isinstance(result, pulumi.Output):
        result = await result.future()
    return outputs, secret, unknown, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stack")
    parser.add_argument("config", nargs="*", help="KEY=VALUE (VALUE may be JSON)")
    parser.add_argument("--previous", type=Path, help="JSON file with the previous `releases` output")
    args = parser.parse_args(argv)
    config = {}
    for item in args.config:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"{item!r} is not KEY=VALUE")
        config[key] = value
    previous = json.loads(args.previous.read_text()) if args.previous else None
    rendering = render(args.stack, config, previous_releases=previous)
    json.dump(
        {
            "outputs": rendering.public_outputs(),
            "resources": [
                {"type": r.type, "name": r.name, "parent": r.parent, "inputs": r.public_inputs}
                for r in rendering.resources
            ],
        },
        sys.stdout,
        indent=2,
        default=str,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
