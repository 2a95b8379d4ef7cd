"""Test double for the chain side of settlement (the real SettlementSubmitter is the chain
layer's, built next): it applies the contract's quorum rules (committee.vy _verify_quorum:
current epoch, >= threshold, signers strictly ascending, members only) and escrow's
"a job settles once", so a test sees exactly what the contract would accept."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gpumarket.signing import eip712
from gpumarket.signing.eip712 import Domain, JobReport


class Reverted(Exception):
    """What the contract would revert with."""


@dataclass
class ContractDouble:
    domain: Domain
    epoch: int
    members: list[str]
    threshold: int
    settled: dict[int, JobReport] = field(default_factory=dict)
    submissions: list[tuple[JobReport, tuple[bytes, ...]]] = field(default_factory=list)

    def is_settled(self, job_id: int) -> bool:
        return job_id in self.settled

    def submit_settlement(self, report: JobReport, signatures: Sequence[bytes]) -> str:
        self.submissions.append((report, tuple(signatures)))
        if report.epoch != self.epoch:
            raise Reverted("committee: wrong epoch")
        if len(signatures) < self.threshold:
            raise Reverted("committee: not enough signatures")
        previous = 0
        for signature in signatures:
            signer = eip712.recover(self.domain, report, signature)
            if int(signer, 16) <= previous:
                raise Reverted("committee: signers not ascending")
            if signer not in self.members:
                raise Reverted("committee: signer not a member")
            previous = int(signer, 16)
        if report.job_id in self.settled:
            raise Reverted("escrow: job not running")
        self.settled[report.job_id] = report
        return "0x" + f"{len(self.submissions):064x}"
