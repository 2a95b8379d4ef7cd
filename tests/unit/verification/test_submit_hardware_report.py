"""verification.submit_hardware_report: a quorum-signed measurement verifies, unverifies or slashes."""

from __future__ import annotations

import ape
import pytest

from helpers.constants import CLASS_FLOORS, CPU_DEV, DAY, H100, HOUR, MIN_STAKE, TOKEN
from unit.expectations import ZERO_ADDRESS, ceil_bps, emitted, next_tx_at

GPUS = 2
REQUIRED = CLASS_FLOORS[CPU_DEV] * GPUS  # what a claim of two cpu-dev GPUs must measure
SPOOF_BELOW = REQUIRED // 2  # a measurement under half of the requirement is spoofing


@pytest.fixture
def claimed(provider, register):
    """The provider claims two cpu-dev GPUs; nothing verified, nothing staked."""
    register(provider, gpu_count=GPUS)
    return provider


@pytest.fixture
def verified(provider, ready_provider):
    """The provider claims two cpu-dev GPUs, is verified, and staked MIN_STAKE + 100 tokens."""
    return ready_provider(provider, gpu_count=GPUS)


def rejected_log(
    provider, measured: int, slashed: int, epoch: int = 1, claim_version: int = 0, gpu_count: int = GPUS
) -> dict:
    return {
        "provider": provider,
        "gpu_class": CPU_DEV,
        "gpu_count": gpu_count,
        "claim_version": claim_version,
        "measured_throughput": measured,
        "required_throughput": CLASS_FLOORS[CPU_DEV] * gpu_count,
        "slashed": slashed,
        "epoch": epoch,
    }


# ----------------------------------------------------------------------------- passing


@pytest.mark.parametrize(
    "measured, valid_for",
    [(REQUIRED, HOUR), (10 * REQUIRED, DAY)],
    ids=["at-the-floor-until-valid_until", "above-the-floor-for-the-whole-hardware-validity"],
)
def test_passing_report_verifies_and_logs(market, chain, claimed, submit_hardware, measured: int, valid_for: int):
    now = next_tx_at(chain)
    expected_until = now + valid_for  # at most HARDWARE_VALIDITY ahead, so never capped

    tx = submit_hardware(claimed, measured, valid_until=now + valid_for)

    assert emitted(tx, market.HardwareVerified) == [
        {
            "provider": claimed,
            "gpu_class": CPU_DEV,
            "gpu_count": GPUS,
            "claim_version": 0,
            "measured_throughput": measured,
            "verified_until": expected_until,
            "epoch": 1,
        }
    ]
    assert emitted(tx, market.HardwareRejected) == []
    assert market.providers(claimed).verified_until == expected_until
    assert market.last_report_valid_until(claimed, 0) == now + valid_for


# ----------------------------------------------------------------------------- failing


@pytest.mark.parametrize(
    "measured", [REQUIRED - 1, SPOOF_BELOW], ids=["just-below-the-floor", "exactly-half-the-floor"]
)
def test_below_the_floor_unverifies_without_slash(market, verified, submit_hardware, books, measured: int):
    stake_before = market.stake_of(verified)

    tx = submit_hardware(verified, measured)

    assert emitted(tx, market.HardwareRejected) == [rejected_log(verified, measured, 0)]
    assert emitted(tx, market.Slashed) == []
    assert emitted(tx, market.HardwareVerified) == []
    assert market.providers(verified).verified_until == 0
    assert not market.is_verified(verified)
    assert market.stake_of(verified) == stake_before
    books()


@pytest.mark.parametrize("measured", [SPOOF_BELOW - 1, 0], ids=["just-below-half", "nothing"])
def test_spoofed_hardware_slashes_free_stake_to_the_treasury(
    market, stake_token, treasury, provider, ready_provider, submit_hardware, books, measured: int
):
    ready_provider(provider, extra=7, gpu_count=GPUS)
    staked = MIN_STAKE + 7
    slashed = ceil_bps(staked, market.spoof_slash_bps())
    assert slashed == 100 * TOKEN + 1  # 10% of 1,000 tokens and 7 units, rounded up

    tx = submit_hardware(provider, measured)

    assert emitted(tx, market.HardwareRejected) == [rejected_log(provider, measured, slashed)]
    assert emitted(tx, market.Slashed) == [
        {"provider": provider, "amount": slashed, "beneficiary": ZERO_ADDRESS, "beneficiary_share": 0}
    ]
    assert market.claimable(stake_token, treasury) == slashed
    stake = market.stake_of(provider)
    assert (stake.free, stake.locked, stake.unbonding) == (staked - slashed, 0, 0)
    assert market.providers(provider).verified_until == 0
    books()


