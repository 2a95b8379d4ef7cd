"""A test oracle committee: deterministic keys that sign what the contract verifies.

The keys are derived at run time from a public label (keccak of "gpumarket test oracle
<index>"), so no key is ever stored in the repository. Because anyone can derive them,
they are for tests and local chains only: `gpumarket.chain.params` refuses to deploy a
committee with one of these addresses on a public network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_utils.crypto import keccak

from gpumarket.signing import eip712
from gpumarket.signing.eip712 import Domain, HardwareReport, JobReport, Outcome

__all__ = [
    "TEST_ORACLE_LABEL",
    "Committee",
    "hardware_report",
    "is_test_oracle",
    "job_report",
    "oracle_key",
]

TEST_ORACLE_LABEL = "gpumarket test oracle"
# Indices scanned by `is_test_oracle`: far more than any test committee uses
# (the contract's MAX_MEMBERS is 31; tests offset committees by first_index).
_SCANNED_INDICES = 256


def oracle_key(index: int) -> bytes:
    """Deterministic private key of test oracle `index` (never funded, only signs)."""
    return keccak(text=f"{TEST_ORACLE_LABEL} {index}")


_test_oracle_addresses: frozenset[str] | None = None


def is_test_oracle(address: str) -> bool:
    """Whether `address` belongs to a test oracle whose key anyone can derive."""
    global _test_oracle_addresses
    if _test_oracle_addresses is None:
        _test_oracle_addresses = frozenset(
            eip712.address_of(oracle_key(index)).lower() for index in range(_SCANNED_INDICES)
        )
    return str(address).lower() in _test_oracle_addresses


@dataclass
class Committee:
    """Keys of one committee and its threshold; signs reports sorted by signer."""

    keys: list[bytes]
    threshold: int
    addresses: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.addresses = [eip712.address_of(key) for key in self.keys]

    @classmethod
    def of_size(cls, size: int, threshold: int, first_index: int = 0) -> Committee:
        return cls([oracle_key(first_index + i) for i in range(size)], threshold)

    def sign(self, domain: Domain, report: JobReport | HardwareReport, signers: int | None = None) -> list[bytes]:
        """Quorum signatures of the first `signers` members (default: threshold)."""
        count = self.threshold if signers is None else signers
        return eip712.quorum_signatures(domain, report, self.keys[:count])


def job_report(
    job_id: int,
    provider: object,
    outcome: Outcome = Outcome.COMPLETED,
    gpu_seconds: int = 0,
    epoch: int = 1,
    result_hash: bytes = b"\x11" * 32,
    evidence_hash: bytes = b"\x22" * 32,
) -> JobReport:
    return JobReport(
        job_id=job_id,
        provider=str(provider),
        outcome=outcome,
        gpu_seconds=gpu_seconds,
        result_hash=result_hash,
        evidence_hash=evidence_hash,
        epoch=epoch,
    )


def hardware_report(
    provider: object,
    gpu_class: int,
    gpu_count: int,
    measured_throughput: int,
    valid_until: int,
    epoch: int = 1,
    claim_version: int = 0,
) -> HardwareReport:
    """A report of the claim ``(gpu_class, gpu_count)`` at ``claim_version`` (0: as registered)."""
    return HardwareReport(
        provider=str(provider),
        gpu_class=gpu_class,
        gpu_count=gpu_count,
        claim_version=claim_version,
        measured_throughput=measured_throughput,
        valid_until=valid_until,
        epoch=epoch,
    )
