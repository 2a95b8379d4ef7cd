"""gpumarket.chain.artifacts: vyper's Python API gives what ape compiles, cached by source hash."""

from __future__ import annotations

import json
import shutil

import pytest

from gpumarket.chain import artifacts as artifacts_module
from gpumarket.chain.artifacts import (
    CONTRACTS,
    ArtifactsError,
    compile_contracts,
    default_cache_dir,
    load_artifacts,
    source_hash,
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
        arguments = ["parameter" if (name, i["name"]) == ("ParameterChanged", "name") else i["name"]
                     for i in entry["inputs"]]
        assert field_names(EVENT_TYPES[name]) == arguments, name


def test_cache_is_keyed_by_the_sources(tmp_path, monkeypatch, artifacts):
    contracts = tmp_path / "contracts"
    shutil.copytree(REPO_ROOT / "contracts", contracts)
    # The same sources elsewhere hash the same: seed the cache with the session's compile.
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(default_cache_dir() / f"{artifacts.source_hash}.json", cache)
    first = load_artifacts(contracts, cache)
    assert first == artifacts
    compile_contracts = artifacts_module.compile_contracts
    with monkeypatch.context() as patched:
        patched.setattr(artifacts_module, "compile_contracts", lambda *a, **k: pytest.fail("a cache hit compiled"))
        assert load_artifacts(contracts, cache) == first
    assert artifacts_module.compile_contracts is compile_contracts

    module = contracts / "modules" / "ledger.vy"
    module.write_text(module.read_text() + "\n# a comment changes the hash\n")
    assert source_hash(contracts) != first.source_hash
    changed = load_artifacts(contracts, cache)
    assert changed.source_hash != first.source_hash
    assert len(list(cache.glob("*.json"))) == 2
    assert changed["GpuMarket"].abi == first["GpuMarket"].abi


def test_unreadable_cache_is_rebuilt(tmp_path, artifacts, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{artifacts.source_hash}.json").write_text("{not json")
    # The compile itself is covered above; here it returns the session's result (same sources).
    compiled = []
    monkeypatch.setattr(artifacts_module, "compile_contracts", lambda root: compiled.append(root) or artifacts)
    rebuilt = load_artifacts(cache_dir=cache)
    assert len(compiled) == 1
    assert rebuilt == artifacts
    assert json.loads((cache / f"{artifacts.source_hash}.json").read_text())["source_hash"] == artifacts.source_hash


def test_missing_sources_raise(tmp_path):
    with pytest.raises(ArtifactsError, match="no Vyper sources"):
        load_artifacts(tmp_path, tmp_path / "cache")


def test_a_compile_error_names_the_contract(tmp_path):
    contracts = tmp_path / "contracts"
    shutil.copytree(REPO_ROOT / "contracts", contracts)
    (contracts / "mocks" / "MockToken.vy").write_text("# pragma version ~=0.4.3\nthis is not vyper\n")
    with pytest.raises(ArtifactsError, match="MockToken: vyper failed"):
        compile_contracts(contracts, names=("MockToken",))