def test_spoof_slash_reaches_unbonding_stake(market, chain, stake_token, treasury, verified, submit_hardware, books):
    staked = market.stake_of(verified).free
    market.request_unstake(staked - 5, sender=verified)  # 5 units stay free
    release_at = market.stake_of(verified).release_at
    slashed = ceil_bps(staked, market.spoof_slash_bps())

    tx = submit_hardware(verified, 0)

    assert emitted(tx, market.HardwareRejected)[0]["slashed"] == slashed
    stake = market.stake_of(verified)
    assert (stake.free, stake.unbonding, stake.release_at) == (0, staked - slashed, release_at)
    assert market.claimable(stake_token, treasury) == slashed
    books()

    # Unbonding did not dodge the slash: only what is left is paid out.
    next_tx_at(chain, release_at)
    assert market.withdraw(sender=verified).return_value == staked - slashed


def test_spoof_slash_never_touches_locked_collateral_and_is_capped(
    market, owner, client, provider, ready_provider, create_job, submit_hardware, settle, books
):
    # A job worth 10,000 tokens with 100% collateral locks 10,000 tokens; MIN_STAKE stays free.
    price, duration = TOKEN, 10_000
    market.set_collateral_bps(10_000, sender=owner)
    market.set_spoof_slash_bps(5_000, sender=owner)
    collateral = price * duration
    ready_provider(provider, extra=collateral, price=price)
    job_id = create_job(client, max_price=price, max_duration=duration)
    market.accept_job(job_id, sender=provider)
    # Half of the whole stake is 5,500 tokens, more than the 1,000 free: capped at the free stake.
    assert ceil_bps(MIN_STAKE + collateral, 5_000) > MIN_STAKE

    tx = submit_hardware(provider, 0)

    assert emitted(tx, market.Slashed)[0]["amount"] == MIN_STAKE
    stake = market.stake_of(provider)
    assert (stake.free, stake.locked, stake.unbonding) == (0, collateral, 0)
    books()

    # The running job still unlocks its whole collateral when it settles.
    settle(job_id, gpu_seconds=duration)
    assert market.stake_of(provider).free == collateral
    books()


@pytest.mark.parametrize("setting", ["spoof-slash-off", "nothing-staked"])
def test_spoof_with_nothing_to_slash_only_unverifies(
    market, owner, provider, register, verify, submit_hardware, setting: str
):
    register(provider, gpu_count=GPUS)
    verify(provider)
    if setting == "spoof-slash-off":
        market.set_spoof_slash_bps(0, sender=owner)
        market.stake(MIN_STAKE, sender=provider)

    tx = submit_hardware(provider, 0)

    assert emitted(tx, market.HardwareRejected) == [rejected_log(provider, 0, 0)]
    assert emitted(tx, market.Slashed) == []
    assert market.providers(provider).verified_until == 0


# ----------------------------------------------------------------------------- refused reports


def test_unregistered_provider_reverts(keeper, submit_hardware):
    with ape.reverts("verification: not registered"):
        submit_hardware(keeper, REQUIRED, gpu_class=CPU_DEV, gpu_count=GPUS)


@pytest.mark.parametrize(
    "claim",
    [dict(gpu_class=H100), dict(gpu_count=GPUS - 1), dict(gpu_count=GPUS + 1)],
    ids=["other-class", "fewer-gpus", "more-gpus"],
)
def test_report_not_matching_the_claim_reverts(claimed, submit_hardware, claim: dict):
    with ape.reverts("verification: claim mismatch"):
        submit_hardware(claimed, 10**12, **claim)


@pytest.mark.parametrize("offset", [0, -1], ids=["valid_until-now", "valid_until-past"])
def test_expired_report_reverts(chain, claimed, submit_hardware, offset: int):
    now = next_tx_at(chain)
    with ape.reverts("verification: report expired"):
        submit_hardware(claimed, REQUIRED, valid_until=now + offset)


def test_replayed_report_reverts(market, keeper, claimed, signed_hardware_report):
    report, signatures = signed_hardware_report(claimed, REQUIRED)
    market.submit_hardware_report(report, signatures, sender=keeper)
    with ape.reverts("verification: stale report"):
        market.submit_hardware_report(report, signatures, sender=keeper)


@pytest.mark.parametrize("offset", [0, -1], ids=["same-valid_until", "older-valid_until"])
def test_report_not_newer_than_the_last_reverts(market, claimed, submit_hardware, offset: int):
    # A failing report is accepted first; a passing one no newer must not undo it.
    submit_hardware(claimed, 0)
    last = market.last_report_valid_until(claimed, 0)
    with ape.reverts("verification: stale report"):
        submit_hardware(claimed, REQUIRED, valid_until=last + offset)


