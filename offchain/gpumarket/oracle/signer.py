"""The oracle's signer: signs only committed decisions; assembles quorums.

The key is a :class:`gpumarket.chain.keys.ServiceKey` (an ape keystore account, or a public
test key on local chains; it never shows its secret), or any :class:`ReportKey`.
:class:`OracleSigner` ties it to a :class:`~gpumarket.oracle.store.DecisionStore`:

    signer = OracleSigner(store, key)         # key: load_key("keystore:oracle1"), test_oracle(0), ...
    signed = signer.decide_and_sign(report)   # commit the decision, then sign it
    signed = signer.sign_job(job_id)          # sign an already committed decision
    q = signer.quorum(job_id)                 # >= threshold signatures, ascending by signer
    market.settle(eip712.to_tuple(q.report), list(q.signatures), sender=...)

Every signature comes from a :class:`~gpumarket.oracle.store.Decision` the store returned
after its commit, so ``decide_and_sign`` with a different report for a decided job raises
:class:`~gpumarket.oracle.store.ConflictingDecision` before any key is touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from gpumarket.oracle.metrics import OracleMetrics
from gpumarket.oracle.store import Decision, DecisionStore, NotDecided, ReportKind, hardware_key, job_key
from gpumarket.signing import eip712
from gpumarket.signing.eip712 import Domain, JobReportBatch, Report

__all__ = [
    "OracleKeyError",
    "NoQuorum",
    "OracleSigner",
    "Quorum",
    "ReportKey",
    "SignedReport",
    "StaleEpoch",
]

logger = logging.getLogger(__name__)


class OracleKeyError(Exception):
    """The oracle key could not be loaded; the message never holds key material or a passphrase."""


class NoQuorum(Exception):
    """Fewer valid signatures than the threshold are stored for the report."""

    def __init__(self, kind: ReportKind, key: tuple[str, ...], have: int, need: int) -> None:
        self.have = have
        self.need = need
        super().__init__(f"{kind} {'/'.join(key)}: {have} of {need} signatures")


class StaleEpoch(Exception):
    """The decision's epoch is no longer the current one: its signatures are void on chain."""


@runtime_checkable
class ReportKey(Protocol):
    """What OracleSigner needs of a key: its address and EIP-712 report signatures.

    gpumarket.chain.keys.ServiceKey is one; any object with these two members works the same.
    """

    address: str

    def sign_report(self, domain: Domain, report: Report) -> bytes: ...


@dataclass(frozen=True)
class SignedReport:
    """One signer's signature of one report."""

    kind: ReportKind
    report: Report
    signature: bytes
    signer: str
    digest: bytes

    def to_json(self) -> dict[str, Any]:
        """What ``GET /reports/...`` serves."""
        return {
            "kind": self.kind,
            "report": eip712.to_json(self.report),
            "signature": "0x" + self.signature.hex(),
            "signer": self.signer,
            "digest": "0x" + self.digest.hex(),
        }


@dataclass(frozen=True)
class Quorum:
    """A report and signatures of >= threshold current members, ascending by signer."""

    report: Report
    signatures: tuple[bytes, ...]
    signers: tuple[str, ...]
    epoch: int
    threshold: int

    def call_args(self) -> tuple[tuple[Any, ...], list[bytes]]:
        """``(report tuple, signatures)`` as ``settle`` / ``submit_hardware_report`` take them."""
        return eip712.to_tuple(self.report), list(self.signatures)


