"""A one-output program that reads its own stack's previous outputs the way components/ledger.py
does (a StackReference to itself, read synchronously with the SDK's private `_sync_await`): the
engine suite runs it with preview and up to prove that read under the real engine, before any
cluster is involved. Each update exports the previous `updates` + 1 and the builds seen so far."""

import pulumi
from pulumi.runtime.sync_await import _sync_await

ref = pulumi.StackReference(f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}")
previous = _sync_await(ref.get_output_details("updates")).value or 0
builds = _sync_await(ref.get_output_details("builds")).value or []
build = pulumi.Config().require("build")
pulumi.log.info(f"previous updates: {previous!r}, builds: {builds!r}")
pulumi.export("updates", int(previous) + 1)
pulumi.export("builds", [*builds, build])
