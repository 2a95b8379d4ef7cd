# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Verification: committee hardware reports
@custom:contract-name verification
@license GNU Affero General Public License v3.0 only
@notice The committee measures a provider's hardware with timed challenges
        and signs a HardwareReport of the claim it measured (class, GPU
        count, claim version). A report at or above the class floor times
        the GPU count verifies the provider until the report's valid_until,
        which may lie at most HARDWARE_VALIDITY ahead. A report below it
        unverifies the provider; one below half of it (misreported hardware,
        the field's biggest fraud) also slashes SPOOF_SLASH_BPS of its stake.
        A failing report slashes even if the provider has changed its claim
        since it was measured, so changing the claim cannot dodge the slash;
        a report of an outdated claim never verifies or unverifies the new
        one. Reports of one claim version must arrive in increasing
        valid_until order, so neither a replay nor an older report can undo
        a newer one, and since valid_until is never far ahead, a fresh
        report always applies.
"""

from modules import governance
from modules import committee
from modules import registry
from modules import staking

uses: governance
uses: committee
uses: registry
uses: staking


# @dev A measurement below this share of the required throughput is spoofing.
SPOOF_THRESHOLD_BPS: constant(uint256) = 5_000


# @dev provider => claim version => valid_until of the last report accepted
# for that claim.
last_report_valid_until: public(HashMap[address, HashMap[uint64, uint256]])


# @dev Emitted when a report verifies a provider's claim.
event HardwareVerified:
    provider: indexed(address)
    gpu_class: uint16
    gpu_count: uint16
    claim_version: uint64
    measured_throughput: uint256
    verified_until: uint256
    epoch: uint256


# @dev Emitted when a report measures less than the claim requires.
event HardwareRejected:
    provider: indexed(address)
    gpu_class: uint16
    gpu_count: uint16
    claim_version: uint64
    measured_throughput: uint256
    required_throughput: uint256
    slashed: uint256
    epoch: uint256


@deploy
def __init__():
    pass


@external
def submit_hardware_report(report: committee.HardwareReport, signatures: DynArray[Bytes[65], committee.MAX_MEMBERS]):
    """
    @notice Applies a quorum-signed hardware report. Anyone may submit it.
    @param report The committee's HardwareReport. Of the provider's current
           claim version, its class and count must equal the claim; of an
           earlier version, it applies only if it slashes.
    @param signatures 65-byte signatures sorted by signer, strictly ascending.
    """
    committee._verify_quorum(committee._hardware_report_digest(report), signatures, report.epoch)
    provider: address = report.provider
    assert registry.providers[provider].gpu_count != 0, "verification: not registered"
    current_version: uint64 = registry.providers[provider].claim_version
    assert report.claim_version <= current_version, "verification: unknown claim"
    is_current: bool = report.claim_version == current_version
    if is_current:
        assert report.gpu_class == registry.providers[provider].gpu_class and report.gpu_count == registry.providers[provider].gpu_count, "verification: claim mismatch"
    valid_until: uint256 = convert(report.valid_until, uint256)
    assert valid_until > block.timestamp, "verification: report expired"
    # A report valid further ahead than any honest one would set an ordering
    # key no later report could pass, freezing the provider.
    assert valid_until <= block.timestamp + governance.hardware_validity, "verification: too far ahead"
    assert valid_until > self.last_report_valid_until[provider][report.claim_version], "verification: stale report"
    floor_per_gpu: uint256 = governance.class_floor[report.gpu_class]
    assert floor_per_gpu != 0, "verification: unknown gpu class"
    required: uint256 = floor_per_gpu * convert(report.gpu_count, uint256)
    spoofed: bool = report.measured_throughput * governance.BPS < required * SPOOF_THRESHOLD_BPS
    assert is_current or spoofed, "verification: outdated claim"

    self.last_report_valid_until[provider][report.claim_version] = valid_until
    if report.measured_throughput >= required:
        registry._set_verified_until(provider, valid_until)
        log HardwareVerified(
            provider=provider,
            gpu_class=report.gpu_class,
            gpu_count=report.gpu_count,
            claim_version=report.claim_version,
            measured_throughput=report.measured_throughput,
            verified_until=valid_until,
            epoch=report.epoch,
        )
    else:
        if is_current:
            registry._set_verified_until(provider, 0)
        slashed: uint256 = 0
        if spoofed:
            slashed = staking._slash_unlocked(provider, governance.spoof_slash_bps)
        log HardwareRejected(
            provider=provider,
            gpu_class=report.gpu_class,
            gpu_count=report.gpu_count,
            claim_version=report.claim_version,
            measured_throughput=report.measured_throughput,
            required_throughput=required,
            slashed=slashed,
            epoch=report.epoch,
        )