class OracleSigner:
    """Signs this oracle's committed decisions and assembles quorums from the store."""

    def __init__(self, store: DecisionStore, key: ReportKey, metrics: OracleMetrics | None = None) -> None:
        if key.address != store.oracle:
            raise OracleKeyError(f"the key's address {key.address} is not the store's oracle {store.oracle}")
        self.store = store
        self._key = key
        self.metrics = metrics or OracleMetrics()

    @property
    def address(self) -> str:
        return self._key.address

    @property
    def domain(self) -> Domain:
        return self.store.domain

    def decide_and_sign(self, report: Report) -> SignedReport:
        """Commit ``report`` as the decision for its key, then sign the committed decision.

        Idempotent for the same report (returns the same signature bytes); raises
        ConflictingDecision for a different one, signing nothing.
        """
        decision = self.store.decide(report)
        if decision.created:
            self.metrics.decisions.inc(kind=decision.kind)
        return self._sign(decision)

    def sign_job(self, job_id: int) -> SignedReport:
        """Our signature of the committed decision for ``job_id`` (signs it if not yet signed)."""
        decision = self.store.job_decision(job_id)
        if decision is None:
            raise NotDecided(f"job {job_id}: no committed decision")
        return self._sign(decision)

    def sign_hardware(self, provider: str, claim_version: int, valid_until: int) -> SignedReport:
        decision = self.store.hardware_decision(provider, claim_version, valid_until)
        if decision is None:
            key = hardware_key(provider, claim_version, valid_until)
            raise NotDecided(f"hardware {'/'.join(key)}: no committed decision")
        return self._sign(decision)

    def _sign(self, decision: Decision) -> SignedReport:
        # Only a Decision from the store (a committed row) reaches here.
        if decision.signature is None:
            signature = self._key.sign_report(self.domain, decision.report)
            decision = self.store.attach_signature(decision, signature)
            logger.debug("signed %s %s", decision.kind, "/".join(decision.key))
        assert decision.signature is not None
        return SignedReport(decision.kind, decision.report, decision.signature, self.address, decision.digest)

    def sign_batch_root(self, batch: JobReportBatch) -> bytes:
        """Our signature of a batch root. Only gpumarket.oracle.batches calls it, with the root of
        our own committed decisions: it commits to nothing we have not signed alone."""
        return self._key.sign_report(self.domain, batch)

    def quorum(self, job_id: int) -> Quorum:
        """The job's settlement quorum; raises NotDecided, StaleEpoch or NoQuorum."""
        decision = self.store.job_decision(job_id)
        if decision is None:
            raise NotDecided(f"job {job_key(job_id)[0]}: no committed decision")
        return self._quorum(decision)

    def hardware_quorum(self, provider: str, claim_version: int, valid_until: int) -> Quorum:
        decision = self.store.hardware_decision(provider, claim_version, valid_until)
        if decision is None:
            key = hardware_key(provider, claim_version, valid_until)
            raise NotDecided(f"hardware {'/'.join(key)}: no committed decision")
        return self._quorum(decision)

    def _quorum(self, decision: Decision) -> Quorum:
        if decision.signature is None:  # our own signature counts too: make sure it exists
            self._sign(decision)
        epoch = decision.report.epoch
        current = self.store.current_committee()
        if current is None or current.epoch != epoch:
            raise StaleEpoch(
                f"{decision.kind} {'/'.join(decision.key)}: decided in epoch {epoch}, "
                f"current is {None if current is None else current.epoch}"
            )
        # Re-check every stored signature: the contract rejects the whole call for one bad one.
        valid: dict[int, tuple[str, bytes]] = {}
        for stored in self.store.signatures(decision.digest):
            try:
                signer = eip712.recover(self.domain, decision.report, stored.signature)
            except ValueError:
                continue
            if signer == stored.signer and current.is_member(signer):
                valid[int(signer, 16)] = (signer, stored.signature)
        if len(valid) < current.threshold:
            raise NoQuorum(decision.kind, decision.key, len(valid), current.threshold)
        # Exactly threshold signatures (the lowest signers): the contract needs no more, and each costs gas.
        chosen = [valid[k] for k in sorted(valid)[: current.threshold]]
        return Quorum(
            decision.report,
            tuple(sig for _, sig in chosen),
            tuple(signer for signer, _ in chosen),
            epoch,
            current.threshold,
        )
