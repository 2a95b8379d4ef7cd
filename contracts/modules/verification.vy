# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Verification: committee hardware reports
@custom:contract-name verification
@license GNU Affero General Public License v3.0 only
@notice The committee measures a provider's hardware with timed challenges
        and signs a HardwareReport. A report at or above the class floor
        times the GPU count verifies the provider until the report's
        valid_until (at most HARDWARE_VALIDITY from now). A report below it
        unverifies the provider; one below half of it (misreported hardware,
        the field's biggest fraud) also slashes SPOOF_SLASH_BPS of its stake.
        Reports must arrive in increasing valid_until order per provider, so
        neither a replay nor an older report can undo a newer one.
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


# @dev provider => valid_until of the last report accepted for it.
last_report_valid_until: public(HashMap[address, uint256])


# @dev Emitted when a report verifies a provider's claim.
event HardwareVerified:
    provider: indexed(address)
    gpu_class: uint16
    gpu_count: uint16
    measured_throughput: uint256
    verified_until: uint256
    epoch: uint256


# @dev Emitted when a report measures less than the claim requires.
event HardwareRejected:
    provider: indexed(address)
    gpu_class: uint16
    gpu_count: uint16
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
    @param report The committee's HardwareReport; its class and count must
           equal the provider's current claim.
    @param signatures 65-byte signatures sorted by signer, strictly ascending.
    """
    committee._verify_quorum(committee._hardware_report_digest(report), signatures, report.epoch)
    provider_record: registry.Provider = registry.providers[report.provider]
    assert provider_record.gpu_count != 0, "verification: not registered"
    assert report.gpu_class == provider_record.gpu_class and report.gpu_count == provider_record.gpu_count, "verification: claim mismatch"
    valid_until: uint256 = convert(report.valid_until, uint256)
    assert valid_until > block.timestamp, "verification: report expired"
    assert valid_until > self.last_report_valid_until[report.provider], "verification: stale report"
    floor_per_gpu: uint256 = governance.class_floor[report.gpu_class]
    assert floor_per_gpu != 0, "verification: unknown gpu class"

    self.last_report_valid_until[report.provider] = valid_until
    required: uint256 = floor_per_gpu * convert(report.gpu_count, uint256)
    if report.measured_throughput >= required:
        verified_until: uint256 = min(valid_until, block.timestamp + governance.hardware_validity)
        registry._set_verified_until(report.provider, verified_until)
        log HardwareVerified(
            provider=report.provider,
            gpu_class=report.gpu_class,
            gpu_count=report.gpu_count,
            measured_throughput=report.measured_throughput,
            verified_until=verified_until,
            epoch=report.epoch,
        )
    else:
        registry._set_verified_until(report.provider, 0)
        slashed: uint256 = 0
        if report.measured_throughput * governance.BPS < required * SPOOF_THRESHOLD_BPS:
            slashed = staking._slash_unlocked(report.provider, governance.spoof_slash_bps)
        log HardwareRejected(
            provider=report.provider,
            gpu_class=report.gpu_class,
            gpu_count=report.gpu_count,
            measured_throughput=report.measured_throughput,
            required_throughput=required,
            slashed=slashed,
            epoch=report.epoch,
        )
