"""The oracle's job loop: challenge a running job's provider, decide the outcome, sign, settle.

    monitor = JobMonitor(store, signer, market, peers, ChainSubmitter(market, store))
    monitor.handle(event)     # follower handler: JobAccepted -> followed; JobSettled/... -> done
    monitor.run(stop)         # the service's loop: a pool steps each job when it falls due
    monitor.tick(now)         # or (tests): step what is due at ``now`` once, in this thread

A job is followed from its ``JobAccepted`` event (recorded in the decision store, so a
restart follows it again) until it ends on chain. Per job, on this oracle's own clock:

1. **Start challenge** as soon as the job is seen running.
2. **Poll** the agent's public ``GET /jobs/<id>/status`` every ``poll_interval_s``; while
   the job runs, a **heartbeat** challenge every ``heartbeat_interval_s``.
3. When the agent reports the job ``finished``: the **end challenge**, then the usage record
   (``GET /jobs/<id>/usage``), which must hash to the status's ``evidence_hash``.
4. **Decide**, commit the decision (write-once, before signing: gpumarket.oracle.store),
   sign, push the signature to the peers, gather theirs, and submit the quorum when this
   oracle is the job's designated submitter or its fallback turn has come
   (:func:`gpumarket.oracle.settlement.submit_if_due`; a job settled by anyone is never
   resubmitted).

A challenge here checks that the provider's hardware is present and does valid work: a
judgement *passes* when the work is valid and at or above half the class floor (the bucket
under which a hardware report would slash: :func:`gpumarket.oracle.challenge.canonical_throughput`).
The full floor is the hardware report's business; during a job the device is shared with
the job itself. Each judgement goes through :func:`gpumarket.oracle.trust.measure_trusted`:
a slow result counts only when a fresh challenge confirms it and this oracle's own stalls
cannot explain it. No usable answer (connection refused, timeout, an error) is never a failure
by itself: it only counts toward silence. A **busy prover** (other oracles' challenges hold
the agent's turns) is not even a try: a challenge waits ``turn_wait_s`` for a turn, then gives
its worker back and the job asks again at the poll pace; only a prover busy for the whole of
``turn_give_up_s`` (gpumarket.oracle.challenge.ChallengeConfig) across those tries counts as
one unanswered try, as a single challenge waiting that long would.

Silence is what this oracle observed: ``silent_min_tries`` of its own tries went unanswered
over at least ``silent_after_s``, with no gap longer than ``silent_after_s`` between two of them
(an oracle that was itself stopped or late does not find the agent silent on its first tries
back: the time it did not ask is not counted). Timings are read fresh after anything slow (a
challenge, a usage read), never from when the step was due.

The outcome, canonical so that honest oracles sign byte-identical reports:

- **COMPLETED** when the start, every heartbeat and the end challenge passed and the agent
  served a well-formed usage record for this job: ``gpu_seconds`` = the record's metered
  wall time in whole seconds (rounded down) x the job's gpu_count, ``result_hash`` and
  ``evidence_hash`` from the agent's status. Every oracle reads the same record, so every
  oracle computes the same number; the challenges bracket it (billing is the time between
  passing challenges, :func:`gpumarket.measure.metering.billable_gpu_seconds`, here with
  the job's own start and end as the brackets). A job's own exit status does not matter:
  the provider did the work the client asked for.
- **FAILED** (``gpu_seconds`` 0, zero hashes) when a judgement failed (invalid work, or
  below half the floor twice, undisturbed), the agent reports the job ``lost`` after it
  held the spec, the usage record is refused, malformed, for another job, or claims more time
  than has passed since the job started on chain (``usage_min_tries`` reads in a row), the
  agent was observed silent (above; while the job runs, answering its status but no
  challenge counts: heartbeats cannot be dodged by hanging them), or a fresh status says the
  job still runs ``overrun_s`` past its paid time. Why an honest provider on a slow or busy
  machine lands in none of these: docs/ARCHITECTURE.md, "The job loop's FAILED paths".
  A job the agent reports lost because its image could not be had (``reason``
  ``image_not_found``, ``image_unavailable``, ``image_too_large``, before it started) is
  decided by :mod:`gpumarket.oracle.images` instead: FAILED only when this oracle itself
  fetched the image every time it checked, at least twice over the attempt, within the
  provider's advertised ``max_image_bytes``; no decision (expiry) otherwise.
- **No decision** when the job never got its spec (the agent still waits for it at the
  deadline, or reports it lost without ever having been seen holding it: the spec came too
  late): the client did not start it; the job ends by ``expire_job`` (refund, no slash). Nor
  when this oracle is not a member of the current committee, or the job's GPU class is not
  in its class table (it cannot size a challenge).

A decision is final: after a crash the job is challenged again (the history judgements read
is in memory), but a different outcome is refused by the store and the first one stands. Each
challenge is also recorded in the store for the API (``GET /challenges/job/<id>``); nothing
here reads those records back.

**Scheduling.** Each followed job waits in a :class:`gpumarket.oracle.schedule.DueSchedule`
keyed by when :meth:`JobMonitor._step` next has something to do (its next poll, start
challenge try, or gather and submit; heartbeats and the end ride on polls): the times its own
checks compare with, so the schedule and the step cannot disagree, and a step run early only
waits. A pool of ``workers`` threads, started once, takes the earliest due job, steps it and
puts it back with its next due time; a job is in at most one worker at a time, so one slow
provider (a challenge that hangs until its timeouts) holds one worker and delays no other
job, and a challenge waiting for the agent's prover holds it ``turn_wait_s`` at most. The
store's watched jobs are read once, at the start (the jobs of before a restart); after that
jobs come and go by events only, and a peer's signature arriving hurries its job's
settlement. Per step the loop's own work is O(log n) in the jobs followed (the heap), never a
walk over all of them, so n jobs cost n times one job's polls and challenges, and capacity is
``workers`` steps at once.

**Back-pressure.** Lag is how late a step starts after it fell due (DueSchedule.lag: the most
overdue waiting job now, or the largest lag of a step started within the last ``max_lag_s``).
It is exported (``gpumarket_oracle_job_lag_seconds``; with ``gpumarket_oracle_jobs_followed``
and ``gpumarket_oracle_job_steps_total``), logged as a warning when over ``max_lag_s``, and
:meth:`JobMonitor.health` makes ``/health`` say ``"degraded"`` with ``"job_loop": {"behind":
true, ...}``. Over capacity, earliest due first keeps the oldest work moving and every job's
polls come later alike. Lateness never fails an honest provider: no rule counts a step that
did not happen against the agent (there is no "missed heartbeats" rule: only challenges that
ran and got no answer count, and only toward silence), silence needs this oracle's own
unanswered tries with no gap over ``silent_after_s`` between them, the overrun rule needs a
fresh status saying the job still runs, and the usage record is compared with the time read
after it was fetched. A late oracle only decides later; a dead agent fails later. A fallback
submitter adds its own lag (up to one more ``fallback_delay_s``) to its delay: a committee
under the same load is about as late, and a designated submitter that is merely late would
otherwise be raced by every fallback, whose transactions then only waste gas.

:meth:`handle` and :meth:`signature_arrived` may run on other threads (the follower's, the API's).
"""

