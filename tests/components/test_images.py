"""Images are built from apps/ by pulumi-docker-build, tagged with the build, and pods pin the digest."""

import pytest

from components.images import digest_reference


def images(rendering):
    return {r.name.rsplit("-", 1)[1]: r.inputs for r in rendering.of_type("docker-build:index:Image")}


def test_each_app_is_built_from_its_dockerfile_in_the_apps_context(dev):
    built = images(dev)
    assert set(built) == {"trainer", "waiter", "scorer"}
    for app, image in built.items():
        assert image["context"] == {"location": "apps"}
        assert image["dockerfile"] == {"location": f"apps/{app}/Dockerfile"}
        assert image["platforms"] == ["linux/amd64"]
        assert image["tags"] == [f"{dev.outputs['registry']}/mlpipeline/{app}:20180523.5"]
        assert image["push"] is True and image["load"] is False


def test_leaving_the_state_never_deletes_an_image_from_the_registry(dev):
    # the provider's delete removes the pushed digest, which the live release still pulls
    assert {r.options["retainOnDelete"] for r in dev.of_type("docker-build:index:Image")} == {True}


def test_pushed_images_are_referenced_by_digest(dev):
    record = dev.outputs["releases"]["20180523.5"]
    for app, ref in record["images"].items():
        assert ref.startswith(f"{dev.outputs['registry']}/mlpipeline/{app}@sha256:")
    job = dev.k8s("Job")[0]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == record["images"]["trainer"]


def test_local_images_are_loaded_into_the_daemon_and_referenced_by_tag(local_first):
    for _app, image in images(local_first).items():
        assert image["push"] is False and image["load"] is True and "registries" not in image
    assert local_first.outputs["releases"]["153"]["images"]["scorer"] == "mlpipeline/scorer:153"


def test_a_push_without_a_digest_is_an_error_not_a_tag():
    assert digest_reference("r/x", "sha256:ab") == "r/x@sha256:ab"
    with pytest.raises(ValueError, match="the image build of r/x gave no sha256 digest"):
        digest_reference("r/x", "")


def test_registry_password_only_travels_as_a_secret(dev):
    for resource in dev.of_type("docker-build:index:Image"):
        assert resource.public_inputs["registries"] == "[secret]"  # the whole block travels as a secret


def test_prebuilt_images_are_referenced_by_tag_and_not_built():
    from local.render import render

    rendering = render("local", {"build": "155", "gitSha": "abc1234", "images": "prebuilt"})
    assert rendering.of_type("docker-build:index:Image") == []  # no image provider needed
    refs = rendering.outputs["releases"]["155"]["images"]
    assert refs == {app: f"mlpipeline/{app}:155" for app in ("trainer", "waiter", "scorer")}
    job = rendering.k8s("Job")[0]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "mlpipeline/trainer:155"


def test_a_local_registry_gets_the_images_before_the_job_and_pods_pull_them_by_digest():
    from local.render import render

    local = render("local", {"build": "153", "localRegistry": "localhost:5001"})
    for app, image in images(local).items():
        assert image["tags"] == [f"localhost:5001/mlpipeline/{app}:153"]
        assert image["push"] is True and "registries" not in image  # no credentials
    refs = local.outputs["releases"]["153"]["images"]
    job = local.k8s("Job")[0]["spec"]["template"]["spec"]["containers"][0]
    assert (
        refs["trainer"].startswith("localhost:5001/mlpipeline/trainer@sha256:")
        and job["image"] == refs["trainer"]
    )
    # The Job's image is the push's own output (its digest), so the engine creates the Job only
    # after the push; a digest never changes, so IfNotPresent pulls it once per node.
    assert job["imagePullPolicy"] == "IfNotPresent"


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"localRegistry": "http://localhost:5001"}, "localRegistry must be a registry host[:port]"),
        (
            {"localRegistry": "localhost:5001", "cloud": "azure", "csvFolder": "x"},
            "localRegistry only applies to cloud local",
        ),
    ],
)
def test_a_bad_local_registry_names_the_key(raw, message):
    import re

    from components.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.parse({"build": "1", **raw}, project="mlpipeline", stack="test")
