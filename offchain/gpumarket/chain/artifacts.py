"""Compiled contracts (ABI and bytecode), shipped with the package.

The services reach the chain through web3.py: they need each contract's ABI and bytecode, not a
compiler. Both ship as package data, gpumarket/chain/compiled/contracts.json, built from contracts/
by `make artifacts` (``python -m gpumarket.chain.artifacts``) and committed; loading it needs
nothing but the standard library.

    artifacts = load_artifacts()              # the shipped contracts (read once per process)
    market = artifacts["GpuMarket"]           # Artifact(name, abi, bytecode, runtime_bytecode)

`compile_contracts` compiles the Vyper sources afresh with vyper's Python API, the same compiler
and settings ape-vyper uses (the bytecode is identical). It needs vyper and snekmate, the dev extra,
and a checkout of the repository. `make artifacts` writes its output; tests/chain/test_artifacts.py
checks that the shipped file equals it, so a contract changed without `make artifacts` fails CI.

Search paths of a compile: the contracts folder (GpuMarket imports ``from modules import ...``) and
site-packages (``from snekmate.auth import ...``), as ape-vyper passes them.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import site
import sysconfig
import tempfile
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

__all__ = [
    "CONTRACTS",
    "REGENERATE_COMMAND",
    "SHIPPED_PATH",
    "Artifact",
    "Artifacts",
    "ArtifactsError",
    "compile_contracts",
    "default_contracts_dir",
    "load_artifacts",
    "read_artifacts",
    "shipped_file",
    "source_hash",
    "write_artifacts",
]

# Contract name -> source path relative to the contracts folder.
CONTRACTS: dict[str, str] = {
    "GpuMarket": "GpuMarket.vy",
    "BatchSettler": "BatchSettler.vy",
    "OracleBonds": "OracleBonds.vy",
    "Timelock": "Timelock.vy",
    "MockToken": "mocks/MockToken.vy",
}

# The shipped file, relative to this package (gpumarket.chain), and the command that rebuilds it.
SHIPPED_PATH = "compiled/contracts.json"
REGENERATE_COMMAND = "make artifacts"

# offchain/gpumarket/chain/artifacts.py -> the repository root (a checkout, an editable install).
_REPO_ROOT = Path(__file__).resolve().parents[3]
_FORMAT = 2
_COMPILER_PACKAGES = ("vyper", "snekmate")


class ArtifactsError(RuntimeError):
    """The contracts cannot be loaded (a damaged install) or compiled (no sources, no vyper, a bad source)."""


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
    """The compiled contracts of one set of sources, keyed by contract name.

    `source_hash` identifies the sources (`source_hash()`); `compiler` maps vyper and snekmate to
    the versions that compiled them.
    """

    source_hash: str
    contracts: dict[str, Artifact]
    compiler: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Artifact:
        try:
            return self.contracts[name]
        except KeyError:
            raise KeyError(f"no artifact {name!r} (have {', '.join(sorted(self.contracts))})") from None


# --------------------------------------------------------------------------- the shipped file


def load_artifacts() -> Artifacts:
    """The contracts shipped with the package. Parsed once per process and shared: do not mutate."""
    return _shipped()


@functools.cache
def _shipped() -> Artifacts:
    shipped = resources.files("gpumarket.chain").joinpath(SHIPPED_PATH)
    try:
        text = shipped.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactsError(
            f"the package has no {SHIPPED_PATH} (a damaged install?); in a checkout, {REGENERATE_COMMAND} builds it"
        ) from None
    return _parse(text, str(shipped))


def read_artifacts(path: Path) -> Artifacts:
    """Artifacts from a file `write_artifacts` wrote."""
    return _parse(Path(path).read_text(encoding="utf-8"), str(path))


def _parse(text: str, where: str) -> Artifacts:
    try:
        data = json.loads(text)
        if data.get("format") != _FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {_FORMAT}")
        artifacts = Artifacts(
            source_hash=data["source_hash"],
            compiler=dict(data["compiler"]),
            contracts={name: Artifact(name=name, **fields) for name, fields in data["contracts"].items()},
        )
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ArtifactsError(f"{where} is not a contracts file ({error}); {REGENERATE_COMMAND} rebuilds it") from None
    missing = set(CONTRACTS) - set(artifacts.contracts)
    if missing:
        raise ArtifactsError(f"{where} lacks {', '.join(sorted(missing))}; {REGENERATE_COMMAND} rebuilds it")
    return artifacts


def write_artifacts(artifacts: Artifacts, path: Path) -> Path:
    """Write `artifacts` as JSON (stable: sorted keys, one diff per changed field), atomically."""
    path = Path(path)
    data = {
        "format": _FORMAT,
        "built_by": REGENERATE_COMMAND,
        "source_hash": artifacts.source_hash,
        "compiler": artifacts.compiler,
        "contracts": {
            name: {"abi": a.abi, "bytecode": a.bytecode, "runtime_bytecode": a.runtime_bytecode}
            for name, a in artifacts.contracts.items()
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".tmp-", suffix=".json", delete=False) as out:
        json.dump(data, out, indent=1, sort_keys=True)
        out.write("\n")
    os.chmod(out.name, 0o644)  # a temporary file is private; this one is read by every user of the package
    os.replace(out.name, path)
    return path


# --------------------------------------------------------------------------- compiling (dev extra)


def default_contracts_dir() -> Path:
    """The repository's contracts/ folder (sources are in a checkout, not in the package)."""
    return _REPO_ROOT / "contracts"


