"""GpuMarket's constructor, committee side: the first committee is epoch 1.

The rules every committee must satisfy (at deployment too) are in test_committee_rules.py.
"""

from __future__ import annotations

from unit.expectations import emitted


def test_first_committee_is_epoch_one(market, committee):
    assert market.epoch() == 1
    assert market.members() == committee.addresses
    assert market.threshold() == committee.threshold


def test_deployment_logs_committee_changed(market, committee):
    receipt = market.creation_metadata.receipt
    assert emitted(receipt, market.CommitteeChanged) == [
        {"epoch": 1, "members": committee.addresses, "threshold": committee.threshold}
    ]
