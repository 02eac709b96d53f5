"""Writing a model folder safely and verifying it before anything trusts it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from modelshare.layout import COMPLETE, FAILED, MANIFEST, TMP_SUFFIX

# 1 MB reads: with 4 MB ones a verified copy of a release from the disk stalled for 0.2 to 0.4 s in
# about one run in five, with 1 MB ones once in about 90 runs (bench/promotion.py's folder, 2 cores).
_CHUNK = 1 << 20
_MARKERS = {MANIFEST, COMPLETE, FAILED}


class IntegrityError(RuntimeError):
    """The folder is not a complete, verified release; the message says which file and why."""


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Let ``write`` stream into a temporary file beside the target, fsync, then rename it over
    the target: readers see the old state or the new one, never half a file (rename is atomic
    on POSIX and SMB)."""
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some network file systems do not open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _payload_files(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        if rel in _MARKERS or rel.endswith(TMP_SUFFIX):
            continue
        files.append(path)
    return files


def make_manifest(folder: str | Path, *, build: str, **provenance: Any) -> dict:
    """Write manifest.json listing sha256 and size of every file in the folder (markers and
    temporary files excepted). ``provenance`` carries git_sha, params, data, trainer_image..."""
    folder = Path(folder)
    files = {
        path.relative_to(folder).as_posix(): {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        for path in _payload_files(folder)
    }
    manifest = {"build": build, "created_at": utc_now(), **provenance, "files": files}
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest


def mark_complete(folder: str | Path, build: str) -> None:
    """The last write of a release: only now may readers look at the folder."""
    atomic_write_text(Path(folder) / COMPLETE, f"build {build} complete at {utc_now()}\n")


def release_mismatches(manifest: Any, **expected: str | None) -> list[str]:
    """How a manifest differs from the release that expects it: one line per field of ``expected``
    (build, git_sha, trainer_image) whose recorded value is another. A build id names one release
    forever, so a folder recorded by other code or another trainer image is not this release's."""
    recorded = manifest if isinstance(manifest, dict) else {}
    return [
        f"{name} {recorded.get(name)!r}, this release has {value!r}"
        for name, value in expected.items()
        if (str(recorded.get(name)) if recorded.get(name) is not None else None) != value
    ]


def model_sha256(folder: str | Path) -> str:
    """The identity of a model: the sha256 of its manifest, which pins every file."""
    return sha256_file(Path(folder) / MANIFEST)


def read_manifest(folder: str | Path, build: str | None = None) -> dict:
    """The manifest of a folder that has complete.txt, checked to list files (and to be `build`'s),
    its files not yet read: `verify` checks them in place, `copy_verified` as it copies them."""
    folder = Path(folder)
    if not (folder / COMPLETE).is_file():
        raise IntegrityError(f"{folder / COMPLETE} does not exist: the release is not complete")
    try:
        manifest = read_json(folder / MANIFEST)
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{folder / MANIFEST} is missing or not valid JSON: {exc}") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not files:
        raise IntegrityError(f"{folder / MANIFEST} lists no files")
    if build is not None and str(manifest.get("build")) != str(build):
        raise IntegrityError(
            f"{folder / MANIFEST} is for build {manifest.get('build')!r}, expected build {build!r}"
        )
    return manifest


def verify(folder: str | Path, build: str | None = None) -> dict:
    """Return the manifest when complete.txt exists and every listed file has its recorded
    size and sha256; raise IntegrityError naming the first problem otherwise."""
    manifest = read_manifest(folder, build)
    check_files(folder, manifest["files"])
    return manifest


def copy_verified(source: str | Path, target: str | Path, entry: dict) -> None:
    """Copy one file of a release, checking the bytes it copies against the file's manifest entry
    (size and sha256) in the same pass; IntegrityError names the source file. One read of the
    source instead of two (verify, then copy), and what is checked is exactly what is written."""
    source = Path(source)
    if not source.is_file():
        raise IntegrityError(f"{source} is listed in the manifest but missing")
    digest, size = hashlib.sha256(), 0
    buffer = bytearray(min(_CHUNK, source.stat().st_size + 1))  # +1: the read that finds the end
    view = memoryview(buffer)
    with open(source, "rb", buffering=0) as reader, open(target, "wb", buffering=0) as writer:
        while read := reader.readinto(buffer):
            digest.update(view[:read])
            written = 0
            while written < read:
                written += writer.write(view[written:read])
            size += read
    if size != entry.get("bytes"):
        raise IntegrityError(f"{source} has {size} bytes, the manifest says {entry.get('bytes')}")
    if digest.hexdigest() != entry.get("sha256"):
        raise IntegrityError(
            f"{source} has sha256 {digest.hexdigest()}, the manifest says {entry.get('sha256')}"
        )


def check_files(folder: str | Path, files: dict) -> None:
    """Every file of a manifest's ``files`` map exists under folder with its size and sha256."""
    folder = Path(folder)
    for rel, entry in sorted(files.items()):
        path = folder / rel
        if not path.is_file():
            raise IntegrityError(f"{path} is listed in the manifest but missing")
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise IntegrityError(f"{path} has {size} bytes, the manifest says {entry.get('bytes')}")
        actual = sha256_file(path)
        if actual != entry.get("sha256"):
            raise IntegrityError(f"{path} has sha256 {actual}, the manifest says {entry.get('sha256')}")
