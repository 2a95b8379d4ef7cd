"""GpuMarket's constructor, governance side: docs/PROTOCOL.md defaults, treasury, owner, pause.

The committee and token checks of the same constructor live in
tests/unit/committee/test_committee_init.py and tests/unit/ledger/test_ledger_init.py.
"""

from __future__ import annotations

import ape
import pytest

from helpers.constants import CLASS_FLOORS, NO_COMPANIONS
from unit.expectations import ZERO_ADDRESS, emitted

from .governance_parameters import PARAMETER_IDS, PARAMETERS, Parameter


@pytest.fixture(scope="module")
def bare_market(project, owner, treasury, stake_token, payment_token, committee):
    """A deployment exactly as the constructor leaves it (no GPU classes added)."""
    return project.GpuMarket.deploy(
        stake_token, payment_token, treasury, committee.addresses, committee.threshold, *NO_COMPANIONS, sender=owner
    )


@pytest.mark.parametrize("parameter", PARAMETERS, ids=PARAMETER_IDS)
def test_parameter_starts_at_protocol_default(bare_market, parameter: Parameter):
    assert getattr(bare_market, parameter.name)() == parameter.default


def test_treasury_is_the_constructor_argument(bare_market, treasury):
    assert bare_market.treasury() == treasury


def test_deployer_is_owner_with_nothing_pending(bare_market, owner):
    assert bare_market.owner() == owner
    assert bare_market.pending_owner() == ZERO_ADDRESS


def test_starts_unpaused(bare_market):
    assert bare_market.paused() is False


def test_no_gpu_class_is_listed_until_governance_adds_one(bare_market):
    # docs/PROTOCOL.md: the deploy script sets the class table; the constructor lists none.
    for gpu_class in (0, *CLASS_FLOORS):
        assert bare_market.class_floor(gpu_class) == 0


def test_deployment_logs_ownership_to_deployer(bare_market, owner):
    assert emitted(bare_market.creation_metadata.receipt, bare_market.OwnershipTransferred) == [
        {"previous_owner": ZERO_ADDRESS, "new_owner": owner.address}
    ]


def test_zero_treasury_reverts(project, owner, stake_token, payment_token, committee):
    with ape.reverts("governance: zero treasury"):
        project.GpuMarket.deploy(
            stake_token,
            payment_token,
            ZERO_ADDRESS,
            committee.addresses,
            committee.threshold,
            *NO_COMPANIONS,
            sender=owner,
        )
