"""Gathering the committee's signatures from peer oracles over HTTP.

Each oracle serves its own signed report at ``GET /reports/job/<id>``; to assemble a
quorum an oracle fetches its peers' reports and stores each signature after the store
verified it (the report must be exactly our decision, the signer a member of its epoch)::

    peers = [PeerClient(url, store.domain) for url in peer_urls]
    result = gather_job_signatures(store, job_id, peers)
    if result.held >= threshold: signer.quorum(job_id) ...

It can also push our signature to them (``POST /signatures/job/<id>``), see
:func:`push_signature`. Requests go through gpumarket.web.client (a connection pool per peer,
no proxies: peers are addressed directly, and an environment proxy must not see our traffic).
Every request has a timeout; transport errors and 5xx answers are retried a bounded number of
times with a doubling backoff; 4xx answers are not retried; a response is read up to
``max_response_bytes`` only (a larger 2xx answer is ``too_large``, not retried). A peer that
disagrees (serves a different report for the job) is reported in ``GatherResult.refused`` and
logged: its signature is never stored.

Who submits the settlement once a quorum is held is :mod:`gpumarket.oracle.settlement`
(``designated_submitter``, ``should_submit``), re-exported here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from gpumarket.oracle.metrics import OracleMetrics
from gpumarket.oracle.settlement import designated_submitter, should_submit
from gpumarket.oracle.signer import SignedReport
from gpumarket.oracle.store import (
    AddResult,
    DecisionStore,
    InvalidSignature,
    NotAMember,
    NotDecided,
    ReportKind,
    ReportMismatch,
    StoreError,
    UnknownEpoch,
    hardware_key,
    job_key,
    report_key,
)
from gpumarket.oracle.wire import WireError, loads_strict, parse_served
from gpumarket.signing import eip712
from gpumarket.signing.eip712 import Domain
from gpumarket.web.client import Timeouts, TooLarge, Unreachable, WebClient

__all__ = [
    "BATCH_ROUTE",
    "GatherResult",
    "PeerClient",
    "PeerConfig",
    "PeerAnswer",
    "PeerError",
    "PushResult",
    "designated_submitter",
    "gather_hardware_signatures",
    "gather_job_signatures",
    "push_signature",
    "should_submit",
]

logger = logging.getLogger(__name__)

# Where a peer signs a batch root (gpumarket.oracle.batches).
BATCH_ROUTE = "/batches/job"


@dataclass(frozen=True)
class PeerConfig:
    timeout_s: float = 2.0  # per attempt (connect and each read)
    attempts: int = 3  # transport errors and 5xx only
    backoff_s: float = 0.1  # doubles after each failed attempt
    max_response_bytes: int = 64 * 1024


class PeerError(Exception):
    """A peer could not be reached, or answered something unusable; ``reason`` is a short code."""

    def __init__(self, url: str, reason: str, detail: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{url}: {reason}: {detail}")


@dataclass(frozen=True)
class PeerAnswer:
    status: int
    body: Any  # parsed JSON (None when the body was not JSON)


class PeerClient:
    """One peer oracle's HTTP API, its connections pooled across requests (close() when done).
    ``reachable``: whether its last request got an answer (None before the first)."""

    def __init__(self, base_url: str, domain: Domain, config: PeerConfig = PeerConfig()) -> None:
        self.base_url = base_url.rstrip("/")
        self.domain = domain
        self.config = config
        self.reachable: bool | None = None
        self._web = WebClient(
            self.base_url,
            timeouts=Timeouts(config.timeout_s, config.timeout_s),
            max_response_bytes=config.max_response_bytes,
            max_error_bytes=config.max_response_bytes,
        )

    def __repr__(self) -> str:
        return f"PeerClient({self.base_url!r})"

    def close(self) -> None:
        self._web.close()

    def fetch_job(self, job_id: int) -> SignedReport | None:
        """The peer's signed report for ``job_id``; None while it has not decided."""
        key = job_key(job_id)
        return self._fetch("job", key, f"/reports/job/{key[0]}")

    def fetch_hardware(self, provider: str, claim_version: int, valid_until: int) -> SignedReport | None:
        """The peer's signed report of ``provider``'s claim ``claim_version`` valid until ``valid_until``."""
        key = hardware_key(provider, claim_version, valid_until)
        return self._fetch("hardware", key, "/reports/hardware/" + "/".join(key))

    def push(self, signed: SignedReport) -> PeerAnswer:
        """POST ``signed`` to the peer; returns its status and JSON answer (4xx included)."""
        kind, key = report_key(signed.report)
        path = f"/signatures/{kind}/" + "/".join(key)
        body = {"report": eip712.to_json(signed.report), "signature": "0x" + signed.signature.hex()}
        return self._request("POST", path, json.dumps(body).encode())

    def sign_batch(self, epoch: int, root: bytes, job_ids: Sequence[int]) -> bytes:
        """The peer's signature of a batch root over its own decisions for ``job_ids``
        (gpumarket.oracle.batches); PeerError when it refuses or cannot be reached."""
        body = {"epoch": epoch, "root": "0x" + root.hex(), "job_ids": [str(job_id) for job_id in job_ids]}
        answer = self._request("POST", BATCH_ROUTE, json.dumps(body).encode())
        if answer.status != 200 or not isinstance(answer.body, dict):
            error = answer.body.get("error") if isinstance(answer.body, dict) else None
            raise PeerError(self.base_url, str(error or "bad_answer"), f"POST {BATCH_ROUTE} answered {answer.status}")
        signature = answer.body.get("signature")
        if not isinstance(signature, str) or not signature.startswith("0x") or len(signature) != 132:
            raise PeerError(self.base_url, "malformed", "no 65-byte signature in the answer")
        try:
            return bytes.fromhex(signature[2:])
        except ValueError:
            raise PeerError(self.base_url, "malformed", "the signature is not hex") from None

    def health(self) -> dict[str, Any]:
        answer = self._request("GET", "/health")
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise PeerError(self.base_url, "bad_answer", f"/health answered {answer.status}")
        return answer.body

    def _fetch(self, kind: ReportKind, key: tuple[str, ...], path: str) -> SignedReport | None:
        answer = self._request("GET", path)
        if answer.status == 404 and isinstance(answer.body, dict) and answer.body.get("error") == "not_decided":
            return None
        if answer.status != 200:
            raise PeerError(self.base_url, "bad_answer", f"GET {path} answered {answer.status}")
        try:
            report, signature, claimed = parse_served(kind, answer.body)
        except WireError as exc:
            raise PeerError(self.base_url, "malformed", str(exc)) from None
        if report_key(report) != (kind, key):
            raise PeerError(self.base_url, "wrong_report", f"asked for {kind} {'/'.join(key)}, got another report")
        try:
            signer = eip712.recover(self.domain, report, signature)
        except ValueError as exc:
            raise PeerError(self.base_url, "invalid_signature", str(exc)) from None
        if claimed is not None and claimed.lower() != signer.lower():
            raise PeerError(self.base_url, "invalid_signature", f"claims signer {claimed}, recovers to {signer}")
        return SignedReport(kind, report, signature, signer, eip712.digest(self.domain, report))

    def _request(self, method: str, path: str, body: bytes | None = None) -> PeerAnswer:
        delay = self.config.backoff_s
        last = "no attempt"
        headers = {"Content-Type": "application/json"} if body is not None else None
        for attempt in range(1, max(1, self.config.attempts) + 1):
            try:
                answer = self._web.request(method, path, content=body, headers=headers)
            except TooLarge as exc:
                raise PeerError(self.base_url, "too_large", exc.reason) from None
            except Unreachable as exc:
                last = exc.reason
                logger.debug("%s %s attempt %d failed: %s", method, exc.url, attempt, last)
            else:  # a 4xx/5xx answer is still an answer
                if answer.status < 500:
                    self.reachable = True
                    return PeerAnswer(answer.status, self._parse(answer.body))
                last = f"HTTP {answer.status}"
            if attempt < self.config.attempts:
                time.sleep(delay)
                delay *= 2
        self.reachable = False
        raise PeerError(self.base_url, "unreachable", f"{method} {path}: {last} after {self.config.attempts} attempts")

    @staticmethod
    def _parse(raw: bytes) -> Any:
        try:
            return loads_strict(raw)
        except WireError:
            return None


