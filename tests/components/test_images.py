"""Images are built from apps/, tagged with the build, and pods pin the digest when the registry gives one."""

import pytest

from components.images import pick_reference


def images(rendering):
    return {r.name.rsplit("-", 1)[1]: r.inputs for r in rendering.of_type("docker:index/image:Image")}


def test_each_app_is_built_from_its_dockerfile_in_the_apps_context(dev):
    built = images(dev)
    assert set(built) == {"trainer", "waiter", "scorer"}
    for app, image in built.items():
        assert image["build"] == {
            "context": "apps",
            "dockerfile": f"apps/{app}/Dockerfile",
            "platform": "linux/amd64",
        }
        assert image["imageName"] == f"{dev.outputs['registry']}/mlpipeline/{app}:20180523.5"
        assert image["skipPush"] is False


def test_pushed_images_are_referenced_by_digest(dev):
    record = dev.outputs["releases"]["20180523.5"]
    for app, ref in record["images"].items():
        assert ref.startswith(f"{dev.outputs['registry']}/mlpipeline/{app}@sha256:")
    job = dev.k8s("Job")[0]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == record["images"]["trainer"]


def test_local_images_are_not_pushed_and_referenced_by_tag(local_first):
    for _app, image in images(local_first).items():
        assert image["skipPush"] is True and "registry" not in image
    assert local_first.outputs["releases"]["153"]["images"]["scorer"] == "mlpipeline/scorer:153"


@pytest.mark.parametrize(
    "digest, name, expected",
    [
        ("r/x@sha256:ab", "r/x:1", "r/x@sha256:ab"),
        ("", "x:1", "x:1"),
        (None, "x:1", "x:1"),
    ],
)
def test_reference_prefers_the_digest(digest, name, expected):
    assert pick_reference(digest, name) == expected


def test_registry_password_only_travels_as_a_secret(dev):
    for resource in dev.of_type("docker:index/image:Image"):
        assert resource.public_inputs["registry"] == "[secret]"  # the whole block travels as a secret


def test_prebuilt_images_are_referenced_by_tag_and_not_built():
    from local.render import render

    rendering = render("local", {"build": "155", "gitSha": "abc1234", "images": "prebuilt"})
    assert rendering.of_type("docker:index/image:Image") == []  # no docker provider needed
    refs = rendering.outputs["releases"]["155"]["images"]
    assert refs == {app: f"mlpipeline/{app}:155" for app in ("trainer", "waiter", "scorer")}
    job = rendering.k8s("Job")[0]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "mlpipeline/trainer:155"


def test_a_local_registry_gets_the_images_before_the_job_and_pods_pull_them_by_digest():
    from local.render import render

    local = render("local", {"build": "153", "localRegistry": "localhost:5001"})
    for app, image in images(local).items():
        assert image["imageName"] == f"localhost:5001/mlpipeline/{app}:153"
        assert image["skipPush"] is False and "registry" not in image  # the daemon pushes, no credentials
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