def source_hash(contracts_dir: Path | None = None) -> str:
    """sha256 over every .vy/.vyi source under `contracts_dir`, path and content."""
    root = Path(contracts_dir) if contracts_dir is not None else default_contracts_dir()
    sources = sorted(p for p in root.rglob("*") if p.suffix in (".vy", ".vyi") and p.is_file())
    if not sources:
        raise ArtifactsError(f"no Vyper sources under {root} (compiling needs a checkout of the repository)")
    digest = hashlib.sha256()
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


def _compiler_versions() -> dict[str, str]:
    try:
        return {name: metadata.version(name) for name in _COMPILER_PACKAGES}
    except metadata.PackageNotFoundError as error:
        raise ArtifactsError(
            f"compiling the contracts needs {error.name} (the dev extra): pip install 'gpumarket[dev]'"
        ) from None


def compile_contracts(contracts_dir: Path | None = None, names: tuple[str, ...] = tuple(CONTRACTS)) -> Artifacts:
    """Compile `names` (keys of CONTRACTS) under `contracts_dir` (default: the checkout's) with vyper.
    Sources already compiled in this process (the same source hash) are not compiled again."""
    root = (Path(contracts_dir) if contracts_dir is not None else default_contracts_dir()).resolve()
    return _compile(root, source_hash(root), names)


@functools.lru_cache(maxsize=4)
def _compile(root: Path, hashed: str, names: tuple[str, ...]) -> Artifacts:
    compiler = _compiler_versions()
    from vyper.compiler import compile_from_file_input
    from vyper.compiler.input_bundle import FilesystemInputBundle
    from vyper.exceptions import VyperException

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
    return Artifacts(source_hash=hashed, contracts=compiled, compiler=compiler)


def shipped_file() -> Path:
    """Where the shipped file lies in this checkout (what `make artifacts` overwrites)."""
    return Path(__file__).resolve().parent / SHIPPED_PATH


def main(argv: list[str] | None = None) -> None:
    """`python -m gpumarket.chain.artifacts`: compile contracts/ and write the shipped file."""
    parser = argparse.ArgumentParser(prog="python -m gpumarket.chain.artifacts", description=main.__doc__)
    parser.add_argument("--contracts", type=Path, default=None, help="the sources (default: the checkout's)")
    parser.add_argument(
        "--out", type=Path, default=None, help=f"the file to write (default: the package's {SHIPPED_PATH})"
    )
    args = parser.parse_args(argv)
    try:
        artifacts = compile_contracts(args.contracts)
    except ArtifactsError as error:
        parser.exit(1, f"error: {error}\n")
    path = write_artifacts(artifacts, args.out or shipped_file())
    versions = ", ".join(f"{name} {version}" for name, version in artifacts.compiler.items())
    print(f"wrote {path} ({', '.join(artifacts.contracts)}; {versions}; sources {artifacts.source_hash[:12]})")


if __name__ == "__main__":  # pragma: no cover
    main()