@dataclass
class GatherResult:
    """What one gathering round did, by peer URL (signers for the stored ones)."""

    added: dict[str, str] = field(default_factory=dict)  # url -> signer, newly stored
    duplicates: dict[str, str] = field(default_factory=dict)  # url -> signer, already stored
    pending: list[str] = field(default_factory=list)  # urls that have not decided yet
    refused: dict[str, str] = field(default_factory=dict)  # url -> reason (disagreement, outsider...)
    failed: dict[str, str] = field(default_factory=dict)  # url -> PeerError reason (unreachable, malformed...)
    held: int = 0  # signatures stored for the report after this round (ours included)


def gather_job_signatures(
    store: DecisionStore, job_id: int, peers: Sequence[PeerClient], metrics: OracleMetrics | None = None
) -> GatherResult:
    """Fetch each peer's signature for our decided job, verify and store it (peers in parallel)."""
    decision = store.job_decision(job_id)
    if decision is None:
        raise NotDecided(f"job {job_id}: decide before gathering")
    return _gather(store, decision.digest, peers, lambda peer: peer.fetch_job(job_id), metrics)


def gather_hardware_signatures(
    store: DecisionStore,
    provider: str,
    claim_version: int,
    valid_until: int,
    peers: Sequence[PeerClient],
    metrics: OracleMetrics | None = None,
) -> GatherResult:
    """Like gather_job_signatures, for our decided report of ``provider``'s claim ``claim_version``."""
    decision = store.hardware_decision(provider, claim_version, valid_until)
    if decision is None:
        raise NotDecided(
            f"hardware {'/'.join(hardware_key(provider, claim_version, valid_until))}: decide before gathering"
        )
    return _gather(
        store, decision.digest, peers, lambda peer: peer.fetch_hardware(provider, claim_version, valid_until), metrics
    )


