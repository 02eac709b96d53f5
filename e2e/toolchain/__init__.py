"""The e2e toolchain: the Pulumi CLI, its Python language host, the Kubernetes provider, etcd, the
Kubernetes control plane, the kubelet, kwok, metrics-server, Prometheus, and the image path (the
distribution registry, buildkitd, buildx and the pulumi-docker-build provider), built from Go
modules at the versions pinned in versions.env.

Nothing is downloaded but Go modules. The build is cached outside the clone, in
/var/cache/mlpipeline/toolchain/<key> (MLPIPELINE_TOOLCHAIN_CACHE overrides the root), the key a
hash of versions.env, the wrapper modules and `go version`, so a fresh clone on the same machine
reuses it; `.e2e/toolchain` links to it. One `go build` at a time (Go parallelises inside it), with
-trimpath and stripped binaries. `python -m e2e.toolchain` builds it and prints where `bin/` is.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LINK = ROOT / ".e2e" / "toolchain"
CACHE_ROOT = Path(os.environ.get("MLPIPELINE_TOOLCHAIN_CACHE", "/var/cache/mlpipeline/toolchain"))
RECORD = "build.json"  # in the cache folder: versions, cold build seconds per step, warm checks


def versions(path: Path = HERE / "versions.env") -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            pins[name.strip()] = value.strip()
    return pins


def _go(*args: str, cwd: Path, env: dict | None = None, capture: bool = False) -> str:
    run_env = {**os.environ, "GOFLAGS": "-mod=readonly", "GOTOOLCHAIN": "local", **(env or {})}
    done = subprocess.run(
        ["go", *args],
        cwd=cwd,
        env=run_env,
        text=True,
        stdout=subprocess.PIPE if capture else None,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"toolchain: `go {' '.join(args)}` failed in {cwd} (exit {done.returncode})")
    return done.stdout or ""


def _module_dir(module: str, version: str) -> Path:
    """Where the module cache holds module@version (downloading it through the module proxy)."""
    out = _go(
        "mod", "download", "-json", f"{module}@{version}", cwd=HERE, capture=True, env={"GOFLAGS": "-mod=mod"}
    )
    return Path(json.loads(out)["Dir"])


@dataclass
class Step:
    """One binary (or file set) of bin/: how to build it and which pin it carries."""

    name: str
    module: str  # wrapper module folder under e2e/toolchain
    package: str = ""
    ldflags: list[str] = field(default_factory=list)
    tags: str = ""  # go build -tags


def _steps(pins: dict[str, str]) -> list[Step]:
    kube = pins["KUBERNETES"]
    major, minor = kube.lstrip("v").split(".")[:2]
    kube_flags = [
        f"-X {pkg}.{name}={value}"
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for name, value in (
            ("gitVersion", kube),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
        )
    ]
    return [
        Step(
            "pulumi",
            "pulumi",
            "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi",
            [f"-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version={pins['PULUMI']}"],
        ),
        Step(
            "pulumi-language-python",
            "pulumi",
            "./langhost",
            [f"-X main.version={pins['PULUMI'].lstrip('v')}"],
        ),
        Step(
            "pulumi-resource-kubernetes",
            "kubernetes-provider",
            ".",
            [
                "-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version="
                + pins["PULUMI_KUBERNETES_PROVIDER_RELEASE"]
            ],
        ),
        Step("etcd", "kubernetes", "./etcd"),
        Step("kube-apiserver", "kubernetes", "k8s.io/kubernetes/cmd/kube-apiserver", kube_flags),
        Step(
            "kube-controller-manager",
            "kubernetes",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            kube_flags,
        ),
        Step("kube-scheduler", "kubernetes", "k8s.io/kubernetes/cmd/kube-scheduler", kube_flags),
        Step("kubelet", "kubernetes", "k8s.io/kubernetes/cmd/kubelet", kube_flags),
        Step(
            "kwok",
            "kwok",
            "sigs.k8s.io/kwok/cmd/kwok",
            [f"-X sigs.k8s.io/kwok/pkg/consts.Version={pins['KWOK'].lstrip('v')}"],
        ),
        Step(
            "metrics-server",
            "metrics-server",
            "sigs.k8s.io/metrics-server/cmd/metrics-server",
            [f"-X k8s.io/client-go/pkg/version.gitVersion={pins['METRICS_SERVER']}"],
        ),
        Step(
            "prometheus",
            "prometheus",
            "github.com/prometheus/prometheus/cmd/prometheus",
            [f"-X github.com/prometheus/common/version.Version={pins['PROMETHEUS_RELEASE']}"],
            tags="remove_all_sd,enable_kubernetes_sd",  # of all service discoveries, Kubernetes only
        ),
        Step(
            "registry",
            "registry",
            "github.com/distribution/distribution/v3/cmd/registry",
            [f"-X github.com/distribution/distribution/v3/version.version={pins['DISTRIBUTION']}"],
        ),
        Step(
            "buildkitd",
            "buildkit",
            "github.com/moby/buildkit/cmd/buildkitd",
            [f"-X github.com/moby/buildkit/version.Version={pins['BUILDKIT']}"],
        ),
        Step(
            "buildx",
            "docker-build",
            "github.com/docker/buildx/cmd/buildx",
            [f"-X github.com/docker/buildx/version.Version={pins['BUILDX']}"],
        ),
        Step(
            "pulumi-resource-docker-build",
            "docker-build",
            "github.com/pulumi/pulumi-docker-build/provider/cmd/pulumi-resource-docker-build",
            [f"-X github.com/pulumi/pulumi-docker-build/provider.Version={pins['PULUMI_DOCKER_BUILD'][1:]}"],
        ),
    ]


# (wrapper module, required module, pin) the go.mod files must agree with versions.env on
REQUIREMENTS = (
    ("pulumi", "github.com/pulumi/pulumi/pkg/v3", "PULUMI"),
    ("pulumi", "github.com/pulumi/pulumi/sdk/v3", "PULUMI"),
    ("kubernetes-provider", "github.com/pulumi/pulumi-kubernetes/provider/v4", "PULUMI_KUBERNETES_PROVIDER"),
    ("kubernetes-provider", "github.com/pulumi/pulumi-kubernetes/sdk/v4", "PULUMI_KUBERNETES_SDK"),
    ("kubernetes", "k8s.io/kubernetes", "KUBERNETES"),
    ("kubernetes", "k8s.io/api", "KUBERNETES_STAGING"),
    ("kubernetes", "go.etcd.io/etcd/server/v3", "ETCD"),
    ("kwok", "sigs.k8s.io/kwok", "KWOK"),
    ("metrics-server", "sigs.k8s.io/metrics-server", "METRICS_SERVER"),
    ("prometheus", "github.com/prometheus/prometheus", "PROMETHEUS"),
    ("registry", "github.com/distribution/distribution/v3", "DISTRIBUTION"),
    ("buildkit", "github.com/moby/buildkit", "BUILDKIT"),
    ("docker-build", "github.com/docker/buildx", "BUILDX"),
    ("docker-build", "github.com/pulumi/pulumi-docker-build", "PULUMI_DOCKER_BUILD"),
)


def check_pins(pins: dict[str, str]) -> None:
    """The go.mod files require (or replace to) exactly what versions.env pins."""
    for module, path, pin in REQUIREMENTS:
        text = (HERE / module / "go.mod").read_text()
        found = re.findall(rf"(?m)^\s*(?:require\s+)?{re.escape(path)}\s+(?:=>\s+\S+\s+)?(v\S+)", text)
        if pins[pin] not in found:
            raise RuntimeError(
                f"toolchain: {module}/go.mod has {path} at {found or 'no version'}, "
                f"versions.env pins {pin}={pins[pin]}"
            )


def key(pins: dict[str, str]) -> str:
    digest = hashlib.sha256(
        subprocess.run(["go", "version"], capture_output=True, text=True, check=True).stdout.encode()
    )
    digest.update(json.dumps(pins, sort_keys=True).encode())
    inputs = [HERE / "versions.env"] + sorted(
        p for p in HERE.rglob("*") if p.suffix in (".mod", ".sum", ".go") and p.is_file()
    )
    for path in inputs:
        digest.update(str(path.relative_to(HERE)).encode() + b"\0" + path.read_bytes())
    return f"pulumi-{pins['PULUMI']}-k8s-{pins['KUBERNETES']}-{digest.hexdigest()[:12]}"


def _build(step: Step, out: Path, src: Path) -> None:
    module = HERE / step.module
    workdir = module
    if step.module == "kubernetes-provider":
        workdir = _provider_source(module, src)
    _go(
        "build",
        "-trimpath",
        *(["-tags", step.tags] if step.tags else []),
        "-ldflags",
        " ".join(["-s", "-w", *step.ldflags]),
        "-o",
        str(out / step.name),
        step.package,
        cwd=workdir,
    )


def _provider_source(module: Path, src: Path) -> Path:
    """The provider's main package with its generated schema files, beside the wrapper's go.mod."""
    pins = versions()
    workdir = src / "kubernetes-provider"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    for name in ("go.mod", "go.sum"):
        shutil.copy(module / name, workdir / name)
    upstream = _module_dir(
        "github.com/pulumi/pulumi-kubernetes/provider/v4", pins["PULUMI_KUBERNETES_PROVIDER"]
    )
    for name in ("main.go", "generate.go", "schema.json", "terraform-mapping.json"):
        shutil.copy(upstream / "cmd" / "pulumi-resource-kubernetes" / name, workdir / name)
        (workdir / name).chmod(0o644)
    _go("run", "generate.go", cwd=workdir, env={"VERSION": pins["PULUMI_KUBERNETES_PROVIDER_RELEASE"]})
    return workdir


def _extras(folder: Path, pins: dict[str, str]) -> None:
    """Files that come with the modules: the Python executor script, the Gateway API CRDs, kwok's stages."""
    sdk = _module_dir("github.com/pulumi/pulumi/sdk/v3", pins["PULUMI"])
    script = folder / "bin" / "pulumi-language-python-exec"
    shutil.copy(sdk / "python" / "cmd" / "pulumi-language-python-exec", script)
    script.chmod(0o755)
    crds = folder / "crds" / "gateway-api"
    crds.mkdir(parents=True, exist_ok=True)
    gateway = _module_dir("sigs.k8s.io/gateway-api", pins["GATEWAY_API"])
    for crd in sorted((gateway / "config" / "crd" / "standard").glob("gateway.networking.k8s.io_*.yaml")):
        shutil.copy(crd, crds / crd.name)
        (crds / crd.name).chmod(0o644)
    # kwok's own stages: nodes initialise and heartbeat, pods become Ready, Job pods complete.
    stages = _module_dir("sigs.k8s.io/kwok", pins["KWOK"]) / "kustomize" / "stage"
    documents = [
        (stages / part).read_text()
        for part in (
            "node/fast/node-initialize.yaml",
            "node/heartbeat/node-heartbeat.yaml",
            "pod/fast/pod-ready.yaml",
            "pod/fast/pod-complete.yaml",
            "pod/fast/pod-delete.yaml",
        )
    ]
    (folder / "kwok-stages.yaml").write_text("\n---\n".join(documents))


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure(names: tuple[str, ...] | None = None, log=print) -> dict:
    """Build the named binaries (all by default) unless the cache has them; link .e2e/toolchain to
    it. Each binary lands in bin/ whole (built aside, then renamed), so an interrupted build resumes
    where it stopped. Returns the facts: where bin/ is, the key, cold build seconds per binary (from
    the builds that filled the cache) and this call's seconds (a warm call only checks and links)."""
    start = time.monotonic()
    pins = versions()
    check_pins(pins)
    folder = CACHE_ROOT / key(pins)
    steps = [step for step in _steps(pins) if names is None or step.name in names]
    unknown = set(names or ()) - {step.name for step in steps}
    if unknown:
        raise RuntimeError(f"toolchain: no binary named {sorted(unknown)}")
    with _locked(CACHE_ROOT / f"{folder.name}.lock"):
        built = _build_missing(folder, pins, steps, log)
        record = json.loads((folder / RECORD).read_text())
    LINK.parent.mkdir(parents=True, exist_ok=True)
    if LINK.is_symlink() or LINK.exists():
        LINK.unlink()
    LINK.symlink_to(folder)
    seconds = round(time.monotonic() - start, 2)
    log(
        f"toolchain: {LINK / 'bin'} -> {folder / 'bin'} "
        f"({'built ' + ', '.join(built) if built else 'cached'}: {seconds} s now)"
    )
    return {
        "bin": str(LINK / "bin"),
        "cache": str(folder),
        "key": folder.name,
        "versions": pins,
        "binaries": [step.name for step in steps],
        "cold_seconds": record["cold_seconds"],
        "this_run_seconds": seconds,
        "cached": not built,
    }


