"""Differential test: the off-chain signer and the contract hash every report the same way.

If gpumarket.signing.eip712.digest and the contract's digest views ever disagreed, oracles
would sign digests no contract accepts (a halted market), or a field the contract ignores
could be changed under valid signatures. Hypothesis draws every field over its whole ABI
range; only chain views are called, so the examples cost no transactions. The number of
examples comes from the active profile (tests/conftest.py loads `quick`).
"""

from __future__ import annotations

from eth_utils import to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

from gpumarket.signing.eip712 import HardwareReport, JobReport, Outcome, digest, domain_separator, to_tuple


def uint(bits: int) -> st.SearchStrategy[int]:
    return st.integers(min_value=0, max_value=2**bits - 1)


addresses = st.binary(min_size=20, max_size=20).map(to_checksum_address)
bytes32 = st.binary(min_size=32, max_size=32)

job_reports = st.builds(
    JobReport,
    job_id=uint(256),
    provider=addresses,
    outcome=st.sampled_from(Outcome),
    gpu_seconds=uint(256),
    result_hash=bytes32,
    evidence_hash=bytes32,
    epoch=uint(256),
)
hardware_reports = st.builds(
    HardwareReport,
    provider=addresses,
    gpu_class=uint(16),
    gpu_count=uint(16),
    claim_version=uint(64),
    measured_throughput=uint(256),
    valid_until=uint(64),
    epoch=uint(256),
)


def test_the_domain_separators_agree(market, domain):
    assert bytes(market.domain_separator()) == domain_separator(domain)


@given(report=job_reports)
def test_job_report_digests_agree(market, domain, report):
    assert bytes(market.job_report_digest(to_tuple(report))) == digest(domain, report)


@given(report=hardware_reports)
def test_hardware_report_digests_agree(market, domain, report):
    assert bytes(market.hardware_report_digest(to_tuple(report))) == digest(domain, report)
