"""Changing the claim cannot dodge a spoof slash (issue 9, attack 2).

The attack: a provider claims more hardware than it has. The committee measures it, finds
under half of the claim, and signs a spoof report that slashes SPOOF_SLASH_BPS of its stake.
The provider sees the report coming (the oracles gossip it, or it sits in the mempool) and
front-runs it with update_provider, changing its class or GPU count. Before issue 9 the
report then no longer matched the claim and reverted ("verification: claim mismatch"):
no slash, ever, for the price of one transaction.

A hardware report now names the claim version it measured (the registry counts claim
changes), and a spoof report of an outdated version still slashes; it leaves the new
claim's verification alone. Every report here is signed by a quorum of the committee.
"""

from __future__ import annotations

import pytest

from gpumarket.signing.eip712 import HardwareReport
from helpers.constants import BPS, CPU_DEV, H100, MIN_STAKE, PRICE, TOKEN

ENDPOINT = "http://127.0.0.1:8700"
STAKE = MIN_STAKE + 100 * TOKEN
CLAIMED_GPUS = 8

# What the provider switches to when it sees the report coming.
DODGES = {
    "fewer-gpus": (H100, 1),
    "more-gpus": (H100, CLAIMED_GPUS + 1),
    "other-class": (CPU_DEV, CLAIMED_GPUS),
}


def ceil_bps(amount: int, bps: int) -> int:
    return -(-amount * bps // BPS)


@pytest.fixture
def spoofer(root_kit, market, chain, provider):
    """A provider claiming eight H100s, staked, and verified once (by a lenient or fooled
    measurement); a minute later the committee measures it again."""
    market.register(H100, CLAIMED_GPUS, PRICE, ENDPOINT, sender=provider)
    root_kit.submit_hardware(root_kit.hardware_report(provider))
    market.stake(STAKE, sender=provider)
    chain.mine(timestamp=chain.pending_timestamp + 60)
    return provider


def spoof_report(kit, account) -> HardwareReport:
    """The committee's report of the claim as it stands now: a tenth of the requirement."""
    record = kit.market.providers(account)
    required = kit.market.class_floor(record.gpu_class) * record.gpu_count
    return kit.hardware_report(account, measured=required // 10)


def assert_slashed(kit, tx, account, report: HardwareReport) -> None:
    slashed = ceil_bps(STAKE, kit.market.spoof_slash_bps())
    [rejected] = tx.decode_logs(kit.market.HardwareRejected)
    assert rejected.event_arguments["claim_version"] == report.claim_version
    assert rejected.event_arguments["slashed"] == slashed
    [event] = tx.decode_logs(kit.market.Slashed)
    assert event.event_arguments == {
        "provider": account.address,
        "amount": slashed,
        "beneficiary": "0x0000000000000000000000000000000000000000",
        "beneficiary_share": 0,
    }
    assert kit.market.stake_of(account).free == STAKE - slashed
    kit.assert_conserved()


@pytest.mark.parametrize("dodge", sorted(DODGES))
def test_a_claim_changed_before_the_spoof_report_lands_is_still_slashed(root_kit, market, spoofer, dodge):
    kit = root_kit
    report = spoof_report(kit, spoofer)
    signatures = kit.committee.sign(kit.domain, report)

    # Front-run: the claim changes before the report is submitted.
    gpu_class, gpu_count = DODGES[dodge]
    market.update_provider(gpu_class, gpu_count, PRICE, ENDPOINT, sender=spoofer)
    assert market.providers(spoofer).claim_version == report.claim_version + 1

    tx = market.submit_hardware_report(report, signatures, sender=kit.keeper)
    assert_slashed(kit, tx, spoofer, report)


def test_front_running_in_the_same_block_does_not_help(root_kit, market, chain, spoofer):
    kit = root_kit
    report = spoof_report(kit, spoofer)
    signatures = kit.committee.sign(kit.domain, report)
    chain.provider.auto_mine = False
    try:
        update_tx = market.update_provider(H100, 1, PRICE, ENDPOINT, sender=spoofer)
        report_tx = market.submit_hardware_report(report, signatures, sender=kit.keeper)
        chain.mine()
    finally:
        chain.provider.auto_mine = True
    assert update_tx.block_number == report_tx.block_number
    assert_slashed(kit, report_tx, spoofer, report)


def test_changing_the_claim_twice_does_not_help_either(root_kit, market, spoofer):
    kit = root_kit
    report = spoof_report(kit, spoofer)
    signatures = kit.committee.sign(kit.domain, report)
    market.update_provider(H100, 1, PRICE, ENDPOINT, sender=spoofer)
    market.update_provider(CPU_DEV, 2, PRICE, ENDPOINT, sender=spoofer)
    tx = market.submit_hardware_report(report, signatures, sender=kit.keeper)
    assert_slashed(kit, tx, spoofer, report)


def test_the_old_claims_slash_leaves_an_honestly_verified_new_claim_alone(root_kit, market, chain, spoofer):
    # The provider really has one H100: it changes its claim to that and gets it verified.
    # The slash for the old claim still lands, and the honest new claim stays verified.
    kit = root_kit
    report = spoof_report(kit, spoofer)
    signatures = kit.committee.sign(kit.domain, report)
    market.update_provider(H100, 1, PRICE, ENDPOINT, sender=spoofer)
    kit.submit_hardware(kit.hardware_report(spoofer))
    verified_until = market.providers(spoofer).verified_until
    assert market.is_verified(spoofer)

    tx = market.submit_hardware_report(report, signatures, sender=kit.keeper)

    assert_slashed(kit, tx, spoofer, report)
    assert market.providers(spoofer).verified_until == verified_until
    assert market.is_verified(spoofer)