def _build_missing(folder: Path, pins: dict[str, str], steps: list[Step], log) -> list[str]:
    (folder / "bin").mkdir(parents=True, exist_ok=True)
    record_path = folder / RECORD
    record: dict = (
        json.loads(record_path.read_text())
        if record_path.exists()
        else {
            "versions": pins,
            "cold_seconds": {},
            "go": subprocess.run(["go", "version"], capture_output=True, text=True).stdout.strip(),
        }
    )
    missing = [step for step in steps if not (folder / "bin" / step.name).exists()]
    if missing:
        log(f"toolchain: building {len(missing)} binaries into {folder} (cold: tens of minutes on 2 cores)")
    aside = folder / "building"
    for number, step in enumerate(missing, 1):
        began = time.monotonic()
        log(f"toolchain: [{number}/{len(missing)}] {step.name} ...")
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir()
        _build(step, aside, folder / "src")
        (aside / step.name).rename(folder / "bin" / step.name)
        record["cold_seconds"][step.name] = round(time.monotonic() - began, 1)
        log(
            f"toolchain: [{number}/{len(missing)}] {step.name} built in {record['cold_seconds'][step.name]} s"
        )
        record_path.write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(aside, ignore_errors=True)
    if not (folder / "kwok-stages.yaml").exists():
        _extras(folder, pins)
    shutil.rmtree(folder / "src", ignore_errors=True)
    record["cold_seconds"]["total"] = round(
        sum(v for k, v in record["cold_seconds"].items() if k != "total"), 1
    )
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return [step.name for step in missing]
