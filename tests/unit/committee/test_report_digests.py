"""job_report_digest and hardware_report_digest equal the off-chain signer's EIP-712
digest (gpumarket.signing.eip712.digest) for the same report.

Both views share one shape, so one file runs every report through the right view,
from all-zero fields to every field at its type's maximum.
"""

from __future__ import annotations

import pytest

from gpumarket.signing import eip712
from gpumarket.signing.eip712 import HardwareReport, JobReport, Outcome
from unit.expectations import ZERO_ADDRESS

UINT256_MAX = 2**256 - 1
UINT64_MAX = 2**64 - 1
UINT16_MAX = 2**16 - 1
MAX_ADDRESS = "0x" + "ff" * 20

JOB_REPORTS = [
    JobReport(1, "0x" + "11" * 20, Outcome.COMPLETED, 1_800, b"\x11" * 32, b"\x22" * 32, 1),
    JobReport(0, ZERO_ADDRESS, Outcome.FAILED, 0, bytes(32), bytes(32), 0),
    JobReport(UINT256_MAX, MAX_ADDRESS, Outcome.FAILED, UINT256_MAX, b"\xff" * 32, b"\xff" * 32, UINT256_MAX),
]
HARDWARE_REPORTS = [
    HardwareReport("0x" + "11" * 20, 1, 1, 0, 10, 1_800_000_000, 1),
    HardwareReport("0x" + "11" * 20, 1, 1, 3, 10, 1_800_000_000, 1),  # a later claim version
    HardwareReport(ZERO_ADDRESS, 0, 0, 0, 0, 0, 0),
    HardwareReport(MAX_ADDRESS, UINT16_MAX, UINT16_MAX, UINT64_MAX, UINT256_MAX, UINT64_MAX, UINT256_MAX),
]
VIEW_OF = {JobReport: "job_report_digest", HardwareReport: "hardware_report_digest"}


@pytest.mark.parametrize(
    "report",
    JOB_REPORTS + HARDWARE_REPORTS,
    ids=[f"job-{i}" for i in range(len(JOB_REPORTS))] + [f"hardware-{i}" for i in range(len(HARDWARE_REPORTS))],
)
def test_digest_equals_off_chain_digest(market, domain, report):
    on_chain = getattr(market, VIEW_OF[type(report)])(eip712.to_tuple(report))
    assert bytes(on_chain) == eip712.digest(domain, report)


@pytest.mark.parametrize("report", [JOB_REPORTS[0], HARDWARE_REPORTS[0]], ids=["job", "hardware"])
def test_digest_is_bound_to_the_deployment(
    market, deploy_market, stake_token, payment_token, committee, domain, report
):
    # The same report hashes differently on another deployment (no cross-deployment replay).
    other = deploy_market(stake_token, payment_token, committee.addresses, committee.threshold)
    view = VIEW_OF[type(report)]
    assert bytes(getattr(other, view)(eip712.to_tuple(report))) != bytes(getattr(market, view)(eip712.to_tuple(report)))
