"""renounce_ownership is deliberately not exported: a market without an owner could
never rotate its committee (GpuMarket.vy exports only the two-step functions)."""

from __future__ import annotations

import ape
from eth_utils import keccak


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def test_abi_has_no_renounce_ownership(market):
    functions = {abi.name for abi in market.contract_type.abi if abi.type == "function"}
    assert "renounce_ownership" not in functions
    # The two-step functions that are meant to be there, so the check reads the right ABI.
    assert {"owner", "pending_owner", "transfer_ownership", "accept_ownership"} <= functions


def test_raw_call_to_renounce_selector_reverts_and_owner_stays(market, owner):
    with ape.reverts():
        owner.transfer(market, 0, data=selector("renounce_ownership()"))
    assert market.owner() == owner


def test_raw_call_reaches_an_exported_function(market, owner):
    # Control for the test above: the same raw call path does run exported functions.
    owner.transfer(market, 0, data=selector("pause()"))
    assert market.paused() is True
