"""gpumarket.chain.artifacts: the contracts the package ships equal a fresh compile of contracts/ (and
what ape compiles), load without a compiler, and a damaged or stale file says how to rebuild it."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys

import pytest

from gpumarket.chain.artifacts import (
    CONTRACTS,
    REGENERATE_COMMAND,
    Artifacts,
    ArtifactsError,
    compile_contracts,
    read_artifacts,
    shipped_file,
    source_hash,
    write_artifacts,
)
from gpumarket.chain.events import EVENT_TYPES, field_names

from .conftest import REPO_ROOT


def _canonical(abi: list[dict]) -> set[str]:
    # ape's model drops the constructor's empty `outputs`; nothing else differs.
    normalized = []
    for entry in abi:
        entry = dict(entry)
        if entry["type"] == "constructor" and entry.get("outputs") == []:
            del entry["outputs"]
        normalized.append(json.dumps(entry, sort_keys=True))
    return set(normalized)


def _differences(shipped: Artifacts, fresh: Artifacts) -> list[str]:
    found = [] if shipped.source_hash == fresh.source_hash else ["built from other sources"]
    found += [f"compiled by {shipped.compiler}, not {fresh.compiler}"] if shipped.compiler != fresh.compiler else []
    for name in sorted(set(shipped.contracts) | set(fresh.contracts)):
        if name not in shipped.contracts or name not in fresh.contracts:
            found.append(f"{name}: only in the {'fresh compile' if name in fresh.contracts else 'shipped file'}")
            continue
        for part in ("abi", "bytecode", "runtime_bytecode"):
            if getattr(shipped[name], part) != getattr(fresh[name], part):
                found.append(f"{name}: its {part} differs")
    return found


def test_the_shipped_contracts_equal_a_fresh_compile(tmp_path):
    # The command `make artifacts` runs, into a scratch file: what the package must ship.
    built = tmp_path / "contracts.json"
    subprocess.run(
        [sys.executable, "-m", "gpumarket.chain.artifacts", "--out", str(built)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    fresh = read_artifacts(built)
    assert fresh.source_hash == source_hash(REPO_ROOT / "contracts")
    differences = _differences(read_artifacts(shipped_file()), fresh)
    assert not differences, (
        f"{shipped_file().relative_to(REPO_ROOT)} is stale ({'; '.join(differences)}): "
        f"run `{REGENERATE_COMMAND}` and commit it"
    )


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_abi_and_bytecode_equal_apes(project, artifacts, name):
    contract_type = getattr(project, name).contract_type
    ape_abi = [entry.model_dump(mode="json", by_alias=True, exclude_none=True) for entry in contract_type.abi]
    assert _canonical(artifacts[name].abi) == _canonical(ape_abi)
    assert artifacts[name].bytecode == contract_type.deployment_bytecode.bytecode


def test_every_event_has_a_dataclass_with_its_arguments(artifacts):
    abi_events = {e["name"]: e for e in artifacts["GpuMarket"].abi if e["type"] == "event"}
    assert set(abi_events) == set(EVENT_TYPES)
    for name, entry in abi_events.items():
        arguments = [
            "parameter" if (name, i["name"]) == ("ParameterChanged", "name") else i["name"] for i in entry["inputs"]
        ]
        assert field_names(EVENT_TYPES[name]) == arguments, name


def test_loading_needs_no_compiler():
    # A fresh interpreter in which vyper, ape and eth-tester cannot be imported at all.
    code = """
import sys
for blocked in ("vyper", "ape", "boa", "eth_tester", "eth"):
    sys.modules[blocked] = None
from gpumarket.chain.artifacts import load_artifacts
artifacts = load_artifacts()
assert load_artifacts() is artifacts  # parsed once
print(sorted(artifacts.contracts), artifacts.compiler["vyper"])
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "['BatchSettler',",
        "'GpuMarket',",
        "'MockToken',",
        "'OracleBonds',",
        "'Timelock']",
        "0.4.3",
    ]


def test_written_artifacts_read_back_equal_and_readable_by_all(tmp_path, artifacts):
    path = write_artifacts(artifacts, tmp_path / "out" / "contracts.json")
    assert read_artifacts(path) == artifacts
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["contracts.json"]  # no temporary file left


def test_a_damaged_file_says_how_to_rebuild_it(tmp_path, artifacts):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ArtifactsError, match=f"not a contracts file.*{REGENERATE_COMMAND}"):
        read_artifacts(broken)
    data = json.loads(write_artifacts(artifacts, tmp_path / "full.json").read_text())
    del data["contracts"]["MockToken"]
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps(data))
    with pytest.raises(ArtifactsError, match=f"lacks MockToken.*{REGENERATE_COMMAND}"):
        read_artifacts(partial)


def test_the_source_hash_follows_every_source(tmp_path):
    original = source_hash(REPO_ROOT / "contracts")
    contracts = tmp_path / "contracts"
    shutil.copytree(REPO_ROOT / "contracts", contracts)
    assert source_hash(contracts) == original  # the same sources elsewhere hash the same
    module = contracts / "modules" / "ledger.vy"
    module.write_text(module.read_text() + "\n# a comment changes the hash\n")
    assert source_hash(contracts) != original


def test_missing_sources_raise(tmp_path):
    with pytest.raises(ArtifactsError, match="no Vyper sources"):
        compile_contracts(tmp_path)


def test_a_compile_error_names_the_contract(tmp_path):
    contracts = tmp_path / "contracts"
    shutil.copytree(REPO_ROOT / "contracts", contracts)
    (contracts / "mocks" / "MockToken.vy").write_text("# pragma version ~=0.4.3\nthis is not vyper\n")
    with pytest.raises(ArtifactsError, match="MockToken: vyper failed"):
        compile_contracts(contracts, names=("MockToken",))
