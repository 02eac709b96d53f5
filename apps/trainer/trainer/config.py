"""The trainer's settings, read only from the environment (docs/CONTRACTS.md, section 2).

Every variable has a safe default or raises ConfigError naming it; docs/CONTRACTS.md
(section 2, Trainer) lists them all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from modelshare import ConfigError, cpus, env_float, env_int, env_str
from modelshare.gate import Gate
from trainer.drift import Thresholds

FAMILIES = ("als", "als-plain", "item-knn", "ease", "rp3beta", "ease+als")
BLOB_VARIABLES = (
    "BLOB_STORAGE_ACCOUNT",
    "BLOB_STORAGE_KEY_FILE",
    "BLOB_STORAGE_CONTAINER",
    "BLOB_STORAGE_CSV_FOLDER",
)


@dataclass(frozen=True)
class BlobSettings:
    account: str
    key: str  # read from a mounted Kubernetes Secret file; never logged, never written
    container: str
    folder: str
    endpoint: str | None

    def __repr__(self) -> str:  # keeps the key out of any accidental log line
        return f"BlobSettings(account={self.account!r}, container={self.container!r}, folder={self.folder!r})"


@dataclass(frozen=True)
class Settings:
    folder: Path
    build: str
    git_sha: str | None
    trainer_image: str | None
    data_dir: Path | None
    blob: BlobSettings | None
    seed: int
    threads: int
    families: tuple[str, ...]
    tune_budget_seconds: float
    tune_trials_per_family: int
    eval_max_users: int
    holdout_fraction: float
    ease_max_items: int
    rp3beta_max_items: int
    # Below these the data cannot make a trustworthy model, or its measurement would not count.
    min_users: int
    min_items: int
    eval_min_users: int
    max_rejected_share: float
    gate: Gate  # decided here, at the end of the Job; the waiter checks it again
    drift: Thresholds  # of the data drift against the champion's data; failures fail the gate


def release_folder() -> tuple[Path, str]:
    """MODELFOLDER and BUILD_NUMBER: needed before anything else, to know where to report."""
    return Path(env_str("MODELFOLDER")), env_str("BUILD_NUMBER")


def _optional(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


def _key(path: str) -> str:
    """The storage key from the Secret file at path (an env var would show in `kubectl describe`,
    in /proc and in a crash dump of the environment). Errors name the path, never the content."""
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"BLOB_STORAGE_KEY_FILE {path!r} cannot be read ({type(exc).__name__})") from None
    if not key:
        raise ConfigError(f"BLOB_STORAGE_KEY_FILE {path!r} is empty")
    return key


def _source() -> tuple[Path | None, BlobSettings | None]:
    if "BLOB_STORAGE_KEY" in os.environ:
        raise ConfigError(
            "BLOB_STORAGE_KEY is not read: a key in the environment leaks; mount it from a "
            "Secret and set BLOB_STORAGE_KEY_FILE to the file's path"
        )
    data_dir = _optional("DATA_DIR")
    blob_set = [name for name in BLOB_VARIABLES if _optional(name)]
    if data_dir and blob_set:
        raise ConfigError(f"set either DATA_DIR or the BLOB_STORAGE_* variables, not both (found {blob_set})")
    if data_dir:
        return Path(data_dir), None
    if not blob_set:
        raise ConfigError(
            "no input configured: set DATA_DIR, or BLOB_STORAGE_ACCOUNT, BLOB_STORAGE_KEY_FILE, "
            "BLOB_STORAGE_CONTAINER and BLOB_STORAGE_CSV_FOLDER"
        )
    values = [env_str(name) for name in BLOB_VARIABLES]  # names the first one missing
    account, key_file, container, folder = values
    return None, BlobSettings(
        account, _key(key_file), container, folder.strip("/"), _optional("BLOB_STORAGE_ENDPOINT")
    )


def _families() -> tuple[str, ...]:
    raw = env_str("TRAIN_FAMILIES", ",".join(FAMILIES))
    names = tuple(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
    unknown = [name for name in names if name not in FAMILIES]
    if unknown or not names:
        raise ConfigError(
            f"environment variable TRAIN_FAMILIES has unknown families {unknown}; "
            f"choose from {list(FAMILIES)}"
        )
    if "ease+als" in names and not ("ease" in names and {"als", "als-plain"} & set(names)):
        raise ConfigError(
            "environment variable TRAIN_FAMILIES: ease+als blends the best ease with the best "
            f"als or als-plain, so it needs ease and one of them too, got {','.join(names)}"
        )
    return names


def load() -> Settings:
    folder, build = release_folder()
    data_dir, blob = _source()
    fraction = env_float("HOLDOUT_FRACTION", 0.2, minimum=0.01)
    if fraction > 0.5:
        raise ConfigError(f"environment variable HOLDOUT_FRACTION must be <= 0.5, got {fraction}")
    return Settings(
        folder=folder,
        build=build,
        git_sha=_optional("GIT_SHA"),
        trainer_image=_optional("TRAINER_IMAGE"),
        data_dir=data_dir,
        blob=blob,
        seed=env_int("TRAIN_SEED", 42, minimum=0),
        threads=env_int("TRAIN_THREADS", cpus.whole(), minimum=1),
        families=_families(),
        tune_budget_seconds=env_float("TUNE_BUDGET_SECONDS", 1800.0, minimum=0.0),
        tune_trials_per_family=env_int("TUNE_TRIALS_PER_FAMILY", 20, minimum=1),
        eval_max_users=env_int("EVAL_MAX_USERS", 5_000, minimum=100),
        holdout_fraction=fraction,
        ease_max_items=env_int("EASE_MAX_ITEMS", 10_000, minimum=0),
        # RP3beta keeps K neighbours per item (up to 800: 6.4 KB an item) and computes its walks in
        # blocks of items against all of them; past this many items item-knn is the neighbour model.
        rp3beta_max_items=env_int("RP3BETA_MAX_ITEMS", 50_000, minimum=0),
        min_users=env_int("TRAIN_MIN_USERS", 100, minimum=1),
        min_items=env_int("TRAIN_MIN_ITEMS", 50, minimum=1),
        eval_min_users=env_int("EVAL_MIN_USERS", 100, minimum=2),
        max_rejected_share=_share("TRAIN_MAX_REJECTED_SHARE", 0.1),
        gate=Gate.from_env(),
        drift=Thresholds.from_env(),
    )


def _share(name: str, default: float) -> float:
    value = env_float(name, default, minimum=0.0)
    if value > 1:
        raise ConfigError(f"environment variable {name} must be a share between 0 and 1, got {value}")
    return value
