"""Who submits a job's settlement, and when; the chain side behind a small Protocol.

One member per job is the designated submitter: the committee's members sorted by address
(ascending, as the contract orders signers) indexed by ``job_id % len(members)``, so the
load spreads and every oracle computes the same answer without talking. The others are
fallbacks: the member ``k`` places after the designated one (its *rank*) submits only once
``rank * fallback_delay`` seconds have passed since the job ended and the job is still not
settled. A job known settled is never resubmitted; a submission already sent is not
repeated until ``resubmit_after`` seconds have passed without the job settling.

The chain side is the :class:`SettlementSubmitter` protocol. The services use
:class:`gpumarket.oracle.chain_submitter.ChainSubmitter` (a web3 transaction to
``settle(report, signatures)`` through :class:`gpumarket.chain.Market`); unit tests also drive
:func:`submit_if_due` through a test double that checks the quorum as the contract does.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from eth_utils.address import to_checksum_address

from gpumarket.oracle.signer import NoQuorum, OracleSigner, StaleEpoch
from gpumarket.signing.eip712 import JobReport

__all__ = [
    "SettlementSubmitter",
    "SubmitOutcome",
    "SubmitResult",
    "designated_submitter",
    "fallback_delay_under_lag",
    "should_submit",
    "submission_rank",
    "submit_if_due",
]

logger = logging.getLogger(__name__)


def _sorted_members(members: Sequence[str]) -> list[str]:
    if not members:
        raise ValueError("a committee has at least one member")
    checked = [to_checksum_address(m) for m in members]
    if len(set(checked)) != len(checked):
        raise ValueError("duplicate committee member")
    return sorted(checked, key=lambda address: int(address, 16))


def designated_submitter(job_id: int, members: Sequence[str]) -> str:
    """The member who submits ``job_id``'s settlement first: sorted(members)[job_id % len]."""
    ordered = _sorted_members(members)
    return ordered[job_id % len(ordered)]


def submission_rank(job_id: int, members: Sequence[str], address: str) -> int:
    """0 for the designated submitter, k for the k-th fallback after it (wrapping around)."""
    ordered = _sorted_members(members)
    address = to_checksum_address(address)
    if address not in ordered:
        raise ValueError(f"{address} is not a committee member")
    return (ordered.index(address) - job_id % len(ordered)) % len(ordered)


def should_submit(now: float, job_end: float, is_designated: bool, fallback_delay: float, *, rank: int = 1) -> bool:
    """Whether to submit now: the designated member at once, fallback ``rank`` after rank * delay."""
    if fallback_delay < 0 or rank < 0:
        raise ValueError("fallback_delay and rank must be >= 0")
    if is_designated:
        return True
    return now >= job_end + max(rank, 1) * fallback_delay


def fallback_delay_under_lag(fallback_delay: float, lag: float) -> float:
    """A fallback's delay when its own loop runs ``lag`` seconds late: the delay plus that lag,
    up to twice the delay. Its committee is under about the same load, so the designated
    submitter is likely as late; but however late, a fallback still acts within a bound."""
    return fallback_delay + min(max(lag, 0.0), fallback_delay)


@runtime_checkable
class SettlementSubmitter(Protocol):
    """The chain side of settlement (implemented by the chain layer; a test double in tests)."""

    def is_settled(self, job_id: int) -> bool:
        """Whether the job is in a terminal state on chain."""
        ...

    def submit_settlement(self, report: JobReport, signatures: Sequence[bytes]) -> str:
        """Send ``settle(report, signatures)``; return the transaction hash (0x-hex)."""
        ...


class SubmitOutcome(enum.Enum):
    SUBMITTED = "submitted"
    ALREADY_SETTLED = "already_settled"
    NOT_DUE = "not_due"  # a fallback whose delay has not passed
    PENDING = "pending"  # a submission was sent recently; wait for it
    NO_QUORUM = "no_quorum"
    STALE_EPOCH = "stale_epoch"


@dataclass(frozen=True)
class SubmitResult:
    outcome: SubmitOutcome
    tx_hash: str | None = None
    detail: str = ""


def submit_if_due(
    signer: OracleSigner,
    submitter: SettlementSubmitter,
    job_id: int,
    *,
    now: float,
    job_end: float,
    fallback_delay: float,
    resubmit_after: float = 60.0,
) -> SubmitResult:
    """One settlement step for a decided job: skip it if settled or not yet our turn, else submit a quorum.

    ``now`` and ``job_end`` are Unix seconds (the chain's block timestamps are too). An error
    the submitter raises propagates and records nothing, so the next step tries again.
    """
    store = signer.store
    metrics = signer.metrics
    status = store.settlement(job_id)
    if status is not None and status.settled:
        return SubmitResult(SubmitOutcome.ALREADY_SETTLED)
    if submitter.is_settled(job_id):
        store.mark_settled(job_id)
        metrics.submissions.inc(result="already_settled")
        return SubmitResult(SubmitOutcome.ALREADY_SETTLED)
    committee = store.current_committee()
    if committee is None or not committee.is_member(signer.address):
        return SubmitResult(SubmitOutcome.NOT_DUE, detail="not a member of the current committee")
    rank = submission_rank(job_id, committee.members, signer.address)
    if not should_submit(now, job_end, rank == 0, fallback_delay, rank=rank):
        return SubmitResult(SubmitOutcome.NOT_DUE, detail=f"fallback rank {rank}")
    if status is not None and status.submitted_at is not None and now - status.submitted_at < resubmit_after:
        return SubmitResult(SubmitOutcome.PENDING, status.tx_hash)
    try:
        quorum = signer.quorum(job_id)
    except NoQuorum as exc:
        return SubmitResult(SubmitOutcome.NO_QUORUM, detail=str(exc))
    except StaleEpoch as exc:
        return SubmitResult(SubmitOutcome.STALE_EPOCH, detail=str(exc))
    assert isinstance(quorum.report, JobReport)
    tx_hash = submitter.submit_settlement(quorum.report, quorum.signatures)
    store.record_submission(job_id, tx_hash)
    metrics.submissions.inc(result="submitted")
    logger.info("submitted settlement of job %d (rank %d): %s", job_id, rank, tx_hash)
    return SubmitResult(SubmitOutcome.SUBMITTED, tx_hash)
