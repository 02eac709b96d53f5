"""The model share contract every app relies on: markers, manifest, verification (promotion:
test_promote.py)."""

import json

import pytest

import modelshare
from modelshare import FolderState, IntegrityError


def write_release(folder, build="7"):
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "item_vectors.npy").write_bytes(b"\x93NUMPY" + b"x" * 100)
    (folder / "metrics.json").write_text(json.dumps({"k": 10}))
    modelshare.make_manifest(folder, build=build, git_sha="abc", params={"factors": 8})
    modelshare.mark_complete(folder, build)


def test_states_follow_the_markers(tmp_path):
    folder = tmp_path / "7"
    assert modelshare.folder_state(folder) is FolderState.MISSING
    folder.mkdir()
    assert modelshare.folder_state(folder) is FolderState.INCOMPLETE
    modelshare.mark_failed(folder, "no usable rows in\n data/a.csv")
    assert modelshare.folder_state(folder) is FolderState.FAILED
    assert modelshare.read_failed_reason(folder) == "no usable rows in data/a.csv"


def test_manifest_lists_every_payload_file_but_not_markers(tmp_path):
    folder = tmp_path / "7"
    write_release(folder)
    manifest = modelshare.verify(folder, build="7")
    assert set(manifest["files"]) == {"model/item_vectors.npy", "metrics.json"}
    assert manifest["files"]["metrics.json"]["bytes"] == len('{"k": 10}')
    assert manifest["created_at"].endswith("Z") and manifest["git_sha"] == "abc"


def test_verify_refuses_incomplete_tampered_and_wrong_build(tmp_path):
    folder = tmp_path / "7"
    write_release(folder)
    with pytest.raises(IntegrityError, match="expected build '8'"):
        modelshare.verify(folder, build="8")
    blob = folder / "model" / "item_vectors.npy"
    blob.write_bytes(blob.read_bytes()[:-1] + b"y")  # same size, other bytes
    with pytest.raises(IntegrityError, match="item_vectors.npy has sha256"):
        modelshare.verify(folder)
    (folder / "complete.txt").unlink()
    with pytest.raises(IntegrityError, match="complete.txt does not exist"):
        modelshare.verify(folder)


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    modelshare.atomic_write_json(tmp_path / "m.json", {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_env_errors_name_the_variable(monkeypatch):
    monkeypatch.setenv("POLL_INTERVAL_SECONDS", "soon")
    with pytest.raises(modelshare.ConfigError, match="POLL_INTERVAL_SECONDS must be a number"):
        modelshare.env_float("POLL_INTERVAL_SECONDS", 1.0, minimum=0.01)
    monkeypatch.delenv("MODELFOLDER", raising=False)
    with pytest.raises(modelshare.ConfigError, match="MODELFOLDER is required"):
        modelshare.env_str("MODELFOLDER")


def test_copy_verified_writes_the_bytes_it_checked_and_names_a_file_that_differs(tmp_path):
    from modelshare.manifest import copy_verified

    source = tmp_path / "weights.bin"
    source.write_bytes(bytes(range(256)) * 40_000)  # several copy chunks
    entry = {"bytes": source.stat().st_size, "sha256": modelshare.sha256_file(source)}
    copy_verified(source, tmp_path / "copy.bin", entry)
    assert (tmp_path / "copy.bin").read_bytes() == source.read_bytes()
    with pytest.raises(IntegrityError, match=f"{source} has sha256 .*, the manifest says 0+$"):
        copy_verified(source, tmp_path / "other.bin", {**entry, "sha256": "0" * 64})
    with pytest.raises(IntegrityError, match=f"{source} has {entry['bytes']} bytes, the manifest says 5$"):
        copy_verified(source, tmp_path / "other.bin", {**entry, "bytes": 5})
    with pytest.raises(IntegrityError, match="gone.bin is listed in the manifest but missing"):
        copy_verified(tmp_path / "gone.bin", tmp_path / "other.bin", entry)
    for size in (0, 1 << 20):  # empty, and exactly one chunk
        edge = tmp_path / f"{size}.bin"
        edge.write_bytes(b"\x07" * size)
        entry = {"bytes": size, "sha256": modelshare.sha256_file(edge)}
        copy_verified(edge, tmp_path / f"{size}-copy.bin", entry)
        assert (tmp_path / f"{size}-copy.bin").read_bytes() == edge.read_bytes()
