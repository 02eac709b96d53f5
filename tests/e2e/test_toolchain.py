"""The e2e toolchain's pins: one file, the wrapper modules agree with it, the cache key follows it."""

import pytest

from e2e import toolchain


def test_every_wrapper_module_requires_exactly_the_pinned_versions():
    toolchain.check_pins(toolchain.versions())


def test_a_pin_the_go_mod_files_do_not_carry_is_refused_naming_both():
    pins = {**toolchain.versions(), "KUBERNETES": "v1.36.1"}
    with pytest.raises(
        RuntimeError, match=r"kubernetes/go.mod has k8s.io/kubernetes at \['v1.34.4'\].*KUBERNETES=v1.36.1"
    ):
        toolchain.check_pins(pins)


def test_the_cache_key_names_the_main_versions_and_changes_with_any_pin():
    pins = toolchain.versions()
    key = toolchain.key(pins)
    assert key.startswith(f"pulumi-{pins['PULUMI']}-k8s-{pins['KUBERNETES']}-")
    assert toolchain.key({**pins, "ETCD": "v3.6.5"}) != key
