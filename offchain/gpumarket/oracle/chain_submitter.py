"""The real chain side of settlement: :class:`ChainSubmitter` over a :class:`~gpumarket.chain.Market`.

    submitter = ChainSubmitter(market.with_signer(oracle_service_key))
    submit_if_due(signer, submitter, job_id, now=..., job_end=..., fallback_delay=...)
    submitter.submit_hardware(quorum.report, quorum.signatures)   # -> tx hash or None

It implements :class:`gpumarket.oracle.settlement.SettlementSubmitter`:

- ``is_settled(job_id)``: the job's on-chain state is terminal (COMPLETED, FAILED,
  CANCELLED, EXPIRED).
- ``submit_settlement(report, signatures)``: sends ``settle`` and returns the tx hash. A
  revert ``"escrow: job not running"`` means another oracle (or an expiry) got there first:
  it marks the job settled in the ``store`` given (if any) and raises :class:`AlreadySettled`
  (no tx hash exists for it), so the job is never resubmitted (``submit_if_due`` checks
  ``is_settled`` first, so this only happens in a race). Any other revert propagates as
  ``ContractRevert``.

``submit_hardware(report, signatures)`` sends ``submit_hardware_report``; a revert
``"verification: stale report"`` (a report of the same claim version with this or a later
``valid_until`` was already applied, e.g. by a peer) returns ``None`` instead of a tx hash:
already applied, nothing to do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gpumarket.chain.errors import ContractRevert
from gpumarket.chain.market import Market
from gpumarket.oracle.store import DecisionStore
from gpumarket.signing.batch import Multiproof
from gpumarket.signing.eip712 import HardwareReport, JobReport

__all__ = ["AlreadySettled", "ChainSubmitter", "JOB_NOT_RUNNING", "STALE_REPORT"]

log = logging.getLogger(__name__)

JOB_NOT_RUNNING = "escrow: job not running"
STALE_REPORT = "verification: stale report"


class AlreadySettled(Exception):
    """``settle`` reverted because the job is no longer running: someone settled it first."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} is no longer running (already settled)")
        self.job_id = job_id


class ChainSubmitter:
    """Sends the committee's quorum reports to the market, with the market's bound signer."""

    def __init__(self, market: Market, store: DecisionStore | None = None) -> None:
        self.market = market
        self.store = store  # when given, a job found settled by someone else is marked there

    def __repr__(self) -> str:
        return f"ChainSubmitter({self.market!r})"

    def submit_batch(self, proof: Multiproof, signatures: Sequence[bytes]) -> str:
        """Sends ``settle_batch`` through the market's BatchSettler; returns the tx hash. The
        market skips a job settled meanwhile, so a race costs gas, never a revert."""
        return self.market.settle_batch(proof, signatures).tx_hash

    def is_settled(self, job_id: int) -> bool:
        return self.market.get_job(job_id).state.terminal

    def submit_settlement(self, report: JobReport, signatures: Sequence[bytes]) -> str:
        try:
            result = self.market.settle(report, list(signatures))
        except ContractRevert as exc:
            if exc.reason == JOB_NOT_RUNNING:
                log.info("job %d was settled by someone else first", report.job_id)
                if self.store is not None and self.store.job_decision(report.job_id) is not None:
                    self.store.mark_settled(report.job_id)  # the store tracks decided jobs only
                raise AlreadySettled(report.job_id) from exc
            raise
        log.info("settled job %d: %s", report.job_id, result.tx_hash)
        return result.tx_hash

    def submit_hardware(self, report: HardwareReport, signatures: Sequence[bytes]) -> str | None:
        """The tx hash, or None when this (or a later) report was already applied."""
        try:
            result = self.market.submit_hardware_report(report, list(signatures))
        except ContractRevert as exc:
            if exc.reason == STALE_REPORT:
                log.info(
                    "hardware report %s/v%d/%d already applied",
                    report.provider,
                    report.claim_version,
                    report.valid_until,
                )
                return None
            raise
        log.info(
            "applied hardware report %s/v%d/%d: %s",
            report.provider,
            report.claim_version,
            report.valid_until,
            result.tx_hash,
        )
        return result.tx_hash
