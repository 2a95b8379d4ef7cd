"""The command line's config file: which node, which deployment, which key, which registries.

    # ~/.config/gpumarket.toml (or .yaml / .yml)     --config FILE, or $GPUMARKET_CONFIG
    rpc = "https://sepolia.example/v3/..."
    deployment = "deployments/sepolia.json"          # relative: to the config file's folder
    key = "keystore:provider1"                       # never a raw key: a key *source*

    [registries]                                     # optional: image registries (host -> base URL)
    "ghcr.io" = "https://ghcr.io"                    # that an oracle checks jobs' images on, or
    "10.0.0.5:5000" = "http://10.0.0.5:5000"         # that a provider's agent sizes them on

Flags (--rpc, --deployment, --key) override the file, the file fills what the flags leave
out; ``--registry HOST=URL`` options add to the file's registries (a host named in both takes
the option's URL). The file holds no secret: `key` names a source (gpumarket.chain.keys), and a keystore's
passphrase stays in $APE_ACCOUNTS_<alias>_PASSPHRASE. Unknown fields are refused (a typo
would otherwise silently fall back to a default), and so is anything that looks like a raw
private key.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from gpumarket.containers.registry import registry_map

__all__ = ["CONFIG_ENV", "ChainSettings", "ConfigError", "load_config", "require_settings", "resolve_settings"]

CONFIG_ENV = "GPUMARKET_CONFIG"
_FIELDS = ("rpc", "deployment", "key")
_TABLES = ("registries",)
_RAW_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


class ConfigError(ValueError):
    """The config file cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class ChainSettings:
    """Where the commands connect: each None when neither a flag nor the file gives it."""

    rpc: str | None = None
    deployment: Path | None = None
    key: str | None = None
    source: Path | None = None  # the config file they came from, if any
    registries: Mapping[str, str] = field(default_factory=dict)  # host[:port] -> base URL


def _parse(path: Path, text: str) -> Any:
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix in (".yaml", ".yml"):
            return yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: not valid {suffix[1:].upper()} ({error})") from None
    raise ConfigError(f"{path}: unknown config format {suffix or '(no suffix)'!r}; use .toml, .yaml or .yml")


def load_config(path: str | Path) -> ChainSettings:
    """Read and check one config file (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    data = _parse(path, text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of {', '.join(_FIELDS)}, got {type(data).__name__}")
    allowed = (*_FIELDS, *_TABLES)
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(f"{path}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(allowed)})")
    registries = _registries(path, data.pop("registries", {}))
    for name, value in data.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{path}: {name} must be a non-empty string")
    key = data.get("key")
    if key is not None and _RAW_KEY.match(key.strip()):
        # Said without repeating the value.
        raise ConfigError(
            f"{path}: key looks like a raw private key; name a source instead"
            " (keystore:<alias>, or test-account:<i> on a local chain)"
        )
    deployment = data.get("deployment")
    deployment_path = None
    if deployment is not None:
        deployment_path = Path(deployment).expanduser()
        if not deployment_path.is_absolute():
            deployment_path = path.parent / deployment_path
    return ChainSettings(rpc=data.get("rpc"), deployment=deployment_path, key=key, source=path, registries=registries)


def _registries(path: Path, table: Any) -> dict[str, str]:
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
        raise ConfigError(f"{path}: registries must be a table of host[:port] = base URL strings")
    try:
        return registry_map(base=table)
    except ValueError as error:
        raise ConfigError(f"{path}: registries: {error}") from None


def resolve_settings(
    config: str | Path | None = None,
    *,
    rpc: str | None = None,
    deployment: Path | None = None,
    key: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ChainSettings:
    """The flags over the config file (`config`, else $GPUMARKET_CONFIG, else none)."""
    environ = os.environ if environ is None else environ
    path = config or environ.get(CONFIG_ENV) or None
    base = load_config(path) if path else ChainSettings()
    return replace(base, rpc=rpc or base.rpc, deployment=deployment or base.deployment, key=key or base.key)


def require_settings(
    config: str | Path | None = None, *, rpc: str | None = None, deployment: Path | None = None, key: str | None = None
) -> ChainSettings:
    """:func:`resolve_settings` for a service, which needs all three: ConfigError names what is missing."""
    settings = resolve_settings(config, rpc=rpc, deployment=deployment, key=key)
    missing = [f"--{name}" for name in _FIELDS if not getattr(settings, name)]
    if missing:
        raise ConfigError(f"{', '.join(missing)} required (as options or in the --config file)")
    return settings