from __future__ import annotations

import enum
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from eth_utils.crypto import keccak

from gpumarket.agentapi.client import HttpTimeouts, ProviderApi
from gpumarket.agentapi.errors import ProviderRefused, ProviderUnreachable
from gpumarket.chain.errors import ChainError, ContractRevert
from gpumarket.chain.events import JobAccepted, JobCancelled, JobExpired, JobSettled, MarketEvent
from gpumarket.chain.market import Market
from gpumarket.chain.models import JobState
from gpumarket.measure.classes import class_by_id
from gpumarket.measure.metering import UsageRecord, billable_gpu_seconds
from gpumarket.oracle.batches import BatchQueue, BatchResult, BatchSubmitter, settle_batch
from gpumarket.oracle.chain_submitter import AlreadySettled
from gpumarket.oracle.challenge import Bucket, ChallengeConfig, ChallengeOutcome, challenge_provider
from gpumarket.oracle.images import ImageConfig, ImagePolicy, ImageWatch
from gpumarket.oracle.peers import PeerClient, gather_job_signatures, push_signature
from gpumarket.oracle.schedule import DueSchedule, Taken
from gpumarket.oracle.settlement import (
    SettlementSubmitter,
    SubmitOutcome,
    fallback_delay_under_lag,
    submission_rank,
    submit_if_due,
)
from gpumarket.oracle.signer import NoQuorum, OracleSigner, SignedReport, StaleEpoch
from gpumarket.oracle.store import ChallengeRecord, ConflictingDecision, DecisionStore
from gpumarket.oracle.trust import Measurement, measure_trusted
from gpumarket.signing.batch import MAX_BATCH
from gpumarket.signing.eip712 import JobReport, Outcome, Report

__all__ = ["ChallengeKind", "JobConfig", "JobMonitor", "JobStep"]

log = logging.getLogger(__name__)

ZERO_HASH = b"\x00" * 32
_DONE_EVENTS = (JobSettled, JobExpired, JobCancelled)
_QUIET_ACTIONS = ("waiting", "polled")  # steps not worth a log line
LAG_WARN_EVERY_S = 60.0  # while the loop stays behind, it says so at most this often