def test_class_removed_after_registration_reverts(market, owner, claimed, submit_hardware):
    market.set_gpu_class(CPU_DEV, 0, sender=owner)
    with ape.reverts("verification: unknown gpu class"):
        submit_hardware(claimed, REQUIRED)


@pytest.mark.parametrize("which", ["next-epoch", "previous-epoch"])
def test_report_for_another_epoch_reverts(market, owner, committee, claimed, submit_hardware, which: str):
    if which == "previous-epoch":
        market.set_committee(committee.addresses, committee.threshold, sender=owner)
        epoch = market.epoch() - 1
    else:
        epoch = market.epoch() + 1
    with ape.reverts("committee: wrong epoch"):
        submit_hardware(claimed, REQUIRED, epoch=epoch)


# ----------------------------------------------------------------------------- too far ahead


@pytest.mark.parametrize("validity", [HOUR, DAY, 30 * DAY], ids=["1h", "1d-default", "30d"])
@pytest.mark.parametrize("measured", [REQUIRED, 0], ids=["passing", "spoofed"])
def test_valid_until_may_lie_at_most_hardware_validity_ahead(
    market, owner, chain, claimed, submit_hardware, validity: int, measured: int
):
    # Further ahead, a report would set an ordering key no later report could pass.
    if validity != market.hardware_validity():
        market.set_hardware_validity(validity, sender=owner)
    now = next_tx_at(chain)
    with ape.reverts("verification: too far ahead"):
        submit_hardware(claimed, measured, valid_until=now + validity + 1)
    assert market.last_report_valid_until(claimed, 0) == 0

    now = next_tx_at(chain)
    submit_hardware(claimed, measured, valid_until=now + validity)
    assert market.last_report_valid_until(claimed, 0) == now + validity
    assert market.providers(claimed).verified_until == (now + validity if measured else 0)


def test_a_far_ahead_report_of_an_outdated_claim_is_refused_too(market, chain, claimed, submit_hardware):
    market.update_provider(
        CPU_DEV, GPUS + 1, market.providers(claimed).price_per_gpu_second, "http://127.0.0.1:8700", sender=claimed
    )
    now = next_tx_at(chain)
    with ape.reverts("verification: too far ahead"):
        submit_hardware(claimed, 0, valid_until=now + market.hardware_validity() + 1, gpu_count=GPUS, claim_version=0)


# ----------------------------------------------------------------------------- claim versions

NEW_GPUS = GPUS + 1  # the claim after the update: version 1
NEW_REQUIRED = CLASS_FLOORS[CPU_DEV] * NEW_GPUS


@pytest.fixture
def reclaimed(market, verified):
    """The verified two-GPU provider (claim version 0) has claimed three GPUs since (version 1):
    unverified until a report of the new claim."""
    record = market.providers(verified)
    market.update_provider(CPU_DEV, NEW_GPUS, record.price_per_gpu_second, record.endpoint, sender=verified)
    assert market.providers(verified).claim_version == 1
    assert not market.is_verified(verified)
    return verified


def old_claim(measured: int, **fields) -> dict:
    """submit_hardware arguments of a report of version 0: two GPUs."""
    return dict(measured=measured, gpu_count=GPUS, claim_version=0, **fields)


@pytest.mark.parametrize("version", [2, 3, 2**64 - 1], ids=["next", "after-next", "uint64-max"])
def test_a_claim_version_not_yet_made_reverts(reclaimed, submit_hardware, version: int):
    with ape.reverts("verification: unknown claim"):
        submit_hardware(reclaimed, NEW_REQUIRED, claim_version=version)


def test_a_registered_claim_has_version_zero_only(claimed, submit_hardware):
    with ape.reverts("verification: unknown claim"):
        submit_hardware(claimed, REQUIRED, claim_version=1)


def test_a_report_of_the_new_claim_verifies_it_and_names_its_version(market, chain, reclaimed, submit_hardware):
    now = next_tx_at(chain)
    tx = submit_hardware(reclaimed, NEW_REQUIRED, valid_until=now + DAY)
    assert emitted(tx, market.HardwareVerified) == [
        {
            "provider": reclaimed,
            "gpu_class": CPU_DEV,
            "gpu_count": NEW_GPUS,
            "claim_version": 1,
            "measured_throughput": NEW_REQUIRED,
            "verified_until": now + DAY,
            "epoch": 1,
        }
    ]
    assert market.is_verified(reclaimed)
    assert market.last_report_valid_until(reclaimed, 1) == now + DAY