def _gather(
    store: DecisionStore, digest: bytes, peers: Sequence[PeerClient], fetch: Any, metrics: OracleMetrics | None
) -> GatherResult:
    result = GatherResult()

    def one(peer: PeerClient) -> tuple[PeerClient, SignedReport | None | PeerError]:
        try:
            return peer, fetch(peer)
        except PeerError as exc:
            return peer, exc

    if peers:
        with ThreadPoolExecutor(max_workers=min(len(peers), 16), thread_name_prefix="oracle-gather") as pool:
            answers = list(pool.map(one, peers))
    else:
        answers = []
    for peer, answer in answers:
        url = peer.base_url
        if isinstance(answer, PeerError):
            result.failed[url] = answer.reason
            _count(metrics, answer.reason)
            logger.warning("gathering from %s failed: %s", url, answer)
            continue
        if answer is None:
            result.pending.append(url)
            continue
        try:
            added, signer = store.add_peer_signature(answer.report, answer.signature, source="gather")
        except (ReportMismatch, NotAMember, InvalidSignature, UnknownEpoch) as exc:
            reason = _reason(exc)
            result.refused[url] = reason
            _count(metrics, reason)
            logger.warning("refused %s's signature: %s", url, exc)
            continue
        except StoreError as exc:
            result.refused[url] = type(exc).__name__
            _count(metrics, type(exc).__name__)
            continue
        if added is AddResult.ADDED:
            result.added[url] = signer
            _count(metrics, "accepted")
        else:
            result.duplicates[url] = signer
            _count(metrics, "duplicate")
    result.held = len(store.signatures(digest))
    return result


def _reason(exc: Exception) -> str:
    return {
        ReportMismatch: "report_mismatch",
        NotAMember: "not_a_member",
        InvalidSignature: "invalid_signature",
        UnknownEpoch: "unknown_epoch",
    }[type(exc)]


def _count(metrics: OracleMetrics | None, result: str) -> None:
    if metrics is not None:
        metrics.peer_signatures.inc(source="gather", result=result)


@dataclass(frozen=True)
class PushResult:
    delivered: tuple[str, ...]  # 202, or 409 duplicate_signature (it already had it)
    pending: tuple[str, ...]  # 409 not_decided: the peer has not decided yet
    refused: dict[str, str]  # url -> the peer's error code
    failed: dict[str, str]  # url -> PeerError reason


def push_signature(signed: SignedReport, peers: Sequence[PeerClient]) -> PushResult:
    """Offer our signature to each peer (in parallel); a peer that already has it counts as delivered."""
    delivered: list[str] = []
    pending: list[str] = []
    refused: dict[str, str] = {}
    failed: dict[str, str] = {}

    def one(peer: PeerClient) -> tuple[str, PeerAnswer | PeerError]:
        try:
            return peer.base_url, peer.push(signed)
        except PeerError as exc:
            return peer.base_url, exc

    answers: list[tuple[str, PeerAnswer | PeerError]] = []
    if peers:
        with ThreadPoolExecutor(max_workers=min(len(peers), 16), thread_name_prefix="oracle-push") as pool:
            answers = list(pool.map(one, peers))
    for url, answer in answers:
        if isinstance(answer, PeerError):
            failed[url] = answer.reason
            continue
        error = answer.body.get("error") if isinstance(answer.body, dict) else None
        if answer.status == 202 or error == "duplicate_signature":
            delivered.append(url)
        elif error == "not_decided":
            pending.append(url)
        else:
            refused[url] = str(error or f"HTTP {answer.status}")
    return PushResult(tuple(delivered), tuple(pending), refused, failed)