@dataclass(frozen=True)
class JobConfig:
    """Timing (seconds, this oracle's clock) and capacity of the job loop."""

    heartbeat_interval_s: float = 60.0
    poll_interval_s: float = 2.0
    silent_after_s: float = 180.0  # no answer from the agent for this long: FAILED
    silent_min_tries: int = 3  # ... and at least this many of our tries went unanswered
    overrun_s: float = 60.0  # still running this long past started_at + max_duration: FAILED
    fallback_delay_s: float = 30.0
    resubmit_after_s: float = 60.0
    clock_slack_s: int = 5  # metered time may exceed the chain's elapsed time by this much
    status_timeout_s: float = 10.0
    usage_min_tries: int = 3  # a usage record refused or invalid this many times in a row: FAILED
    workers: int = 16  # jobs stepped at once (a challenge holds its worker for seconds)
    # A challenge waits this long for a turn at a busy prover, then retries at the next poll. A retry
    # loses its place in the agent's first-come queue, so the wait covers ordinary contention (a few
    # oracles' heartbeats) and gives up only under a real backlog.
    turn_wait_s: float = 15.0
    max_lag_s: float = 30.0  # steps starting later than this after they fell due: the loop is behind
    batch_size: int = 0  # settle this oracle's jobs in batches of up to this many (0: each alone)
    batch_max_age_s: float = 10.0  # ... or once the oldest waiting job has waited this long

    def __post_init__(self) -> None:
        for name in (
            "heartbeat_interval_s",
            "poll_interval_s",
            "silent_after_s",
            "status_timeout_s",
            "max_lag_s",
            "turn_wait_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"JobConfig.{name} must be > 0")
        for name in ("overrun_s", "fallback_delay_s", "resubmit_after_s", "clock_slack_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"JobConfig.{name} must be >= 0")
        for name in ("silent_min_tries", "usage_min_tries", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"JobConfig.{name} must be >= 1")
        if not 0 <= self.batch_size <= MAX_BATCH:
            raise ValueError(f"JobConfig.batch_size must be 0 (no batches) .. {MAX_BATCH}")
        if self.batch_max_age_s < 0:
            raise ValueError("JobConfig.batch_max_age_s must be >= 0")


class ChallengeKind(enum.StrEnum):
    START = "start"
    HEARTBEAT = "heartbeat"
    END = "end"


@dataclass(frozen=True)
class JobStep:
    """What one pass did for one job (for logs and tests)."""

    job_id: int
    action: str  # challenged, polled, decided, submitted, waiting, ended, error
    detail: str = ""


@dataclass
class _Silence:
    """This oracle's unanswered tries since the agent last answered.

    Silence is what the oracle observed, not the time since it last heard: an oracle that was
    itself stopped, starved or late does not find the agent silent on its first try back, nor
    does it count the time it did not ask (:meth:`missed`).
    """

    since: float | None = None  # our first unanswered try since the last answer
    tries: int = 0
    last: float = 0.0  # our latest unanswered try

    def answered(self) -> None:
        self.since, self.tries = None, 0

    def missed(self, now: float, gap_limit: float) -> None:
        """An unanswered try at ``now``. After more than ``gap_limit`` since the previous one
        (this oracle was stopped, or its loop far behind) the count starts over: nobody asked
        the agent in between, and it may well have answered then."""
        if self.since is None or now - self.last > gap_limit:
            self.since, self.tries = now, 0
        self.tries += 1
        self.last = now

    def observed(self, now: float, limit: float, min_tries: int) -> float:
        """How long the agent has been silent, once it counts (0.0 before)."""
        if self.since is None or self.tries < min_tries or now - self.since < limit:
            return 0.0
        return now - self.since


@dataclass
class _WatchedJob:
    """A watched job as this process follows it (challenge history in memory)."""

    job_id: int
    provider: str
    started_at: int
    endpoint: str
    gpu_class: int
    gpu_count: int
    end_deadline: int
    contact: _Silence = field(default_factory=_Silence)  # any answer: status or challenge
    proof: _Silence = field(default_factory=_Silence)  # challenges answered with work while it runs
    challenges: list[tuple[ChallengeKind, float, Bucket]] = field(default_factory=list)
    last_poll: float = float("-inf")
    last_start_try: float = float("-inf")
    last_heartbeat: float = float("-inf")
    busy_since: float | None = None  # the prover was first found busy (none of our tries since)
    agent_state: str | None = None
    saw_spec: bool = False  # the agent was seen holding the spec (spec_received, running, finished)
    usage_failures: int = 0  # consecutive refused or invalid usage records
    signed: SignedReport | None = None
    decided_at: float = 0.0
    last_gather: float = float("-inf")
    pushed: bool = False
    cannot_judge: str = ""  # why this oracle cannot challenge the job (then it decides nothing)
    image: ImageWatch = field(default_factory=ImageWatch)  # this oracle's checks of the job's image
    agent: ProviderApi | None = field(default=None, repr=False)  # its agent's API, pooled across polls

    def passed(self, kind: ChallengeKind) -> bool:
        return any(k is kind and bucket is not Bucket.FAIL for k, _, bucket in self.challenges)


class JobMonitor:
    """Follows running jobs and settles them; see the module docstring."""

    def __init__(
        self,
        store: DecisionStore,
        signer: OracleSigner,
        market: Market,
        peers: Sequence[PeerClient],
        submitter: SettlementSubmitter,
        *,
        config: JobConfig = JobConfig(),
        challenge_config: ChallengeConfig = ChallengeConfig(),
        clock: Callable[[], float] = time.time,
        challenge: Callable[..., ChallengeOutcome] = challenge_provider,
        registries: Mapping[str, str] | None = None,
        image_config: ImageConfig = ImageConfig(),
    ) -> None:
        self.store = store
        self.signer = signer
        self.market = market
        self.peers = list(peers)
        self.submitter = submitter
        self.config = config
        # The job loop's challenges give their worker back when the prover is busy (turn_wait_s).
        self.challenge_config = replace(challenge_config, turn_wait_s=config.turn_wait_s)
        self.clock = clock
        self._challenge = challenge
        self.images = ImagePolicy(registries or {}, image_config)  # registry host -> base URL
        self._jobs: dict[int, _WatchedJob] = {}  # the jobs adopted (read from the chain), by id
        self._chain_lead = 0.0  # how far the chain's timestamps were seen ahead of self.clock (_chain_now)
        self._lock = threading.Lock()
        self._schedule: DueSchedule[int] = DueSchedule(clock=clock, lag_window_s=config.max_lag_s, on_drop=self._forget)
        self._stored_read = False  # the store's watched jobs were read (once: events bring the rest)
        self._warned_at = -math.inf  # when the loop last said it was behind
        # Batches (gpumarket.oracle.batches): the designated jobs waiting for one, and the jobs
        # that settle alone: a failed batch's, and a job that was alone when its batch was due.
        self._batches = BatchQueue(config.batch_size, config.batch_max_age_s) if config.batch_size else None
        if self._batches is not None and not isinstance(submitter, BatchSubmitter):
            raise ValueError("batch settlement needs a submitter with submit_batch (ChainSubmitter)")
        self._settle_alone: set[int] = set()
        self._register_gauges()

    # ------------------------------------------------------------------ events

    def handle(self, event: MarketEvent, db: object = None) -> None:
        """Follower handler: watch accepted jobs, forget ended ones (both idempotent)."""
        if isinstance(event, JobAccepted):
            self.store.watch_job(event.job_id, event.provider, event.started_at)
            self._schedule.add(event.job_id, self.clock())
        elif isinstance(event, _DONE_EVENTS):
            self._end(event.job_id, event.meta.tx_hash)

    def signature_arrived(self, report: Report) -> None:
        """A peer's signature was stored (the API's hook): a decided job may hold its quorum now."""
        if isinstance(report, JobReport):
            self._schedule.hurry(report.job_id, self.clock())

    def _end(self, job_id: int, tx_hash: str | None = None) -> None:
        self.store.unwatch_job(job_id)
        if self.store.job_decision(job_id) is not None:
            self.store.mark_settled(job_id, tx_hash)
        self._schedule.remove(job_id)  # _forget once no worker holds it

    def _forget(self, job_id: int) -> None:
        if self._batches is not None:
            self._batches.discard(job_id)
        self._settle_alone.discard(job_id)
        with self._lock:
            gone = self._jobs.pop(job_id, None)
        if gone is not None and gone.agent is not None:
            gone.agent.close()

    @property
    def followed(self) -> list[int]:
        """Ids of the jobs this loop follows now (read from the chain)."""
        with self._lock:
            return sorted(self._jobs)

    # ------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        """The service's loop: ``config.workers`` threads step each job when it falls due
        (gpumarket.oracle.schedule), until ``stop`` is set."""
        self._read_stored(self.clock())
        self._schedule.serve(
            lambda taken: self._run(taken)[1], workers=self.config.workers, stop=stop, name="oracle-job"
        )

    def tick(self, now: float | None = None) -> list[JobStep]:
        """Steps every job due at ``now`` (default: the clock) once, in this thread, earliest due
        first, and says what each did; an error on one job is logged and does not stop the others.
        A job an event added is due from the clock's time then."""
        now = self.clock() if now is None else now
        self._read_stored(now)
        steps: list[JobStep] = []

        def step(taken: Taken[int]) -> float:
            done, due = self._run(taken)
            steps.append(done)
            return due

        self._schedule.run_due(now, step)
        return steps

    def lag(self) -> float:
        """How late the loop's steps start now (gpumarket.oracle.schedule: DueSchedule.lag)."""
        return self._schedule.lag(self.clock())

    def health(self) -> tuple[bool, dict[str, Any]]:
        """For /health: healthy unless the loop is behind (its lag over ``max_lag_s``)."""
        lag = self.lag()
        behind = lag > self.config.max_lag_s
        return not behind, {
            "followed": len(self._schedule),
            "workers": self.config.workers,
            "lag_s": round(lag, 3),
            "max_lag_s": self.config.max_lag_s,
            "behind": behind,
        }

    def _read_stored(self, now: float) -> None:
        """Schedules the jobs the store follows (those of before a restart), the first time only."""
        with self._lock:
            if self._stored_read:
                return
            self._stored_read = True
        for watched in self.store.watched_jobs():
            self._schedule.add(watched.job_id, now)

    def _run(self, taken: Taken[int]) -> tuple[JobStep, float]:
        """One step of the job the schedule handed over (adopted first, if new): what it did, and
        when it is next due."""
        self._note_lag(taken)
        job_id, now = taken.key, taken.started
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            try:
                job = self._adopt(job_id, now)
            except (ChainError, OSError) as exc:
                return self._count(self._error(job_id, exc)), now + self.config.poll_interval_s
            if job is None:
                return self._count(JobStep(job_id, "ended", "not running on chain")), math.inf
        return self._count(self._safe_step(job, now)), self._next_due(job)

    def _next_due(self, job: _WatchedJob) -> float:
        """When :meth:`_step` next has something to do: the times its own checks wait for."""
        interval = self.config.poll_interval_s
        if job.signed is not None:
            return job.last_gather + interval  # gather and submit at the poll pace (or when a peer signs)
        if job.cannot_judge:
            return math.inf  # nothing to do until the job ends
        due = job.last_poll + interval  # heartbeats and the end come with a poll
        if not job.passed(ChallengeKind.START):
            due = min(due, job.last_start_try + interval)
        return due

    def _note_lag(self, taken: Taken[int]) -> None:
        lag = taken.lag
        if lag <= self.config.max_lag_s:
            return
        with self._lock:
            if taken.started - self._warned_at < LAG_WARN_EVERY_S:
                return
            self._warned_at = taken.started
        log.warning(
            "the job loop is behind: job %d's step started %.1f s after it was due (bound %.1f s; %d jobs "
            "followed by %d workers): give it more workers or fewer jobs",
            taken.key,
            lag,
            self.config.max_lag_s,
            len(self._schedule),
            self.config.workers,
        )

    def _count(self, step: JobStep) -> JobStep:
        self.signer.metrics.job_steps.inc(action=step.action)
        if step.action not in _QUIET_ACTIONS:
            log.info("job %d: %s %s", step.job_id, step.action, step.detail)
        return step

    def _register_gauges(self) -> None:
        metrics = self.signer.metrics
        if metrics.has("gpumarket_oracle_jobs_followed"):
            return  # another loop over the same metrics registered them
        metrics.gauge(
            "gpumarket_oracle_jobs_followed", "Jobs the job loop follows.", lambda: [({}, len(self._schedule))]
        )
        metrics.gauge(
            "gpumarket_oracle_job_lag_seconds",
            "How late the job loop's steps start: the most overdue job's lag now, or the largest lag of a "
            "step started within the last max_lag_s seconds, whichever is larger.",
            lambda: [({}, self.lag())],
        )

    def _safe_step(self, job: _WatchedJob, now: float) -> JobStep:
        try:
            return self._step(job, now)
        except (ChainError, OSError) as exc:
            return self._error(job.job_id, exc)

    @staticmethod
    def _error(job_id: int, exc: Exception) -> JobStep:
        log.warning("job %d: %s: %s", job_id, type(exc).__name__, exc)
        return JobStep(job_id, "error", f"{type(exc).__name__}: {exc}")

    def _adopt(self, job_id: int, now: float) -> _WatchedJob | None:
        """Start following a watched job: read it and its provider from the chain."""
        job = self.market.get_job(job_id)
        if job.state != JobState.RUNNING:
            self._end(job_id)
            return None
        self._saw_chain_time(job.started_at)
        record = self.market.providers(job.provider)
        followed = _WatchedJob(
            job_id=job.job_id,
            provider=job.provider,
            started_at=job.started_at,
            endpoint=record.endpoint,
            gpu_class=job.gpu_class,
            gpu_count=job.gpu_count,
            end_deadline=job.end_deadline,
        )
        decision = self.store.job_decision(job.job_id)
        if decision is not None:  # decided before a restart: only settlement is left
            followed.signed = self.signer.sign_job(job.job_id)
            followed.decided_at = now
        else:
            try:
                class_by_id(job.gpu_class)
            except KeyError:
                # Our gap, not the provider's fault: no challenge can be sized, so no report.
                followed.cannot_judge = f"gpu class {job.gpu_class} is not in this oracle's table"
                log.warning("job %d: %s: it will not be judged here", job.job_id, followed.cannot_judge)
        with self._lock:
            self._jobs[job.job_id] = followed
        log.info("following job %d of %s (%s)", job.job_id, job.provider, record.endpoint)
        return followed

    def _step(self, job: _WatchedJob, now: float) -> JobStep:
        if job.signed is not None:
            return self._settle(job, now)
        if job.cannot_judge:
            return JobStep(job.job_id, "waiting", job.cannot_judge)
        if not job.passed(ChallengeKind.START) and now - job.last_start_try >= self.config.poll_interval_s:
            job.last_start_try = now  # retried at the poll pace while the agent does not answer
            step = self._challenge_step(job, ChallengeKind.START, now)
            if step is not None:
                return step
        if now - job.last_poll < self.config.poll_interval_s:
            return JobStep(job.job_id, "waiting")
        job.last_poll = now
        return self._poll(job, now)

    def _agent(self, job: _WatchedJob) -> ProviderApi:
        """The job's agent over HTTP, bounded by status_timeout_s (connect and each read); one per
        followed job, so that its polls reuse a connection."""
        if job.agent is None:
            timeout = self.config.status_timeout_s
            job.agent = ProviderApi(job.endpoint, HttpTimeouts(timeout, timeout))
        return job.agent

    def _poll(self, job: _WatchedJob, now: float) -> JobStep:
        api = self._agent(job)
        status: dict[str, Any] | None = None  # a fresh answer from this poll, or None
        try:
            status = api.status(job.job_id)
            job.contact.answered()
            job.agent_state = str(status.get("state"))
            job.saw_spec |= job.agent_state in ("spec_received", "running", "finished")
        except ProviderRefused as exc:
            job.contact.answered()  # it answers: alive, but does not know the job yet
            if exc.code != "unknown_job":
                log.warning("job %d: the agent refused its status: %s", job.job_id, exc)
        except ProviderUnreachable as exc:
            job.contact.missed(now, self.config.silent_after_s)
            log.info("job %d: agent unreachable: %s", job.job_id, exc)
        silence = self._silence(job, now)
        if silence:
            return self._decide_failed(job, silence)
        state = job.agent_state
        # Checks the job's image while the agent pulls it; a verdict once the agent reports the
        # job lost because the image could not be had, before it started (gpumarket.oracle.images).
        if status is not None and (image := self.images.observe(job.image, status, now, api.health)) is not None:
            if image.failed:
                return self._decide_failed(job, image.detail)
            return JobStep(job.job_id, "waiting", image.detail)
        if status is not None and state == "lost":
            detail = status.get("detail") or "no reason given"
            if status.get("started_at") is None and not job.saw_spec:
                # The spec reached the agent too late to run (or never could): the client's
                # side, as far as anyone can tell. No report: the job ends by expiry, no slash.
                return JobStep(job.job_id, "waiting", f"never started ({detail}): the job ends by expiry")
            return self._decide_failed(job, f"the agent reports the job lost: {detail}")
        if status is not None and state == "finished":
            return self._finish(job, status)
        # Fresh: a step that ran late must not judge the deadline on an old reading.
        latest = self.market.block_timestamp()
        self._saw_chain_time(latest)
        chain_now = max(self.clock(), latest)
        if chain_now > job.end_deadline + self.config.overrun_s:
            # Only a fresh answer says it still runs: an agent down across the deadline stops
            # the job when it is back, and its last answer from before says nothing now.
            if status is not None and state in ("spec_received", "running"):
                return self._decide_failed(job, "still running past its paid time")
            if job.saw_spec:
                return JobStep(job.job_id, "waiting", "past its paid time, no fresh status yet")
            return JobStep(job.job_id, "waiting", "no spec was ever sent: the job ends by expiry")
        if state == "running" and now - job.last_heartbeat >= self.config.heartbeat_interval_s:
            step = self._challenge_step(job, ChallengeKind.HEARTBEAT, now)
            if step is not None:
                return step
        return JobStep(job.job_id, "polled", state or "unknown")

    def _silence(self, job: _WatchedJob, now: float) -> str:
        """Why the job fails for silence, or "": our tries found the agent answering nothing, or,
        while the job runs, answering its status but no challenge (heartbeats are owed then)."""
        limit, tries = self.config.silent_after_s, self.config.silent_min_tries
        if silent := job.contact.observed(now, limit, tries):
            return f"the agent has not answered {job.contact.tries} tries in {silent:.0f} s"
        if job.agent_state == "running" and (silent := job.proof.observed(now, limit, tries)):
            return f"the agent has answered none of {job.proof.tries} challenges in {silent:.0f} s while the job runs"
        return ""

    def _challenge_step(self, job: _WatchedJob, kind: ChallengeKind, now: float) -> JobStep | None:
        """One judgement (gpumarket.oracle.trust): a FAILED decision when it failed, a step when
        it got no answer or no trusted verdict, None when it passed."""
        required = self.market.class_floor(job.gpu_class) * job.gpu_count
        measurement = measure_trusted(
            lambda: self._challenge(job.endpoint, job.gpu_class, job.gpu_count, config=self.challenge_config),
            required,
            good={Bucket.PASS, Bucket.SLOW},
            config=self.challenge_config,
        )
        now = self.clock()  # a judgement takes a while: time what follows from its end
        if measurement.busy and not self._busy_too_long(job, now):
            return JobStep(job.job_id, "waiting", f"{kind}: {measurement.detail}; asking again")
        job.busy_since = None
        if kind is ChallengeKind.HEARTBEAT:
            job.last_heartbeat = now
        self._record(job.job_id, kind, now, measurement, required)
        if not measurement.answered:
            log.info("job %d: %s challenge: %s", job.job_id, kind, measurement.detail)
            job.contact.missed(now, self.config.silent_after_s)
            if job.agent_state == "running":
                job.proof.missed(now, self.config.silent_after_s)
            silence = self._silence(job, now)
            if silence:
                return self._decide_failed(job, silence)
            return JobStep(job.job_id, "challenged", f"{kind}: no answer")
        job.contact.answered()
        job.proof.answered()
        bucket = measurement.bucket
        if bucket is None:  # valid work, but no verdict this oracle can trust: try again later
            return JobStep(job.job_id, "challenged", f"{kind}: {measurement.detail}")
        job.challenges.append((kind, now, bucket))
        log.info(
            "job %d: %s challenge %s (%.2f GOPS, %d required)",
            job.job_id,
            kind,
            bucket,
            measurement.measured_gops,
            required,
        )
        if bucket is Bucket.FAIL:
            return self._decide_failed(job, f"{kind} challenge failed: {measurement.detail}")
        return None

    def _busy_too_long(self, job: _WatchedJob, now: float) -> bool:
        """Whether the prover has been busy for every try since ``turn_give_up_s`` ago: then this
        try counts as unanswered, as one challenge that waited all that time would have."""
        if job.busy_since is None:
            job.busy_since = now
        return now - job.busy_since >= self.challenge_config.turn_give_up_s

    def _record(self, job_id: int, kind: ChallengeKind, at: float, measurement: Measurement, required: int) -> None:
        """Keeps the challenge for this oracle's API (GET /challenges/job/<id>); never read back
        for a decision, so a failed write costs the record only."""
        if not measurement.answered:
            verdict, gops = "no answer", None
        else:
            verdict = "untrusted" if measurement.bucket is None else str(measurement.bucket)
            gops = float(measurement.measured_gops)
        try:
            self.store.record_challenge(job_id, ChallengeRecord(str(kind), at, gops, float(required), verdict))
        except sqlite3.Error as exc:
            log.warning("job %d: the %s challenge was not recorded: %s", job_id, kind, exc)

    def _chain_now(self) -> float:
        """The chain's time now, for what an honest usage record may claim: its latest block's
        timestamp, or this oracle's clock plus the most the chain's timestamps were seen ahead
        of it, whichever is later. A local chain that mines more than a block a second (the
        embedded one, anvil) runs ahead of the wall clock, and between blocks its latest
        timestamp stands still: an honest job's metered wall time would then exceed the elapsed
        chain time. On a public chain timestamps are never far ahead, and the lead stays ~0.
        The lead is taken from every chain timestamp the loop reads (:meth:`_saw_chain_time`), a
        job's own on-chain start first: by the time the job ends, the chain may well have stopped
        being ahead, and the lead it had when the job started is the one its record reflects."""
        latest = self.market.block_timestamp()
        self._saw_chain_time(latest)
        return max(latest, self.clock() + self._chain_lead)

    def _saw_chain_time(self, timestamp: float) -> None:
        lead = timestamp - self.clock()
        with self._lock:
            self._chain_lead = max(self._chain_lead, lead)

    def _finish(self, job: _WatchedJob, status: dict[str, Any]) -> JobStep:
        """The agent reports the job finished: end challenge, usage record, COMPLETED."""
        if not job.passed(ChallengeKind.START):
            return JobStep(job.job_id, "waiting", "finished, but the start challenge has not been answered yet")
        if not job.passed(ChallengeKind.END):
            step = self._challenge_step(job, ChallengeKind.END, self.clock())
            if step is not None:
                return step if step.action == "decided" else JobStep(job.job_id, "waiting", step.detail)
        try:
            result_hash = _hash32(status.get("result_hash"), "result_hash")
            evidence_hash = _hash32(status.get("evidence_hash"), "evidence_hash")
            api = self._agent(job)
            raw = api.request("GET", f"/jobs/{job.job_id}/usage")
            if keccak(raw) != evidence_hash:
                raise ValueError("the usage record does not hash to the reported evidence_hash")
            usage = UsageRecord.from_json(raw)
            if usage.job_id not in (None, job.job_id):
                raise ValueError(f"the usage record is for job {usage.job_id}")
        except ProviderUnreachable as exc:
            return JobStep(job.job_id, "waiting", f"usage: {exc}")
        except (ProviderRefused, ValueError) as exc:
            # Read again on the next polls first: an agent that just came back may still be
            # writing it. The same answer every time is the provider's own.
            job.usage_failures += 1
            if job.usage_failures < self.config.usage_min_tries:
                return JobStep(job.job_id, "waiting", f"usage ({job.usage_failures}): {exc}")
            return self._decide_failed(job, f"no valid usage record: {exc}")
        job.usage_failures = 0
        metered = usage.summary.wall_ns // 1_000_000_000
        # Read now, after the challenges: the job ended before this moment, so however late this
        # oracle looks, an honest record never claims more than the time since the on-chain start.
        elapsed = int(self._chain_now()) - job.started_at
        if metered > elapsed + self.config.clock_slack_s:
            return self._decide_failed(job, f"usage claims {metered} s, only {elapsed} s passed since the start")
        # The job's own start and end, both bracketed by passing challenges.
        gpu_seconds = billable_gpu_seconds([(0, True), (metered, True)], job.gpu_count) if metered else 0
        return self._decide(job, Outcome.COMPLETED, gpu_seconds, result_hash, evidence_hash, "completed")

    # ------------------------------------------------------------------ deciding and settling

    def _decide_failed(self, job: _WatchedJob, why: str) -> JobStep:
        return self._decide(job, Outcome.FAILED, 0, ZERO_HASH, ZERO_HASH, why)

    def _decide(
        self, job: _WatchedJob, outcome: Outcome, gpu_seconds: int, result_hash: bytes, evidence_hash: bytes, why: str
    ) -> JobStep:
        committee = self.store.current_committee()
        if committee is None or not committee.is_member(self.signer.address):
            return JobStep(job.job_id, "waiting", f"would decide {outcome.name} ({why}) but is not a committee member")
        report = JobReport(
            job_id=job.job_id,
            provider=job.provider,
            outcome=outcome,
            gpu_seconds=gpu_seconds,
            result_hash=result_hash,
            evidence_hash=evidence_hash,
            epoch=committee.epoch,
        )
        try:
            job.signed = self.signer.decide_and_sign(report)
        except ConflictingDecision as exc:
            # Decided before a restart with other measurements: the first decision stands.
            log.warning("job %d: keeping the earlier decision (%s)", job.job_id, exc)
            job.signed = self.signer.sign_job(job.job_id)
        job.decided_at = self.clock()
        log.info("job %d decided %s, %d gpu_seconds: %s", job.job_id, outcome.name, gpu_seconds, why)
        return JobStep(job.job_id, "decided", f"{outcome.name}: {why}")

    def _settle(self, job: _WatchedJob, now: float) -> JobStep:
        signed = job.signed
        assert signed is not None
        if now - job.last_gather >= self.config.poll_interval_s:
            job.last_gather = now
            if not job.pushed:
                push_signature(signed, self.peers)
                job.pushed = True
            gather_job_signatures(self.store, job.job_id, self.peers, self.signer.metrics)
        if self._batches is not None and job.job_id not in self._settle_alone:
            batched = self._batch_step(job, now)
            if batched is not None:
                return batched
        try:
            result = submit_if_due(
                self.signer,
                self.submitter,
                job.job_id,
                now=now,
                job_end=job.decided_at,
                fallback_delay=fallback_delay_under_lag(self.config.fallback_delay_s, self.lag()),
                resubmit_after=self.config.resubmit_after_s,
            )
        except AlreadySettled:
            self._end(job.job_id)
            return JobStep(job.job_id, "ended", "settled by another oracle")
        except ContractRevert as exc:
            log.warning("job %d: settlement refused on chain: %s", job.job_id, exc.reason)
            return JobStep(job.job_id, "error", f"settle reverted: {exc.reason}")
        if result.outcome is SubmitOutcome.ALREADY_SETTLED:
            self._end(job.job_id)
            return JobStep(job.job_id, "ended", "settled")
        if result.outcome is SubmitOutcome.SUBMITTED:
            return JobStep(job.job_id, "submitted", result.tx_hash or "")
        return JobStep(job.job_id, "waiting", f"{result.outcome.value} {result.detail}".strip())

    def _batch_step(self, job: _WatchedJob, now: float) -> JobStep | None:
        """Queue a job this oracle settles first and that holds its single quorum, with its
        provider's (gpumarket.oracle.batches); flush the queue when due. Waiting while the quorum
        is not there yet. None: settle it alone (not ours, submitted, a stale epoch, a batch
        failed, or it was due alone)."""
        assert self._batches is not None
        job_id = job.job_id
        status = self.store.settlement(job_id)
        if status is not None and (status.settled or status.submitted_at is not None):
            return None
        committee = self.store.current_committee()
        if committee is None or not committee.is_member(self.signer.address):
            return None
        if submission_rank(job_id, committee.members, self.signer.address) != 0:
            return None
        try:
            self.signer.quorum(job_id)
        except NoQuorum as exc:
            # Wait here: falling through to single settlement would race a peer's signature
            # arriving meanwhile (the API's thread) and settle alone a job that was to be batched.
            return JobStep(job_id, "waiting", f"no_quorum {exc}")
        except StaleEpoch:
            return None
        self._batches.add(job_id, job.provider, now)
        if self._batches.due(now) and self._batches.flushing.acquire(blocking=False):
            try:
                ids = self._batches.take()
                # A batch of one costs more gas than settle alone (bench/GAS.md): none is sent.
                result = self._send_batch(ids) if len(ids) > 1 else None
            finally:
                self._batches.flushing.release()
            if result is None or result.tx_hash is None:
                if result is not None:
                    log.warning("a batch of %d jobs goes back to single settlement: %s", len(ids), result.detail)
                self._settle_alone.update(ids)
            elif job_id in result.job_ids:
                return JobStep(job_id, "submitted", f"in a batch of {len(ids)}: {result.tx_hash}")
        if job_id in self._batches:
            return JobStep(job_id, "waiting", "in the batch queue")
        return None

    def _send_batch(self, ids: list[int]) -> BatchResult:
        try:
            return settle_batch(self.signer, cast(BatchSubmitter, self.submitter), self.peers, ids)
        except ChainError as exc:
            return BatchResult(tuple(ids), None, f"settle_batch failed: {exc}")


def _hash32(value: object, name: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 66:
        raise ValueError(f"{name} is not a 32-byte hex string: {value!r}")
    return bytes.fromhex(value[2:])
