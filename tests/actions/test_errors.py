"""The chain layer's failures as ActionErrors: a contract revert that slipped past the checks,
a node on another chain, a deployment file that is not one, a market address without code."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gpumarket.actions import ActionError, guard, open_market
from gpumarket.actions.context import load_deployment
from gpumarket.actions.errors import from_client_error, from_revert
from gpumarket.agentapi.errors import ProviderRefused, ProviderUnreachable
from gpumarket.chain.errors import ContractRevert
from gpumarket.client.errors import JobNotAccepted

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


def test_the_client_librarys_errors_keep_their_code_and_hint():
    with pytest.raises(ActionError) as caught, guard():
        raise ProviderUnreachable("http://127.0.0.1:9", "ConnectionRefusedError")
    assert caught.value.code == "provider_unreachable" and caught.value.hint.startswith("retry later")
    refused = from_client_error(ProviderRefused("http://a", 409, "spec_hash_mismatch", "no"))
    assert refused.code == "spec_hash_mismatch" and refused.hint.startswith("send the exact spec")
    waited = from_client_error(JobNotAccepted(7, 0, deadline_passed=False))
    assert waited.code == "job_not_accepted" and "send-spec 7 --spec FILE --wait" in waited.hint
    assert waited.message == "job 7 not accepted: the wait timed out (accept deadline 1970-01-01 00:00:00 UTC)"


def test_an_expire_revert_says_when_it_is_allowed():
    error = from_revert(ContractRevert("escrow: deadline not passed", function="expire_job"))
    assert error.code == "reverted" and "after its accept deadline" in error.hint


def test_details_travel_in_the_json_document():
    error = ActionError("stopped", "resume", code="interrupted", details={"job_id": 7})
    assert error.to_json() == {"job_id": 7, "error": "interrupted", "message": "stopped", "hint": "resume"}
