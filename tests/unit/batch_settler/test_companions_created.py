"""GpuMarket's constructor creates its companions from blueprints, bound to it for good."""

from __future__ import annotations

import ape

from helpers.constants import NO_COMPANIONS
from unit.companions import BOND, WITHDRAWAL_DELAY
from unit.expectations import ZERO_ADDRESS, emitted


def test_the_constructor_creates_both_bound_to_the_market(market, settler, bonds, stake_token):
    assert emitted(market.creation_metadata.receipt, market.CompanionsSet) == [
        {"batch_settler": settler.address, "oracle_bonds": bonds.address}
    ]
    assert settler.MARKET() == bonds.MARKET() == market.address
    assert bonds.STAKE_TOKEN() == stake_token.address
    assert (bonds.bond_amount(), bonds.withdrawal_delay()) == (BOND, WITHDRAWAL_DELAY)


def test_nothing_else_can_create_a_companion(project, market, owner):
    # A settler or bonds contract made for this market by anyone else would be one the
    # market does not know; refusing it keeps "the market's companion" unambiguous.
    with ape.reverts("BatchSettler: not created by its market"):
        project.BatchSettler.deploy(market, sender=owner)
    with ape.reverts("OracleBonds: not created by its market"):
        project.OracleBonds.deploy(market, market.STAKE_TOKEN(), BOND, WITHDRAWAL_DELAY, sender=owner)


def test_the_bonds_delay_is_checked_at_creation(project, owner, treasury, stake_token, payment_token, committee):
    blueprints = [project[name].declare(sender=owner).contract_address for name in ("BatchSettler", "OracleBonds")]
    with ape.reverts("OracleBonds: delay out of bounds"):
        project.GpuMarket.deploy(
            stake_token,
            payment_token,
            treasury,
            committee.addresses,
            committee.threshold,
            *blueprints,
            BOND,
            0,
            sender=owner,
        )


def test_without_companions_no_batch_settles(project, owner, treasury, stake_token, payment_token, committee, attacker):
    bare = project.GpuMarket.deploy(
        stake_token, payment_token, treasury, committee.addresses, committee.threshold, *NO_COMPANIONS, sender=owner
    )
    assert bare.batch_settler() == bare.oracle_bonds() == ZERO_ADDRESS
    assert emitted(bare.creation_metadata.receipt, bare.CompanionsSet) == []
    # batch_settler is zero: no caller can match it.
    report = (1, attacker.address, 1, 0, b"\x00" * 32, b"\x00" * 32, 1)
    with ape.reverts("escrow: caller not batch settler"):
        bare.settle_verified([report], sender=attacker)
