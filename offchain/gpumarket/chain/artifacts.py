"""Compiled contracts (ABI and bytecode) for the services, without ape.

The services reach the chain through web3.py, so they need the market's ABI and bytecode
but not ape's project machinery. This module compiles the Vyper sources with vyper's
Python API, the same compiler and settings ape-vyper uses (the bytecode is identical), and
caches the result on disk by a hash of every contract source, the vyper version and the
snekmate version, so a service starts in milliseconds after the first compile (~3 s).

    artifacts = load_artifacts()              # cached in .build/gpumarket-artifacts/<hash>.json
    market = artifacts["GpuMarket"]           # Artifact(name, abi, bytecode, runtime_bytecode)

Search paths: the contracts folder (GpuMarket imports ``from modules import ...``) and
site-packages (``from snekmate.auth import ...``), as ape-vyper passes them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import site
import sysconfig
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "ARTIFACTS_DIR_ENV",
    "CONTRACTS",
    "CONTRACTS_DIR_ENV",
    "Artifact",
    "Artifacts",
    "ArtifactsError",
    "compile_contracts",
    "default_cache_dir",
    "default_contracts_dir",
    "load_artifacts",
    "source_hash",
]

log = logging.getLogger(__name__)

# Contract name -> source path relative to the contracts folder.
CONTRACTS: dict[str, str] = {
    "GpuMarket": "GpuMarket.vy",
    "MockToken": "mocks/MockToken.vy",
}

CONTRACTS_DIR_ENV = "GPUMARKET_CONTRACTS_DIR"
ARTIFACTS_DIR_ENV = "GPUMARKET_ARTIFACTS_DIR"

# offchain/gpumarket/chain/artifacts.py -> the repository root (an editable install).
_REPO_ROOT = Path(__file__).resolve().parents[3]
_CACHE_FORMAT = 1


class ArtifactsError(RuntimeError):
    """The contract sources cannot be found or do not compile."""


@dataclass(frozen=True)
class Artifact:
    """One compiled contract. `bytecode` is the deployment (init) code, 0x-prefixed hex;
    `runtime_bytecode` is the code a deployment holds before its immutables."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    runtime_bytecode: str

    def event_names(self) -> list[str]:
        return [entry["name"] for entry in self.abi if entry["type"] == "event"]

    def function_names(self) -> list[str]:
        return [entry["name"] for entry in self.abi if entry["type"] == "function"]


@dataclass(frozen=True)
class Artifacts:
    """The compiled contracts of one set of sources, keyed by contract name."""

    source_hash: str
    contracts: dict[str, Artifact]

    def __getitem__(self, name: str) -> Artifact:
        try:
            return self.contracts[name]
        except KeyError:
            raise KeyError(f"no artifact {name!r} (have {', '.join(sorted(self.contracts))})") from None


def default_contracts_dir() -> Path:
    """$GPUMARKET_CONTRACTS_DIR, else the repository's contracts/ folder."""
    return Path(os.environ.get(CONTRACTS_DIR_ENV) or _REPO_ROOT / "contracts")


def default_cache_dir() -> Path:
    """$GPUMARKET_ARTIFACTS_DIR, else <repo>/.build/gpumarket-artifacts (git-ignored)."""
    return Path(os.environ.get(ARTIFACTS_DIR_ENV) or _REPO_ROOT / ".build" / "gpumarket-artifacts")


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def source_hash(contracts_dir: Path | None = None) -> str:
    """sha256 over every .vy/.vyi source (path and content), vyper's and snekmate's versions."""
    root = Path(contracts_dir) if contracts_dir is not None else default_contracts_dir()
    sources = sorted(p for p in root.rglob("*") if p.suffix in (".vy", ".vyi") and p.is_file())
    if not sources:
        raise ArtifactsError(f"no Vyper sources under {root}")
    digest = hashlib.sha256()
    digest.update(f"vyper {_package_version('vyper')} snekmate {_package_version('snekmate')}\n".encode())
    for path in sources:
        content = path.read_bytes()
        digest.update(f"{path.relative_to(root).as_posix()} {len(content)}\n".encode())
        digest.update(content)
    return digest.hexdigest()


def _search_paths(contracts_dir: Path) -> list[Path]:
    paths = [contracts_dir.resolve()]
    for entry in [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]:
        path = Path(entry)
        if path.is_dir() and path not in paths:
            paths.append(path)
    return paths


def compile_contracts(contracts_dir: Path | None = None, names: tuple[str, ...] = tuple(CONTRACTS)) -> Artifacts:
    """Compile `names` (keys of CONTRACTS) with vyper's Python API; no cache."""
    from vyper.compiler import compile_from_file_input
    from vyper.compiler.input_bundle import FilesystemInputBundle
    from vyper.exceptions import VyperException

    root = Path(contracts_dir) if contracts_dir is not None else default_contracts_dir()
    bundle = FilesystemInputBundle(_search_paths(root))
    compiled: dict[str, Artifact] = {}
    for name in names:
        path = (root / CONTRACTS[name]).resolve()
        if not path.is_file():
            raise ArtifactsError(f"{name}: source {path} not found")
        try:
            output = compile_from_file_input(
                bundle.load_file(path), input_bundle=bundle, output_formats=["abi", "bytecode", "bytecode_runtime"]
            )
        except VyperException as error:
            raise ArtifactsError(f"{name}: vyper failed: {error}") from error
        compiled[name] = Artifact(
            name=name, abi=output["abi"], bytecode=output["bytecode"], runtime_bytecode=output["bytecode_runtime"]
        )
    return Artifacts(source_hash=source_hash(root), contracts=compiled)


def _to_json(artifacts: Artifacts) -> dict[str, Any]:
    return {
        "format": _CACHE_FORMAT,
        "source_hash": artifacts.source_hash,
        "contracts": {
            name: {"abi": a.abi, "bytecode": a.bytecode, "runtime_bytecode": a.runtime_bytecode}
            for name, a in artifacts.contracts.items()
        },
    }


def _from_json(data: dict[str, Any]) -> Artifacts:
    return Artifacts(
        source_hash=data["source_hash"],
        contracts={name: Artifact(name=name, **fields) for name, fields in data["contracts"].items()},
    )


def _read_cache(path: Path, expected_hash: str) -> Artifacts | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("format") != _CACHE_FORMAT or data.get("source_hash") != expected_hash:
            return None
        artifacts = _from_json(data)
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("ignoring unreadable artifact cache %s: %s", path, error)
        return None
    return artifacts if set(CONTRACTS) <= set(artifacts.contracts) else None


def load_artifacts(contracts_dir: Path | None = None, cache_dir: Path | None = None) -> Artifacts:
    """The compiled contracts for the current sources: from the cache, else compiled and cached.

    The cache file is written atomically (a temporary file renamed into place), so
    processes that start together and all compile never read a partial file.
    """
    root = Path(contracts_dir) if contracts_dir is not None else default_contracts_dir()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    expected = source_hash(root)
    path = cache / f"{expected}.json"
    cached = _read_cache(path, expected)
    if cached is not None:
        return cached
    log.info("compiling contracts under %s (sources %s)", root, expected[:12])
    artifacts = compile_contracts(root)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=cache, prefix=".tmp-", suffix=".json", delete=False) as out:
        json.dump(_to_json(artifacts), out)
    os.replace(out.name, path)
    return artifacts
