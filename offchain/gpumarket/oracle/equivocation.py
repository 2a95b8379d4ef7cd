"""Proving a peer's equivocation on chain: the oracle's part of OracleBonds.

    reporter = EquivocationReporter(store, market)     # market bound to the sender key
    reporter.tick()                                    # the service's hardware loop, each pass

The decision store keeps every committee member's valid signature that reaches this oracle over
a report of a key it decided or follows, whether pushed to its API or gathered from the peer
(``DecisionStore.observe_signature``), and every member's signature of a batch root this oracle
proposed, as its signature of each report in the batch (``DecisionStore.observe_batch_signature``,
from gpumarket.oracle.batches); a second, different report of the same key and epoch by the same
member is an equivocation. Each pass submits the proof of every open one to the market's
OracleBonds (``prove_job_equivocation``, whose attestations are single or batched: a root
signature with the report's Merkle path; ``prove_hardware_equivocation``), once: the
outcome is recorded, "proven" with the transaction, or why not ("already flagged": another
reporter was first; "refused: <reason>": the contract said no). A chain error leaves it open for
the next pass. The reporter (this oracle's sender account) gets the contract's share of the bond.

An honest oracle never gives such a proof: its decisions are write-once (gpumarket.oracle.store),
so after any crash it signs the same report again or nothing.
"""

from __future__ import annotations

import logging

from gpumarket.chain.errors import ChainError, ContractRevert
from gpumarket.chain.market import JobAttestation, Market
from gpumarket.oracle.store import DecisionStore, Equivocation
from gpumarket.signing.eip712 import HardwareReport, JobReport

__all__ = ["EquivocationReporter"]

log = logging.getLogger(__name__)


class EquivocationReporter:
    """Submits the proof of each equivocation the store found; see the module docstring."""

    def __init__(self, store: DecisionStore, market: Market) -> None:
        self.store = store
        self.market = market

    def tick(self) -> list[Equivocation]:
        """Try every open equivocation once; returns those whose outcome this pass recorded."""
        done = []
        for found in self.store.equivocations(open_only=True):
            outcome, tx_hash = self._prove(found)
            if outcome is None:
                continue
            self.store.record_equivocation_proof(found, outcome, tx_hash)
            log.warning(
                "equivocation by %s (%s %s, epoch %d): %s",
                found.signer,
                found.kind,
                "/".join(found.key),
                found.epoch,
                outcome,
            )
            done.append(found)
        return done

    def _prove(self, found: Equivocation) -> tuple[str | None, str | None]:
        try:
            bonds = self.market.bonds
            if bonds.flagged(found.signer):
                return "already flagged", None
            first, second = found.first, found.second
            if isinstance(first.report, JobReport) and isinstance(second.report, JobReport):
                result = bonds.prove_job_equivocation(
                    found.signer,
                    JobAttestation(first.report, first.signature, first.path),
                    JobAttestation(second.report, second.signature, second.path),
                )
            elif isinstance(first.report, HardwareReport) and isinstance(second.report, HardwareReport):
                # Hardware reports are never batched: both signatures are over the reports alone.
                result = bonds.prove_hardware_equivocation(
                    found.signer, (first.report, first.signature), (second.report, second.signature)
                )
            else:
                return "refused: reports of two kinds", None
        except ValueError as error:  # no OracleBonds wired into this market
            return f"refused: {error}", None
        except ContractRevert as error:
            return f"refused: {error}", None
        except ChainError as error:
            log.warning("proof of %s's equivocation not sent yet: %s", found.signer, error)
            return None, None
        return "proven", result.tx_hash
