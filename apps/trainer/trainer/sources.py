"""Where the CSVs come from: a mounted folder (DATA_DIR) or a dated folder in Azure Blob Storage.

Either way the result is a list of local files plus a location string for the manifest; blobs
are downloaded into a staging folder first, so reading is the same code for both.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from pathlib import Path

from trainer.config import BlobSettings, Settings


class SourceError(RuntimeError):
    """The input cannot be listed or fetched; the message says where and what to check."""


@dataclass(frozen=True)
class InputFile:
    name: str  # as recorded in the manifest: the file's name inside the source folder
    path: Path  # where to read it locally


def fetch(settings: Settings, staging: Path) -> tuple[str, list[InputFile]]:
    """Return (location, files sorted by name) of every ``*.csv`` directly in the source folder."""
    if settings.blob is not None:
        return _fetch_blobs(settings.blob, staging, settings.threads)
    assert settings.data_dir is not None  # config.load: exactly one source is set
    return _list_folder(settings.data_dir)


def _list_folder(folder: Path) -> tuple[str, list[InputFile]]:
    if not folder.is_dir():
        raise SourceError(f"DATA_DIR {folder} is not a folder")
    files = [InputFile(p.name, p) for p in sorted(folder.glob("*.csv")) if p.is_file()]
    if not files:
        raise SourceError(f"no *.csv files in DATA_DIR {folder}")
    return str(folder.resolve()), files


def _fetch_blobs(blob: BlobSettings, staging: Path, threads: int) -> tuple[str, list[InputFile]]:
    # Imported here: a DATA_DIR run never pays for the Azure SDK's import.
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
    )
    from azure.storage.blob import ContainerClient

    url = (blob.endpoint or f"https://{blob.account}.blob.core.windows.net").rstrip("/")
    prefix = f"{blob.folder}/" if blob.folder else ""
    location = f"{url}/{blob.container}/{prefix}"
    refused = SourceError(
        f"blob storage refused the credentials for account {blob.account!r} at {url} "
        "(check BLOB_STORAGE_ACCOUNT and the key in BLOB_STORAGE_KEY_FILE)"
    )
    client = ContainerClient(
        account_url=url,
        container_name=blob.container,
        credential={"account_name": blob.account, "account_key": blob.key},
    )
    try:
        names = sorted(
            item.name
            for item in client.list_blobs(name_starts_with=prefix)
            if item.name.endswith(".csv") and "/" not in item.name[len(prefix) :]
        )
        if not names:
            raise SourceError(f"no *.csv blobs in {location}")
        files = []
        for name in names:
            local = staging / name[len(prefix) :]
            with open(local, "wb") as handle:
                client.download_blob(name, max_concurrency=threads).readinto(handle)
            files.append(InputFile(name[len(prefix) :], local))
        return location, files
    except ClientAuthenticationError:
        raise refused from None
    except ResourceNotFoundError as exc:
        if getattr(exc, "error_code", None) == "ContainerNotFound":
            raise SourceError(
                f"container {blob.container!r} does not exist in storage account {blob.account!r} "
                "(check BLOB_STORAGE_CONTAINER)"
            ) from None
        raise SourceError(f"blob storage: {_first_line(exc)} at {location}") from None
    except ServiceRequestError as exc:
        raise SourceError(f"cannot reach blob storage at {url}: {_first_line(exc)}") from None
    except HttpResponseError as exc:
        if exc.status_code == 403:  # the service signs its refusal of a bad key as a plain 403
            raise refused from None
        raise SourceError(
            f"blob storage answered {exc.status_code} for {location}: {_first_line(exc)}"
        ) from None
    except (binascii.Error, ValueError) as exc:  # the SDK signs with the key: a non-base64 key fails here
        raise SourceError(
            f"the key in BLOB_STORAGE_KEY_FILE is not a valid storage account key ({type(exc).__name__})"
        ) from None
    finally:
        client.close()


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
