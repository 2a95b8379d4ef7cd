"""The committee rules of docs/PROTOCOL.md, enforced alike by the constructor and set_committee:
1 <= threshold <= len <= MAX_MEMBERS, threshold > len / 2, no zero address, no duplicate.

Both entry points share one shape, so every case runs against both.
"""

from __future__ import annotations

from collections.abc import Callable

import ape
import pytest

from helpers.committee import Committee
from helpers.constants import MAX_MEMBERS, NO_COMPANIONS
from unit.expectations import ZERO_ADDRESS


def members(count: int) -> list[str]:
    return Committee.of_size(count, threshold=count, first_index=200).addresses


def with_zero(count: int) -> list[str]:
    addresses = members(count)
    addresses[1] = ZERO_ADDRESS
    return addresses


def with_duplicate(count: int) -> list[str]:
    addresses = members(count)
    addresses[-1] = addresses[0]
    return addresses


REJECTED = [
    pytest.param([], 1, "committee: no members", id="no-members"),
    pytest.param([], 0, "committee: no members", id="no-members-threshold-0"),
    pytest.param(members(3), 0, "committee: bad threshold", id="threshold-0"),
    pytest.param(members(3), 4, "committee: bad threshold", id="threshold-above-len"),
    pytest.param(members(1), 2, "committee: bad threshold", id="threshold-2-of-1"),
    pytest.param(members(4), 2, "committee: no majority threshold", id="2-of-4"),
    pytest.param(members(2), 1, "committee: no majority threshold", id="1-of-2"),
    pytest.param(members(MAX_MEMBERS), MAX_MEMBERS // 2, "committee: no majority threshold", id="15-of-31"),
    pytest.param(with_zero(3), 2, "committee: zero address member", id="zero-address-member"),
    pytest.param(with_duplicate(3), 2, "committee: duplicate member", id="duplicate-member"),
    pytest.param(with_duplicate(MAX_MEMBERS), MAX_MEMBERS, "committee: duplicate member", id="duplicate-in-31"),
]

ACCEPTED = [
    pytest.param(members(1), 1, id="1-of-1"),
    pytest.param(members(2), 2, id="2-of-2"),
    pytest.param(members(3), 2, id="2-of-3"),
    pytest.param(members(4), 3, id="3-of-4"),
    pytest.param(members(MAX_MEMBERS), MAX_MEMBERS // 2 + 1, id="16-of-31"),
    pytest.param(members(MAX_MEMBERS), MAX_MEMBERS, id="31-of-31"),
]


@pytest.fixture(params=["constructor", "set_committee"])
def install(request, project, owner, treasury, market, stake_token, payment_token) -> Callable:
    """Installs a committee through one entry point; returns the contract and the epoch it gets."""

    def constructor(new_members: list[str], threshold: int):
        deployed = project.GpuMarket.deploy(
            stake_token, payment_token, treasury, new_members, threshold, *NO_COMPANIONS, sender=owner
        )
        return deployed, 1

    def set_committee(new_members: list[str], threshold: int):
        market.set_committee(new_members, threshold, sender=owner)
        return market, 2

    return constructor if request.param == "constructor" else set_committee


@pytest.mark.parametrize("new_members, threshold, reason", REJECTED)
def test_rejects_invalid_committee(install, market, new_members: list[str], threshold: int, reason: str):
    with ape.reverts(reason):
        install(new_members, threshold)
    assert market.epoch() == 1


@pytest.mark.parametrize("new_members, threshold", ACCEPTED)
def test_accepts_valid_committee(install, new_members: list[str], threshold: int):
    contract, epoch = install(new_members, threshold)
    assert contract.members() == new_members
    assert contract.threshold() == threshold
    assert contract.epoch() == epoch
    assert all(contract.is_member(member) for member in new_members)


def test_more_than_max_members_is_rejected_by_the_abi_decoder(install, market):
    # 32 distinct, non-zero members with a majority threshold: only the DynArray bound
    # of 31 is broken, and the contract's ABI decoder reverts with no reason string.
    with ape.reverts() as revert:
        install(members(MAX_MEMBERS + 1), MAX_MEMBERS // 2 + 2)
    assert revert.value.message in ("", "0x")
    assert market.epoch() == 1
