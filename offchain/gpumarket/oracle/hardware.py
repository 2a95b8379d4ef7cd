"""Hardware verification end to end: challenge a provider, sign a canonical report, submit it.

    hv = HardwareVerifier(store, signer, market, peers, ChainSubmitter(market))
    hv.handle(event)                              # ProviderRegistered / ProviderUpdated -> queued
    for provider, anchor, minimum in hv.due(now, known):  # queued, or renewals among known
        hv.verify(provider, anchor, minimum)      # challenge, decide, sign      -> Attempt
    hv.step(attempt, now=...)                     # gather peers' signatures; submit if our turn
    hv.tick(known=registered_providers)           # or all of the above, once per loop pass

The challenge: gpumarket.oracle.challenge (turns at the agent's prover, the oracle's own
monotonic clock), judged by gpumarket.oracle.trust: a result below the floor counts only when a
fresh challenge confirms it and this oracle's own stalls cannot explain it.

Agreement. Every oracle challenges the provider itself, so the raw measurements differ; the
report all sign must be byte-identical. Each oracle therefore signs a *canonical* report:

- ``measured_throughput`` is one of three values, by what the contract does with it
  (``required = floor * count``):
  PASS ``required`` (verifies), SLOW ``ceil(required * 5000 / 10000)`` (valid work below the
  floor: unverifies without slashing), FAIL ``0`` (invalid work, or below half the floor in
  two undisturbed challenges: unverifies and slashes). Honest oracles whose measurements fall
  in the same bucket sign the same report; one that disagrees simply does not add to the quorum.
  An agent that gives no usable answer (connection refused, timeout, busy every time, an
  error or a refusal), or whose slow answers this oracle cannot trust (gpumarket.oracle.trust),
  gets no report: that says nothing about its hardware, and a provider registers before its
  agent can start. It is retried every ``no_answer_retry_s`` and given up on after
  ``no_answer_give_up_s`` until its next event; a verified one that stays silent simply
  lapses at its ``valid_until``.
- ``gpu_class``, ``gpu_count``, ``claim_version`` and the endpoint challenged all come from one
  read of the provider's record, so the report names exactly the claim that was measured. A
  decision is keyed by ``(provider, claim_version, valid_until)``: two claims of one provider
  measured within the same hour never share a key.
- ``valid_until`` = ``max(canonical_valid_until(anchor), min_valid_until)``: the anchor
  rounded down to the hour, plus the governance ``hardware_validity``, and at least the
  valid_until of the last report applied for the claim version + 1 (the contract's
  stale-report order). Both come from chain values every oracle reads alike:

  - event-triggered (ProviderRegistered / ProviderUpdated): the anchor is the event's block
    time; the minimum is ``last_report_valid_until(provider, claim_version)`` + 1, read at
    the event's block for the claim version the event names;
  - renewal: the anchor is the on-chain ``verified_until - ANCHOR_GRANULARITY_S`` and the
    minimum ``verified_until + 1`` (a verified claim's ``verified_until`` is the
    valid_until of its last applied report). A renewal is due once ``verified_until`` is
    within ``renewal_window_s`` (at most ``ANCHOR_GRANULARITY_S``) of now, so its anchor
    is already in the past. Finding renewals does not read every provider's record every
    pass: each one's standing (registered, jailed, ``verified_until``) is cached until an
    event about it arrives or ``record_max_age_s`` has passed, and a renewal is only ever
    decided on a fresh read (:meth:`HardwareVerifier.due`).

  Either way ``valid_until`` is never further than ``hardware_validity`` ahead of the chain's
  time, which the contract requires (``"verification: too far ahead"``, which is
  therefore only ever transient: retried).
- ``epoch`` is the store's current committee epoch.

Submission: one designated member per report, computed like a job's
(:func:`gpumarket.oracle.settlement.submission_rank`) with the key ``int(provider) +
valid_until``; the k-th fallback submits once ``k * fallback_delay`` seconds have passed since
the report was decided and it is still not applied. ``"verification: stale report"`` means it
(or a later one of the same claim) was already applied: done, never resubmitted. A report
stays worth submitting after the provider changes its claim only if it fails the old claim
badly enough to slash (the contract applies it anyway, so a claim change cannot dodge the
slash); any other report of an outdated claim is refused (``"verification: outdated
claim"``) and dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gpumarket.chain.errors import ContractRevert
from gpumarket.chain.events import (
    HardwareRejected,
    HardwareVerified,
    MarketEvent,
    ProviderJailed,
    ProviderRegistered,
    ProviderUnjailed,
    ProviderUpdated,
)
from gpumarket.chain.market import Market
from gpumarket.measure.classes import class_by_id
from gpumarket.oracle.chain_submitter import ChainSubmitter
from gpumarket.oracle.challenge import (
    Bucket,
    ChallengeConfig,
    ChallengeOutcome,
    canonical_throughput,
    canonical_value,
    challenge_provider,
)
from gpumarket.oracle.peers import GatherResult, PeerClient, gather_hardware_signatures
from gpumarket.oracle.settlement import should_submit, submission_rank
from gpumarket.oracle.signer import NoQuorum, OracleSigner, SignedReport, StaleEpoch
from gpumarket.oracle.store import ConflictingDecision, DecisionStore
from gpumarket.oracle.trust import measure_trusted
from gpumarket.signing.eip712 import HardwareReport

__all__ = [
    "ANCHOR_GRANULARITY_S",
    "Attempt",
    "Bucket",
    "ChallengeOutcome",
    "HardwareConfig",
    "HardwareVerifier",
    "NoAnswer",
    "StepResult",
    "UnknownClass",
    "canonical_throughput",
    "canonical_valid_until",
    "challenge_provider",
]

log = logging.getLogger(__name__)

ANCHOR_GRANULARITY_S = 3_600
# Reverts after which a report can never apply (contracts/modules/verification.vy).
# "too far ahead" is not one: chain time catches up with it.
_FINAL_REVERTS = frozenset(
    {
        "verification: report expired",
        "verification: claim mismatch",
        "verification: not registered",
        "verification: outdated claim",
        "verification: unknown claim",
    }
)
# Every change to what HardwareVerifier.due reads of a provider (registered, jailed,
# verified_until) emits one of these (contracts/modules/registry.vy, verification.vy).
_STANDING_EVENTS = (
    ProviderRegistered,
    ProviderUpdated,
    ProviderJailed,
    ProviderUnjailed,
    HardwareVerified,
    HardwareRejected,
)
# (provider, claim_version, valid_until): what identifies one hardware report of one claim.
ReportId = tuple[str, int, int]


class UnknownClass(ValueError):
    """The provider's registered class is not in this oracle's class table: it cannot judge it."""


def canonical_valid_until(anchor_ts: int, hardware_validity: int) -> int:
    """The anchor rounded down to the hour plus the validity: identical across honest oracles."""
    return anchor_ts - anchor_ts % ANCHOR_GRANULARITY_S + hardware_validity


def _report_id(report: HardwareReport) -> ReportId:
    return (report.provider, report.claim_version, report.valid_until)


@dataclass(frozen=True)
class HardwareConfig:
    # Re-verify a provider whose verified_until is this close; at most ANCHOR_GRANULARITY_S,
    # so a renewal's anchor (verified_until - ANCHOR_GRANULARITY_S) is already past.
    renewal_window_s: int = ANCHOR_GRANULARITY_S
    fallback_delay_s: float = 30.0
    challenge: ChallengeConfig = ChallengeConfig()  # each challenge, and confirming a slow one
    # An agent that does not answer at all is retried at this pace, and given up on after
    # the second delay (until its next ProviderRegistered/Updated event): no report is signed
    # for it, since silence says nothing about its hardware.
    no_answer_retry_s: float = 10.0
    no_answer_give_up_s: float = 3_600.0
    # A provider's cached standing is read again after this long even without an event about
    # it, so that a missed event only delays a renewal, never loses it.
    record_max_age_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.renewal_window_s <= ANCHOR_GRANULARITY_S:
            raise ValueError(
                f"renewal_window_s must be in 1 .. {ANCHOR_GRANULARITY_S}: a renewal report must not be"
                " valid further ahead than the contract accepts"
            )
        if not self.record_max_age_s > 0:
            raise ValueError("record_max_age_s must be > 0")


class NoAnswer(Exception):
    """No usable answer, or no trusted verdict (the oracle abstains): nothing to report yet."""


@dataclass(frozen=True)
class _Standing:
    """What :meth:`HardwareVerifier.due` needs of a provider's record, and when (its clock) it was read."""

    registered: bool
    jailed: bool
    verified_until: int
    read_at: float

    def renewal_due(self, now: float, window: int) -> bool:
        return self.registered and not self.jailed and 0 < self.verified_until < now + window


