"""The oracle service's parts: crash-safe decisions, signing, HTTP API, peers, settlement.

Modules (one concern each):

- :mod:`~gpumarket.oracle.store`: SQLite store. A decision (the exact EIP-712 report) is
  committed before anything signs it and is write-once per job / hardware key, so the
  oracle never signs two different reports for one job, even across a crash. Also
  committees per epoch, verified signatures, settlement status, event cursors.
- :mod:`~gpumarket.oracle.signer`: :class:`OracleSigner` (signs committed decisions with a
  :class:`gpumarket.chain.keys.ServiceKey`, assembles quorums).
- :mod:`~gpumarket.oracle.api`: the HTTP API (health, metrics, signed reports, peers'
  signature pushes) with precise 4xx refusals.
- :mod:`~gpumarket.oracle.peers`: gathering peers' signatures (and pushing ours) over HTTP.
- :mod:`~gpumarket.oracle.settlement`: designated and fallback submitters, the
  :class:`SettlementSubmitter` Protocol the chain layer implements, :func:`submit_if_due`.
- :mod:`~gpumarket.oracle.wire`: the JSON bodies on the wire, parsed with field-precise errors.
- :mod:`~gpumarket.oracle.metrics`: the counters and gauges served at /metrics (prometheus-client).
- :mod:`~gpumarket.oracle.cli`: ``gpumarket oracle serve-api``.

A whole oracle in a few lines (the chain follower that feeds ``set_committee`` and the
decisions is the next step)::

    store = DecisionStore.open("oracle.db", Domain(chain_id, contract), key.address)
    store.set_committee(epoch, members, threshold)
    signer = OracleSigner(store, key)
    with OracleAPI(store, signer, config=ApiConfig(port=8600)):
        signer.decide_and_sign(report)
        gather_job_signatures(store, report.job_id, [PeerClient(url, store.domain) for url in peers])
        submit_if_due(signer, submitter, report.job_id, now=..., job_end=..., fallback_delay=...)
"""

from gpumarket.oracle.api import ApiConfig, OracleAPI
from gpumarket.oracle.metrics import OracleMetrics
from gpumarket.oracle.peers import GatherResult, PeerClient, PeerConfig, gather_job_signatures, push_signature
from gpumarket.oracle.settlement import (
    SettlementSubmitter,
    SubmitOutcome,
    designated_submitter,
    should_submit,
    submit_if_due,
)
from gpumarket.oracle.signer import NoQuorum, OracleSigner, Quorum, SignedReport
from gpumarket.oracle.store import ConflictingDecision, Decision, DecisionStore

__all__ = [
    "ApiConfig",
    "ConflictingDecision",
    "Decision",
    "DecisionStore",
    "GatherResult",
    "NoQuorum",
    "OracleAPI",
    "OracleMetrics",
    "OracleSigner",
    "PeerClient",
    "PeerConfig",
    "Quorum",
    "SettlementSubmitter",
    "SignedReport",
    "SubmitOutcome",
    "designated_submitter",
    "gather_job_signatures",
    "push_signature",
    "should_submit",
    "submit_if_due",
]
