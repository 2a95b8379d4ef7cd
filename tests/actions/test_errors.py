"""The chain layer's failures as ActionErrors: a contract revert that slipped past the checks,
a node on another chain, a deployment file that is not one, a market address without code."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gpumarket.actions import ActionError, guard, open_market
from gpumarket.actions.context import load_deployment
from gpumarket.actions.errors import from_revert
from gpumarket.chain.errors import ContractRevert

from .conftest import CPU_DEV, PRICE


def test_a_real_revert_becomes_an_action_error_naming_the_reason(world):
    key = world.new_key()
    market = world.market(key)
    market.register(CPU_DEV, 1, PRICE, "http://127.0.0.1:9/x")
    with pytest.raises(ActionError) as caught, guard():
        market.register(CPU_DEV, 1, PRICE, "http://127.0.0.1:9/x")  # straight to the contract
    error = caught.value
    assert error.code == "reverted"
    assert "registry: already registered" in error.message
    assert error.hint.startswith("use `update`")


def test_an_unknown_revert_keeps_its_reason_without_a_hint():
    error = from_revert(ContractRevert("custom: weird", function="foo", tx_hash="0xab"))
    assert str(error) == "foo: the contract refused: custom: weird (mined in 0xab)"


def test_a_deployment_of_another_chain_is_the_wrong_network(world):
    other = dataclasses.replace(world.deployment, chain_id=world.deployment.chain_id + 1)
    with pytest.raises(ActionError) as caught:
        open_market(world.w3, other)
    assert caught.value.code == "wrong_network"
    assert f"chain {other.chain_id}" in caught.value.message


def test_a_market_address_without_code_is_refused(world):
    empty = dataclasses.replace(world.deployment, market=world.new_key(ether=0).address)
    with pytest.raises(ActionError) as caught:
        open_market(world.w3, empty)
    assert caught.value.code == "no_market"


def test_deployment_files_that_are_not_records(tmp_path):
    with pytest.raises(ActionError) as caught:
        load_deployment(tmp_path / "missing.json")
    assert caught.value.code == "bad_deployment"
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ActionError, match="not JSON"):
        load_deployment(tmp_path / "bad.json")
    (tmp_path / "partial.json").write_text(json.dumps({"chain_id": 1}))
    with pytest.raises(ActionError, match="not a deployment record"):
        load_deployment(tmp_path / "partial.json")
