"""`ape run deploy` as a user runs it, on ape's in-process py-evm chain (ethereum:local:test)."""

from __future__ import annotations

import json

import pytest

from gpumarket.chain.params import PARAMETER_BOUNDS, load_params

DEPLOY = ("ape", "run", "deploy", "--network", "ethereum:local:test", "--account", "TEST::0")


def test_default_params_deploy_and_record(run_in_repo, tmp_path, owner, default_params_path, repo_root):
    result = run_in_repo(*DEPLOY, "--deploy-mock-tokens", "--out-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads((tmp_path / "local.json").read_text())
    assert f"written to {tmp_path / 'local.json'}" in result.stdout

    params = load_params(default_params_path)
    assert {k: record[k] for k in ("ecosystem", "network", "provider", "deployer", "mock_tokens", "params_file")} == {
        "ecosystem": "ethereum",
        "network": "local",
        "provider": "test",
        "deployer": owner.address,  # TEST::0 is the test mnemonic's first account
        "mock_tokens": True,
        "params_file": str(default_params_path.relative_to(repo_root)),  # no ethereum-local.yaml
    }
    assert record["chain_id"] > 0 and record["block"] > 0
    assert len({record["market"], record["stake_token"], record["payment_token"]}) == 3
    # Read back from the deployed contract by the script.
    assert record["params"]["treasury"] == owner.address
    assert record["params"]["committee"] == params.committee.model_dump()
    assert record["params"]["gpu_classes"] == [c.model_dump() for c in params.gpu_classes]
    assert record["params"]["parameters"] == params.overrides()


def test_custom_params_file_is_what_the_contract_holds(run_in_repo, tmp_path, params_data, write_params, accounts):
    params_data["treasury"] = accounts[1].address
    params_data["committee"] = {"members": [params_data["committee"]["members"][0]], "threshold": 1}
    params_data["gpu_classes"].append({"id": 7, "name": "l4", "floor_per_gpu_gops": 123_456})
    params_data["parameters"] = {"collateral_bps": 3_100, "protocol_fee_bps": 100, "jail_after_failures": 5}
    path = write_params(params_data)

    result = run_in_repo(*DEPLOY, "--params", str(path), "--out-dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads((tmp_path / "out" / "local.json").read_text())
    assert record["params_file"] == str(path)
    assert record["mock_tokens"] is True  # the YAML says "mock"; no flag needed locally
    assert record["params"]["treasury"] == accounts[1].address
    assert record["params"]["committee"] == params_data["committee"]
    assert record["params"]["gpu_classes"][-1] == {"id": 7, "name": "l4", "floor_per_gpu_gops": 123_456}
    on_chain = record["params"]["parameters"]
    assert {name: on_chain[name] for name in params_data["parameters"]} == params_data["parameters"]
    assert set(on_chain) == set(PARAMETER_BOUNDS)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda d: d["parameters"].update(collateral_bps=100),
            "parameters.collateral_bps: Input should be greater than or equal to 500",
        ),
        (
            lambda d: d.update(stake_token="0x000000000000000000000000000000000000dEaD"),
            "stake_token: no contract code at 0x000000000000000000000000000000000000dEaD",
        ),
    ],
    ids=["out of bounds", "token without code"],
)
def test_invalid_params_stop_the_script_before_anything_is_written(
    run_in_repo, tmp_path, params_data, write_params, mutate, message
):
    mutate(params_data)
    path = write_params(params_data)
    result = run_in_repo(*DEPLOY, "--params", str(path), "--out-dir", str(tmp_path / "out"))
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert "GpuMarket deployed" not in result.stdout
    assert not (tmp_path / "out").exists()
