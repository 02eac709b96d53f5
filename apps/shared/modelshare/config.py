"""Reading the apps' environment (docs/CONTRACTS.md, section 2): a safe default or a startup error
naming the variable."""

from __future__ import annotations

import os
from typing import overload


class ConfigError(ValueError):
    """A variable of the environment is missing or malformed; the message names it."""


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, "").strip()
    if value:
        return value
    if default is None:
        raise ConfigError(f"environment variable {name} is required but not set")
    return default


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"environment variable {name} must be >= {minimum}, got {value}")
    return value


@overload
def env_float(name: str, default: float, minimum: float | None = None) -> float: ...
@overload
def env_float(name: str, default: None, minimum: float | None = None) -> float | None: ...


def env_float(name: str, default: float | None, minimum: float | None = None) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be a number, got {raw!r}") from None
    if value != value or (minimum is not None and value < minimum):
        raise ConfigError(f"environment variable {name} must be a number >= {minimum}, got {raw!r}")
    return value