@dataclass(frozen=True)
class Attempt:
    """A hardware report this oracle decided and signed, and what it measured."""

    signed: SignedReport
    bucket: Bucket
    outcome: ChallengeOutcome
    decided_at: float

    @property
    def report(self) -> HardwareReport:
        assert isinstance(self.signed.report, HardwareReport)
        return self.signed.report


@dataclass(frozen=True)
class StepResult:
    gathered: GatherResult
    submitted: bool = False
    tx_hash: str | None = None
    detail: str = ""


@dataclass
class HardwareVerifier:
    """The oracle's hardware-verification loop pieces; see the module docstring.

    ``handle`` may be called from the follower's thread; ``tick``/``verify``/``step`` from one
    loop thread (they are not meant to run concurrently with each other on one instance).
    """

    store: DecisionStore
    signer: OracleSigner
    market: Market
    peers: Sequence[PeerClient]
    submitter: ChainSubmitter
    config: HardwareConfig = field(default_factory=HardwareConfig)
    clock: Callable[[], float] = time.time
    _queue: dict[str, tuple[int, int]] = field(default_factory=dict)  # provider -> (anchor, min valid_until)
    _applied: set[ReportId] = field(default_factory=set)
    _open: dict[ReportId, Attempt] = field(default_factory=dict)  # decided, not yet applied
    _not_before: dict[str, float] = field(default_factory=dict)  # provider -> next try after no answer
    _silent_since: dict[str, float] = field(default_factory=dict)  # provider -> first unanswered try
    _given_up: set[str] = field(default_factory=set)
    _standings: dict[str, _Standing] = field(default_factory=dict)  # provider -> its record as last read
    _events_seen: int = 0  # standing events handled so far: a read that overlaps one is not cached
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def tick(self, now: float | None = None, known: Sequence[str] = ()) -> list[StepResult]:
        """One pass of the loop: verify every due provider, then step every open attempt.

        An attempt is dropped once its report is applied on chain or its valid_until has
        passed. A provider that cannot be verified here (unknown class, unregistered) is
        logged and skipped; the error does not stop the others.
        """
        now = self.clock() if now is None else now
        for provider, anchor, min_valid_until in self.due(now, known):
            try:
                attempt = self.verify(provider, anchor, min_valid_until)
            except NoAnswer as exc:
                self._no_answer(provider, anchor, min_valid_until, now, exc)
                continue
            except (ValueError, StaleEpoch) as exc:
                log.warning("cannot verify %s: %s", provider, exc)
                continue
            self._silent_since.pop(provider, None)
            self._open[_report_id(attempt.report)] = attempt
        results = []
        for key, attempt in list(self._open.items()):
            try:
                results.append(self.step(attempt, now=now))
            except ContractRevert as exc:
                # The report can no longer apply (expired, the claim changed and it would not
                # slash, deregistered): drop it; a ProviderUpdated event queues the provider
                # again. Other reverts (too far ahead) are retried on the next pass.
                if exc.reason in _FINAL_REVERTS:
                    log.warning("hardware report %s/v%d/%d refused on chain: %s", *key, exc.reason)
                    self._applied.add(key)
                else:
                    log.info("hardware report %s/v%d/%d not applicable yet (%s): retrying", *key, exc.reason)
            if key in self._applied or attempt.report.valid_until <= now:
                del self._open[key]
        return results

    def _no_answer(self, provider: str, anchor: int, min_valid_until: int, now: float, exc: NoAnswer) -> None:
        """Try again later, or give up after ``no_answer_give_up_s`` (a new event re-queues it)."""
        since = self._silent_since.setdefault(provider, now)
        if now - since >= self.config.no_answer_give_up_s:
            log.warning("giving up on %s: no answer for %.0f s (%s)", provider, now - since, exc)
            self._given_up.add(provider)
            del self._silent_since[provider]
            return
        log.info("%s did not answer (%s): retrying in %.0f s", provider, exc, self.config.no_answer_retry_s)
        self._not_before[provider] = now + self.config.no_answer_retry_s
        with self._lock:
            self._queue.setdefault(provider, (anchor, min_valid_until))

    @property
    def open_attempts(self) -> list[Attempt]:
        return list(self._open.values())

    def handle(self, event: MarketEvent, db: object = None) -> None:
        """Follower handler: queue a provider that registered or changed its claim; forget the
        cached standing of a provider whose record an event changed."""
        if isinstance(event, _STANDING_EVENTS):
            with self._lock:
                self._standings.pop(event.provider, None)
                self._events_seen += 1
        if isinstance(event, (ProviderRegistered, ProviderUpdated)):
            block = event.meta.block_number
            anchor = self.market.block_timestamp(block)
            claim_version = event.claim_version if isinstance(event, ProviderUpdated) else 0
            # Read at the event's block, so every oracle gets the same bound.
            min_valid_until = self.market.last_report_valid_until(event.provider, claim_version, block=block) + 1
            with self._lock:
                self._queue[event.provider] = (anchor, min_valid_until)
                self._given_up.discard(event.provider)
                self._not_before.pop(event.provider, None)
                self._silent_since.pop(event.provider, None)

    def due(self, now: float, known: Sequence[str] = ()) -> list[tuple[str, int, int]]:
        """(provider, anchor, min_valid_until) to verify now: the queued ones, plus renewals among ``known``.

        A renewal is a provider of ``known`` that is verified (``verified_until`` > 0), not
        jailed, and whose ``verified_until`` falls within the renewal window; its anchor and
        minimum derive from that on-chain ``verified_until`` (see the module docstring),
        which every oracle reads alike, so their reports agree. An unverified provider is
        challenged again only when it registers or updates its claim (an event), never on
        every pass. A provider with an open attempt waits.

        Each provider's standing is cached (:meth:`_standing`): a change on chain is seen once
        its event arrives (after ``record_max_age_s`` at the latest, should the event be missed),
        and a renewal is only ever found on a fresh read, so its anchor and minimum are the
        values every oracle reads.
        """

        def waiting(provider: str) -> bool:
            return self._has_open(provider) or self._not_before.get(provider, 0.0) > now

        with self._lock:  # handle() may run on the follower's thread
            due = {p: a for p, a in self._queue.items() if not waiting(p)}
            self._queue = {p: a for p, a in self._queue.items() if p not in due}
        for provider in known:
            if provider in due or waiting(provider) or provider in self._given_up:
                continue
            standing = self._standing(provider, now)
            if standing.renewal_due(now, self.config.renewal_window_s):
                due[provider] = (standing.verified_until - ANCHOR_GRANULARITY_S, standing.verified_until + 1)
        return [(provider, anchor, floor) for provider, (anchor, floor) in sorted(due.items())]

    def _standing(self, provider: str, now: float) -> _Standing:
        """``provider``'s standing: the cached one while it is younger than ``record_max_age_s``,
        no event about the provider came since it was read, and it makes no renewal due; a
        fresh read of its record otherwise (so a renewal is always decided on a fresh read)."""
        window = self.config.renewal_window_s
        with self._lock:
            cached = self._standings.get(provider)
            events_seen = self._events_seen
        if (
            cached is not None
            and 0 <= now - cached.read_at < self.config.record_max_age_s
            and not cached.renewal_due(now, window)
        ):
            return cached
        record = self.market.providers(provider)
        standing = _Standing(record.registered, record.jailed, record.verified_until, now)
        with self._lock:
            # An event handled during the read may be about a change the read missed.
            if self._events_seen == events_seen:
                self._standings[provider] = standing
        return standing

    def _has_open(self, provider: str) -> bool:
        return any(key[0] == provider for key in self._open)

    def verify(self, provider: str, anchor_ts: int, min_valid_until: int = 0) -> Attempt:
        """Challenge ``provider``'s current claim, then decide and sign the canonical report.

        ``valid_until`` is ``max(canonical_valid_until(anchor_ts), min_valid_until)`` (see the
        module docstring); the report names the claim version of the record read here.
        """
        record = self.market.providers(provider)
        if not record.registered:
            raise ValueError(f"{provider} is not registered")
        # A class this oracle cannot size a challenge for is our gap, not the provider's fault:
        # refuse (ValueError) rather than sign a failing report that would slash it.
        try:
            class_by_id(record.gpu_class)
        except KeyError as exc:
            raise UnknownClass(f"{provider}: gpu class {record.gpu_class} is not in this oracle's table") from exc
        committee = self.store.current_committee()
        if committee is None:
            raise StaleEpoch("no committee known: sync it from the chain first")
        required = self.market.class_floor(record.gpu_class) * record.gpu_count
        measurement = measure_trusted(
            lambda: challenge_provider(
                record.endpoint, record.gpu_class, record.gpu_count, config=self.config.challenge
            ),
            required,
            good={Bucket.PASS},
            config=self.config.challenge,
        )
        if measurement.bucket is None:
            raise NoAnswer(f"{record.endpoint}: {measurement.detail}")
        outcome, bucket = measurement.outcome, measurement.bucket
        value = canonical_value(bucket, required)
        validity = self.market.parameters()["hardware_validity"]
        report = HardwareReport(
            provider=record.address,
            gpu_class=record.gpu_class,
            gpu_count=record.gpu_count,
            claim_version=record.claim_version,
            measured_throughput=value,
            valid_until=max(canonical_valid_until(anchor_ts, validity), min_valid_until),
            epoch=committee.epoch,
        )
        try:
            signed = self.signer.decide_and_sign(report)
        except ConflictingDecision:
            # Decided for this key by an earlier attempt (same anchor hour): the first stands.
            signed = self.signer.sign_hardware(*_report_id(report))
            assert isinstance(signed.report, HardwareReport)
            bucket, _ = canonical_throughput(signed.report.measured_throughput, required)
            log.warning("hardware %s/v%d/%d was already decided (%s); keeping it", *_report_id(report), bucket)
        log.info("hardware %s: %s (%.2f GOPS measured, %d required)", provider, bucket, outcome.measured_gops, required)
        return Attempt(signed, bucket, outcome, self.clock())

    def step(self, attempt: Attempt, *, now: float | None = None) -> StepResult:
        """Gather peers' signatures; submit the quorum if we are designated or our fallback is due."""
        now = self.clock() if now is None else now
        report = attempt.report
        key = _report_id(report)
        gathered = gather_hardware_signatures(self.store, *key, self.peers)
        if (
            key in self._applied
            or self.market.last_report_valid_until(report.provider, report.claim_version) >= report.valid_until
        ):
            self._applied.add(key)
            return StepResult(gathered, detail="already applied")
        committee = self.store.current_committee()
        if committee is None or not committee.is_member(self.signer.address):
            return StepResult(gathered, detail="not a member of the current committee")
        rank = submission_rank(int(report.provider, 16) + report.valid_until, committee.members, self.signer.address)
        if not should_submit(now, attempt.decided_at, rank == 0, self.config.fallback_delay_s, rank=rank):
            return StepResult(gathered, detail=f"fallback rank {rank}: not due")
        try:
            quorum = self.signer.hardware_quorum(*key)
        except (NoQuorum, StaleEpoch) as exc:
            return StepResult(gathered, detail=str(exc))
        assert isinstance(quorum.report, HardwareReport)
        tx_hash = self.submitter.submit_hardware(quorum.report, quorum.signatures)
        self._applied.add(key)
        return StepResult(
            gathered,
            submitted=tx_hash is not None,
            tx_hash=tx_hash,
            detail="submitted" if tx_hash else "already applied",
        )
