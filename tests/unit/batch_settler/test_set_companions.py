"""GpuMarket.set_companions: the owner wires the companions in, once."""

from __future__ import annotations

import ape

from unit.expectations import ZERO_ADDRESS, emitted


def test_the_owner_wires_both_once(project, market, owner):
    settler = project.BatchSettler.deploy(market, sender=owner)
    bonds = project.OracleBonds.deploy(market, 0, 86_400, sender=owner)
    assert market.batch_settler() == ZERO_ADDRESS
    tx = market.set_companions(settler, bonds, sender=owner)
    assert market.batch_settler() == settler.address
    assert market.oracle_bonds() == bonds.address
    assert emitted(tx, market.CompanionsSet) == [{"batch_settler": settler.address, "oracle_bonds": bonds.address}]
    with ape.reverts("GpuMarket: companions already set or zero"):
        market.set_companions(settler, bonds, sender=owner)


def test_others_and_zero_addresses_are_refused(project, market, owner, attacker):
    settler = project.BatchSettler.deploy(market, sender=owner)
    with ape.reverts():
        market.set_companions(settler, settler, sender=attacker)
    with ape.reverts("GpuMarket: companions already set or zero"):
        market.set_companions(settler, ZERO_ADDRESS, sender=owner)


def test_without_companions_no_batch_settles(market, attacker):
    # batch_settler is zero: no caller can match it.
    report = (1, attacker.address, 1, 0, b"\x00" * 32, b"\x00" * 32, 1)
    with ape.reverts("escrow: caller is not the batch settler"):
        market.settle_verified(report, sender=attacker)
