"""Training from Azure Blob Storage (BLOB_STORAGE_* variables), against a local Azurite."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

import modelshare
from modelshare import FolderState

from .conftest import QUICK, REPO, run_trainer

AZURITE = REPO / "node_modules" / ".bin" / "azurite-blob"
# Azurite (node) takes about 1 s to listen on an idle machine, and was measured at 30 s with two
# cores at load 10: a start bound, not a timing.
START_SECONDS = 120
# Azurite's well-known development account: public, documented, accepted only by the emulator.
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
WRONG_KEY = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3Jvbmc="
CONTAINER, FOLDER = "interactions", "2018/05/08"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    if not AZURITE.exists():
        pytest.fail(f"{AZURITE} is missing: run `make setup` (npm ci) first")
    port = free_port()
    proc = subprocess.Popen(
        [
            str(AZURITE),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(tmp_path_factory.mktemp("azurite")),
            "--skipApiVersionCheck",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"Azurite did not start listening within {START_SECONDS} s")
            time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{port}/{ACCOUNT}"
    finally:
        proc.send_signal(signal.SIGINT)  # Azurite closes on Ctrl-C; it lingers on SIGTERM
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def uploaded(azurite, small_dir):
    service = BlobServiceClient(azurite, credential={"account_name": ACCOUNT, "account_key": KEY})
    container = service.create_container(CONTAINER)
    for path in sorted(small_dir.glob("*.csv")):
        container.upload_blob(f"{FOLDER}/{path.name}", path.read_bytes())
    # Decoys a correct trainer never reads: another day, a sub-folder, not a CSV.
    container.upload_blob("2018/05/07/part-00000.csv", b"\x00 not even text")
    container.upload_blob(f"{FOLDER}/nested/part-00000.csv", b"\x00 not even text")
    container.upload_blob(f"{FOLDER}/_SUCCESS", b"")
    return azurite


def blob_settings(endpoint, secrets: Path, key: str = KEY, **overrides):
    """The trainer's blob variables; the key goes into a file in secrets, as a mounted Secret."""
    key_file = secrets / "blob-key"
    key_file.write_text(key + "\n")
    settings = {
        "BLOB_STORAGE_ACCOUNT": ACCOUNT,
        "BLOB_STORAGE_KEY_FILE": str(key_file),
        "BLOB_STORAGE_CONTAINER": CONTAINER,
        "BLOB_STORAGE_CSV_FOLDER": FOLDER,
        "BLOB_STORAGE_ENDPOINT": endpoint,
        **QUICK,
    }
    settings.update(overrides)
    return settings


def test_trains_from_the_dated_blob_folder(tmp_path, uploaded, small_dir):
    folder = tmp_path / "20180508.1"
    run = run_trainer(MODELFOLDER=folder, BUILD_NUMBER="20180508.1", **blob_settings(uploaded, tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    manifest = modelshare.verify(folder, build="20180508.1")
    data = manifest["data"]
    assert data["source"] == f"{uploaded}/{CONTAINER}/{FOLDER}/"
    assert [(f["name"], f["sha256"]) for f in data["files"]] == [
        (p.name, modelshare.sha256_file(p)) for p in sorted(small_dir.glob("*.csv"))
    ]
    written = "".join(p.read_text(errors="replace") for p in folder.rglob("*.json"))
    assert KEY not in run.stdout + run.stderr + written


@pytest.mark.parametrize(
    "overrides, phrase",
    [
        ({"key": WRONG_KEY}, "refused the credentials for account 'devstoreaccount1'"),
        ({"BLOB_STORAGE_CONTAINER": "no-such-container"}, "container 'no-such-container' does not exist"),
        ({"BLOB_STORAGE_CSV_FOLDER": "2018/05/09"}, "no *.csv blobs in"),
    ],
    ids=["wrong-key", "missing-container", "empty-folder"],
)
def test_blob_problems_fail_with_a_clear_reason(tmp_path, uploaded, overrides, phrase):
    folder = tmp_path / "7"
    run = run_trainer(MODELFOLDER=folder, BUILD_NUMBER="7", **blob_settings(uploaded, tmp_path, **overrides))
    assert run.returncode == 1, run.stdout + run.stderr
    assert modelshare.folder_state(folder) is FolderState.FAILED
    reason = modelshare.read_failed_reason(folder)
    assert phrase in reason
    for key in (KEY, WRONG_KEY):
        assert key not in reason + run.stdout + run.stderr
