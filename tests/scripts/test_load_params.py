"""load_params / parse_params: the YAML schema and its error messages; params_path_for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gpumarket.chain.params import (
    PARAMETER_BOUNDS,
    ParamsError,
    check_for_network,
    load_params,
    params_path_for,
    parse_params,
)
from gpumarket.testing.committee import Committee

CHECKSUMMED = "0x5A57291253C12149A63865cb43889Ad663A7EA2d"


def test_default_params_load_with_the_test_committee_and_classes(default_params_path):
    params = load_params(default_params_path)
    # The YAML lists addresses; the keys behind them are derived at run time.
    assert params.committee.members == Committee.of_size(3, threshold=2).addresses
    assert params.committee.threshold == 2
    assert [(c.id, c.name, c.floor_per_gpu_gops) for c in params.gpu_classes] == [
        (1, "cpu-dev", 10),
        (2, "h100-sxm", 470_000),
        (3, "a100", 260_000),
        (4, "rtx4090", 264_000),
        (5, "l4-a10", 100_000),
        (6, "cpu-small", 1),
    ]
    assert params.stake_token == params.payment_token == "mock"
    assert params.treasury == "deployer"
    assert set(params.overrides()) == set(PARAMETER_BOUNDS)


@pytest.mark.parametrize("ecosystem", ["ethereum", "arbitrum", "base"])
def test_public_network_templates_load_with_a_timelock_and_pass_the_public_checks(repo_root, ecosystem):
    params = load_params(repo_root / "deploy" / "params" / f"{ecosystem}-sepolia.example.yaml")
    assert params.owner is None and params.timelock is not None
    assert params.timelock.min_delay > params.overrides()["unbonding_period"] and params.timelock.guardians
    assert params.confirmations >= 3
    assert params.overrides() == {"min_stake": 10**21, "unbonding_period": 604_800, "settle_grace": 3_600}
    check_for_network(params, dev_network=False, deploy_mock_tokens=False, network=f"{ecosystem}:sepolia")


def test_lowercase_address_is_accepted_and_checksummed(params_data):
    params_data["treasury"] = CHECKSUMMED.lower()
    assert parse_params(params_data).treasury == CHECKSUMMED


def test_left_out_parameters_keep_the_contract_defaults(params_data):
    del params_data["parameters"]
    assert parse_params(params_data).overrides() == {}


def _set(path: tuple, value: Any) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(key: str) -> Callable[[dict], None]:
    return lambda data: data.pop(key)


MEMBERS = Committee.of_size(4, threshold=3).addresses

INVALID = {
    "unquoted address": (
        _set(("treasury",), 0x5A57291253C12149A63865CB43889AD663A7EA2D),
        "treasury: an address must be a quoted string",
    ),
    "bad checksum": (
        _set(("treasury",), CHECKSUMMED[:-1] + "D"),
        "treasury: '0x5A57291253C12149A63865cb43889Ad663A7EA2D' has mixed case but an invalid EIP-55 checksum",
    ),
    "short address": (
        _set(("stake_token",), "0x1234"),
        "stake_token: '0x1234' is not a 20-byte 0x-prefixed hex address (or use 'mock')",
    ),
    "zero treasury": (_set(("treasury",), "0x" + "00" * 20), "treasury: the zero address is not allowed"),
    "unknown top-level field": (
        _set(("tresury",), CHECKSUMMED),
        "tresury: unknown field"
        " (allowed: stake_token, payment_token, treasury, committee, gpu_classes, parameters, oracle_bonds, owner,"
        " timelock, confirmations)",
    ),
    "misspelt parameter": (
        _set(("parameters", "colateral_bps"), 2_000),
        "parameters.colateral_bps: unknown field (allowed: min_stake,",
    ),
    "parameter below its bound": (
        _set(("parameters", "collateral_bps"), 499),
        "parameters.collateral_bps: Input should be greater than or equal to 500",
    ),
    "parameter above its bound": (
        _set(("parameters", "protocol_fee_bps"), 1_001),
        "parameters.protocol_fee_bps: Input should be less than or equal to 1000",
    ),
    "parameter as a string": (
        _set(("parameters", "settle_grace"), "3600"),
        "parameters.settle_grace: Input should be a valid integer",
    ),
    "parameter as a bool": (
        _set(("parameters", "jail_after_failures"), True),
        "parameters.jail_after_failures: Input should be a valid integer",
    ),
    "threshold not a majority": (
        _set(("committee",), {"members": MEMBERS, "threshold": 2}),
        "committee: threshold 2 of 4 is not a strict majority (needs > 2)",
    ),
    "threshold above members": (
        _set(("committee", "threshold"), 4),
        "committee: threshold 4 is above the member count 3",
    ),
    "duplicate member": (
        _set(("committee", "members"), [MEMBERS[0], MEMBERS[1], MEMBERS[0]]),
        f"committee: duplicate member {MEMBERS[0]}",
    ),
    "too many members": (
        _set(("committee",), {"members": Committee.of_size(32, 17).addresses, "threshold": 17}),
        "committee.members: List should have at most 31 items",
    ),
    "no members": (_set(("committee", "members"), []), "committee.members: List should have at least 1 item"),
    "no gpu class": (_set(("gpu_classes",), []), "gpu_classes: List should have at least 1 item"),
    "class id zero": (
        _set(("gpu_classes", 0, "id"), 0),
        "gpu_classes.0.id: Input should be greater than or equal to 1",
    ),
    "class floor zero": (
        _set(("gpu_classes", 1, "floor_per_gpu_gops"), 0),
        "gpu_classes.1.floor_per_gpu_gops: Input should be greater than or equal to 1",
    ),
    "class name with spaces": (
        _set(("gpu_classes", 1, "name"), "H100 SXM"),
        "gpu_classes.1.name: String should match pattern",
    ),
    "duplicate class id": (_set(("gpu_classes", 1, "id"), 1), "gpu_classes: duplicate class id: 1"),
    "duplicate class name": (_set(("gpu_classes", 1, "name"), "cpu-dev"), "gpu_classes: duplicate class name: cpu-dev"),
    "missing committee": (_delete("committee"), "committee: Field required"),
}


@pytest.mark.parametrize("mutate, message", INVALID.values(), ids=INVALID.keys())
def test_invalid_params_are_refused_naming_the_file_and_field(params_data, write_params, mutate, message):
    mutate(params_data)
    path = write_params(params_data)
    with pytest.raises(ParamsError) as error:
        load_params(path)
    assert f"{path}: {message}" in str(error.value)


def test_every_problem_is_reported_at_once(params_data):
    params_data["parameters"]["slash_bps"] = 0
    params_data["payment_token"] = "usdc"
    with pytest.raises(ParamsError) as error:
        parse_params(params_data, "p.yaml")
    assert str(error.value).splitlines() == [
        "p.yaml: payment_token: 'usdc' is not a 20-byte 0x-prefixed hex address (or use 'mock')",
        "p.yaml: parameters.slash_bps: Input should be greater than or equal to 1",
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("stake_token: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping at the top level, got list"),
        ("", "expected a mapping at the top level, got NoneType"),
    ],
    ids=["syntax error", "a list", "empty file"],
)
def test_a_file_that_is_not_a_params_mapping_is_refused(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError, match=message):
        load_params(path)


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(ParamsError, match="cannot read"):
        load_params(tmp_path / "absent.yaml")


def test_params_path_prefers_the_network_file(tmp_path):
    (tmp_path / "default.yaml").write_text("{}")
    assert params_path_for("ethereum", "sepolia", tmp_path) == tmp_path / "default.yaml"
    (tmp_path / "ethereum-sepolia.yaml").write_text("{}")
    assert params_path_for("ethereum", "sepolia", tmp_path) == tmp_path / "ethereum-sepolia.yaml"
    assert params_path_for("arbitrum", "sepolia", tmp_path) == tmp_path / "default.yaml"