@pytest.mark.parametrize(
    "claim", [{"gpu_count": GPUS}, {"gpu_class": H100, "gpu_count": NEW_GPUS}], ids=["old-count", "other-class"]
)
def test_a_report_of_the_current_version_must_match_its_claim(reclaimed, submit_hardware, claim: dict):
    with ape.reverts("verification: claim mismatch"):
        submit_hardware(reclaimed, 10**12, claim_version=1, **claim)


@pytest.mark.parametrize(
    "measured",
    [REQUIRED, 10 * REQUIRED, REQUIRED - 1, SPOOF_BELOW],
    ids=["passing", "far-above", "slow", "exactly-half-not-spoofed"],
)
@pytest.mark.parametrize("new_claim", ["unverified", "verified"])
def test_an_outdated_claim_that_would_not_slash_reverts(
    market, reclaimed, submit_hardware, measured: int, new_claim: str
):
    # A passing report of the old claim must never verify the new one, nor a slow one unverify it.
    if new_claim == "verified":
        submit_hardware(reclaimed, NEW_REQUIRED)
    before = market.providers(reclaimed)
    keys = [market.last_report_valid_until(reclaimed, version) for version in (0, 1)]
    with ape.reverts("verification: outdated claim"):
        submit_hardware(reclaimed, **old_claim(measured))
    assert market.providers(reclaimed) == before
    assert [market.last_report_valid_until(reclaimed, version) for version in (0, 1)] == keys
    assert market.is_verified(reclaimed) is (new_claim == "verified")


@pytest.mark.parametrize("measured", [SPOOF_BELOW - 1, 0], ids=["just-below-half", "nothing"])
@pytest.mark.parametrize("new_claim", ["unverified", "verified"])
def test_an_outdated_spoof_slashes_and_leaves_the_new_claim_alone(
    market,
    keeper,
    stake_token,
    treasury,
    reclaimed,
    submit_hardware,
    signed_hardware_report,
    books,
    measured: int,
    new_claim: str,
):
    # Changing the claim does not dodge the spoof slash of a report of the old claim.
    if new_claim == "verified":
        submit_hardware(reclaimed, NEW_REQUIRED)
    before = market.providers(reclaimed)
    new_claim_key = market.last_report_valid_until(reclaimed, 1)
    staked = market.stake_of(reclaimed).free
    slashed = ceil_bps(staked, market.spoof_slash_bps())

    report, signatures = signed_hardware_report(reclaimed, measured, gpu_count=GPUS, claim_version=0)
    tx = market.submit_hardware_report(report, signatures, sender=keeper)

    assert emitted(tx, market.HardwareRejected) == [
        rejected_log(reclaimed, measured, slashed, claim_version=0, gpu_count=GPUS)
    ]
    assert emitted(tx, market.Slashed) == [
        {"provider": reclaimed, "amount": slashed, "beneficiary": ZERO_ADDRESS, "beneficiary_share": 0}
    ]
    assert market.stake_of(reclaimed).free == staked - slashed
    assert market.claimable(stake_token, treasury) == slashed
    # The new claim's verification and ordering are untouched.
    assert market.providers(reclaimed) == before
    assert market.is_verified(reclaimed) is (new_claim == "verified")
    assert market.last_report_valid_until(reclaimed, 1) == new_claim_key
    assert market.last_report_valid_until(reclaimed, 0) == report.valid_until
    books()


def test_each_claim_version_orders_its_own_reports(market, chain, reclaimed, submit_hardware):
    # Version 0's last report (the `verified` fixture's) is a day ahead of its block.
    old_key = market.last_report_valid_until(reclaimed, 0)
    assert market.last_report_valid_until(reclaimed, 1) == 0

    # A report of version 1 is not held back by version 0's key: one valid no later applies.
    now = next_tx_at(chain)
    assert now + HOUR < old_key
    submit_hardware(reclaimed, NEW_REQUIRED, valid_until=now + HOUR)
    assert market.last_report_valid_until(reclaimed, 1) == now + HOUR
    assert market.last_report_valid_until(reclaimed, 0) == old_key

    # Within version 1, order holds: no later than its last is stale, even failing.
    for offset in (0, -1):
        with ape.reverts("verification: stale report"):
            submit_hardware(reclaimed, 0, valid_until=now + HOUR + offset)

    # Within version 0 too: a spoof report no later than version 0's last is stale...
    for offset in (0, -HOUR):
        with ape.reverts("verification: stale report"):
            submit_hardware(reclaimed, **old_claim(0, valid_until=old_key + offset))
    # ...and one just after it applies (the builder moves time so it is not too far ahead).
    submit_hardware(reclaimed, **old_claim(0))
    assert market.last_report_valid_until(reclaimed, 0) > old_key
    assert market.last_report_valid_until(reclaimed, 1) == now + HOUR
    assert market.is_verified(reclaimed)
