"""The provider agent's core: every request's checks and effects, without the HTTP transport.

``ProviderAgent`` ties the parts together: the job spec (spec.py), signed client requests
(auth.py), the job's on-chain facts (``JobSource``), the runner, the store and a challenge
prover. Each public method is one API operation; a refusal is an ``AgentError`` with its HTTP
status, stable code and detail (api.py only moves bytes).

Sending the spec (``submit_spec``), checks in order: the Authorization header (401), the spec
document (413/400/422), the signed scope: action, job, chain, market and the spec's hash (403),
the time window and signature (401), the job on chain (404 when there is none, 503 when the
source fails), the signer is the job's client (403), the job is RUNNING with this provider
(409), the spec's hash equals the on-chain spec_hash (409), the nonce is fresh (409). Then
the spec is stored, GPUs are assigned (503 when too few are free) and the command starts; the
job's thread follows it to the end and records the result. Sending the same spec again with a
fresh signature answers the job's status (a client that lost the first answer may retry).

A job never runs past its paid time: its wall-time limit is the spec's ``max_seconds`` capped at
what is left until the on-chain ``end_deadline`` (started_at + max_duration) when it starts,
"now" being the later of the chain's time and this machine's clock (a block's time lags the
clock; a local test chain may run ahead of it). A job whose paid time is already up is stored
``lost`` with the reason and refused (409 ``deadline_passed``); it never starts. The runner
keeps the capped limit in the job's directory, so after a restart it counts from the recorded
start, like the spec's.

Fetching the result (``result``): header, scope and signature, the signer is the job's client
(403), the nonce (409), then the bundle when the job has finished (409 until then, or when lost).

Challenges (``request_turn``, ``answer_challenge``, ``open_challenge``) go through the
challenge desk (gpumarket.provider.challenges): oracles take turns at the prover, first come
first served, and their waiting is never inside the timed window.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils.address import to_checksum_address

from gpumarket import __version__
from gpumarket.agentapi.auth import AuthScope, RequestVerifier, SignedRequest
from gpumarket.agentapi.errors import AgentError
from gpumarket.agentapi.spec import AnyJobSpec, ContainerJobSpec, SpecError, parse_spec, spec_hash
from gpumarket.containers.engine import ImageUnavailable
from gpumarket.measure.classes import CPU_DEV, GpuClass
from gpumarket.measure.provers import TileProver
from gpumarket.provider.challenges import ChallengeDesk
from gpumarket.provider.jobdir import ProcessGone, RunResult
from gpumarket.provider.jobsource import JobSource, JobState, OnChainJob
from gpumarket.provider.runtime import JobRuntime, RunningJobHandle
from gpumarket.provider.store import JobRecord, JobStatus, Liveness, Probe, Recovery, Store, StoreConflict

__all__ = ["AgentConfig", "GpuPool", "ProviderAgent"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentConfig:
    """Who this agent is and what it offers.

    ``address``: the provider's account (jobs must name it on chain); ``chain_id`` and
    ``market``: the deployment signed requests must name; ``gpus``: the GPU indices it assigns
    to jobs (CUDA/NVML numbering in PCI order; empty on a CPU machine, where every job runs with
    ``CUDA_VISIBLE_DEVICES=""``); ``auth_max_age_s``/``auth_max_skew_s``: the request window."""

    address: str
    chain_id: int
    market: str
    gpu_class: GpuClass = CPU_DEV
    gpus: tuple[int, ...] = ()
    auth_max_age_s: int = 300
    auth_max_skew_s: int = 60

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", to_checksum_address(self.address))
        object.__setattr__(self, "market", to_checksum_address(self.market))
        if len(set(self.gpus)) != len(self.gpus) or any(gpu < 0 for gpu in self.gpus):
            raise ValueError(f"gpus must be distinct non-negative indices, got {self.gpus}")


class GpuPool:
    """The agent's GPUs, each held by at most one job."""

    def __init__(self, gpus: Sequence[int]) -> None:
        self._free = list(gpus)
        self._lock = threading.Lock()
        self.size = len(gpus)

    def acquire(self, count: int) -> tuple[int, ...] | None:
        """``count`` free GPUs (lowest indices first), or None; () on a machine without GPUs."""
        if self.size == 0:
            return ()
        with self._lock:
            if count > len(self._free):
                return None
            chosen = tuple(sorted(self._free)[:count])
            self._free = [gpu for gpu in self._free if gpu not in chosen]
            return chosen

    def claim(self, gpus: Sequence[int]) -> None:
        """Marks these GPUs held again (a job followed after a restart)."""
        with self._lock:
            self._free = [gpu for gpu in self._free if gpu not in gpus]

    def release(self, gpus: Sequence[int]) -> None:
        with self._lock:
            self._free.extend(gpu for gpu in gpus if gpu not in self._free)

    @property
    def free(self) -> int:
        with self._lock:
            return len(self._free)


@dataclass
class _RunningJob:
    """A job this agent runs, and the thread that follows it to its end."""

    running: RunningJobHandle
    thread: threading.Thread = field(init=False)


@dataclass(frozen=True)
class PullPolicy:
    """How long the agent keeps trying to get a job's image (container runtime).

    A registry that cannot be reached (or answers 5xx) may come back: the pull is tried again
    after ``first_retry_s``, doubling up to ``max_retry_s``, until ``give_up_s`` have passed or
    the job's paid time is up. A registry that says the image does not exist, or an image over
    the provider's size limit, ends the attempt at once. Either way the job is recorded lost with
    the reason (``image_not_found``, ``image_unavailable``, ``image_too_large``) and never starts;
    the oracles check the image themselves before anyone pays for it (docs/ARCHITECTURE.md)."""

    first_retry_s: float = 2.0
    max_retry_s: float = 30.0
    give_up_s: float = 900.0


class ProviderAgent:
    """One provider's agent. Call ``recover`` once at start, ``close`` at the end."""

    def __init__(
        self,
        config: AgentConfig,
        store: Store,
        runner: JobRuntime,
        jobs: JobSource,
        prover: TileProver,
        *,
        clock: Callable[[], float] = time.time,
        pull_policy: PullPolicy = PullPolicy(),
    ) -> None:
        self.config = config
        self.store = store
        self.runner = runner
        self.jobs = jobs
        self.prover = prover
        self.verifier = RequestVerifier(
            AuthScope(config.chain_id, config.market),
            store,
            max_age_s=config.auth_max_age_s,
            max_skew_s=config.auth_max_skew_s,
            clock=clock,
        )
        self.gpus = GpuPool(config.gpus)
        self._clock = clock
        self._submit_lock = threading.Lock()  # one spec at a time: check, store, start
        self.challenges = ChallengeDesk(prover, store, config.gpu_class, len(config.gpus))
        self._followed: dict[int, _RunningJob] = {}
        self._followed_lock = threading.Lock()
        self.pull_policy = pull_policy
        self._pulling: dict[int, threading.Thread] = {}  # jobs whose image is being got
        self._closing = threading.Event()
        # Set by a close that leaves the jobs running: their endings are the next agent's to record.
        self._jobs_handed_over = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    def recover(self) -> Recovery:
        """Follows jobs whose process survived a restart, records as finished the jobs that
        ended while the agent was down (from their files), starts jobs that never started, and
        marks the others lost. Runs before the API serves, so a status read after it is true."""
        recovery = self.store.recover(self._probe)
        for job in recovery.lost:
            log.warning("job %d: lost (%s)", job.job_id, job.detail)
        for job in recovery.ended:
            self._finalize(job)
        for job in recovery.resume:
            self.gpus.claim(job.gpus)
            spec = parse_spec(job.spec or b"")
            assert job.pid is not None and job.start_ticks is not None and job.started_at is not None
            try:
                running = self.runner.adopt(job.job_id, spec, job.gpus, job.pid, job.start_ticks, job.started_at)
            except ProcessGone:
                self._finalize(job)  # it ended since the probe: finished if it left its ending, else lost
                continue
            self._follow(job.job_id, running)
        for job in recovery.start:
            self.runner.discard(job.job_id)
            left: float | None = None
            try:
                chain_job = self._chain_job(job.job_id)
            except AgentError:
                # The chain's checks passed when the spec came; start it anyway, with the
                # spec's limit only (the deadline cannot be read now).
                chain_job = None
            else:
                if chain_job is None or chain_job.state != JobState.RUNNING:
                    self.store.mark_lost(job.job_id, "the job is no longer running on chain", "ended_on_chain")
                    continue
                left = self._time_left(chain_job)
                if left is not None and left <= 0:
                    detail = self._deadline_detail(chain_job, left)
                    self.store.mark_lost(job.job_id, detail, "deadline_passed")
                    log.warning("job %d: %s", job.job_id, detail)
                    continue
            gpus = self.gpus.acquire(chain_job.gpu_count if chain_job else max(1, len(job.gpus)))
            if gpus is None:
                self.store.mark_lost(job.job_id, "too few free GPUs to start it after the restart", "gpus_busy")
                continue
            try:
                self._launch(job.job_id, parse_spec(job.spec or b""), gpus, left)
            except AgentError:
                continue  # recorded lost by _start, with the reason
        keep = {job.job_id for job in self.store.jobs((JobStatus.SPEC_RECEIVED, JobStatus.RUNNING))}
        for job_id in self.runner.sweep(keep):
            log.warning(
                "job %d: removed what the %s runtime still held for it (the job is over here)", job_id, self.runner.name
            )
        return recovery

    def _probe(self, job: JobRecord) -> Probe:
        if job.state == JobStatus.RUNNING and job.pid is not None:
            if self.runner.is_alive(job.job_id, job.pid, job.start_ticks):
                return Probe(Liveness.ALIVE, job.pid, job.start_ticks, job.started_at)
            return Probe(Liveness.ENDED if self.runner.has_ended(job.job_id) else Liveness.GONE)
        # Stored but not known to have started: the runtime's own record of the start tells.
        found = self.runner.find_started(job.job_id)
        recorded = self.runner.recorded_start(job.job_id)
        if found is not None:
            # Without a recorded start it was found an instant after it started: now is close enough.
            return Probe(Liveness.ALIVE, found[0], found[1], recorded[1] if recorded else time.time())
        if recorded is not None and self.runner.has_ended(job.job_id):
            # It started and ended while no agent recorded either: the runtime says which process and when.
            return Probe(Liveness.ENDED, recorded[0], None, recorded[1])
        if recorded is not None:
            return Probe(Liveness.GONE)
        return Probe(Liveness.NOT_STARTED)

    def close(self, *, stop_jobs: bool = False, timeout_s: float = 30.0) -> None:
        """Stops following jobs. ``stop_jobs`` also stops their processes (and waits for them
        to be recorded); otherwise they keep running, their meters' journals on disk, and the
        next ``recover`` follows them again, or records those that ended meanwhile."""
        self._closing.set()  # a pull waiting to retry gives up; its job starts again after a restart
        with self._followed_lock:
            followed = list(self._followed.values())
            pulling = list(self._pulling.values())
        for thread in pulling:
            thread.join(timeout_s)
        if not stop_jobs:
            self._jobs_handed_over.set()
            return
        for item in followed:
            item.running.stop("stopped")
        deadline = time.monotonic() + timeout_s
        for item in followed:
            item.thread.join(max(0.0, deadline - time.monotonic()))

    def wait_idle(self, timeout_s: float) -> bool:
        """Waits until no job is being followed; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._followed_lock:
                if not self._followed and not self._pulling:
                    return True
            time.sleep(0.02)
        return False

    # ------------------------------------------------------------------ jobs

    def submit_spec(self, job_id: int, raw_spec: bytes, authorization: str | None) -> tuple[JobRecord, bool]:
        """The client sends its job's spec; returns (the job, whether this request started it)."""
        request = SignedRequest.from_header(authorization)
        spec = self._parse_spec(raw_spec)
        digest = spec_hash(spec)
        signer = self.verifier.authenticate(request, action="put-spec", job_id=job_id, spec_hash=digest)
        job = self._chain_job(job_id)
        if job is None or job.state == JobState.NONE:
            raise AgentError(404, "unknown_job", f"the chain has no job {job_id}")
        self.verifier.check_signer(signer, job.client)
        if job.state != JobState.RUNNING:
            raise AgentError(409, "job_not_running", f"job {job_id} is {job.state.name} on chain, not RUNNING")
        if job.provider != self.config.address:
            raise AgentError(409, "not_this_provider", f"job {job_id} is with provider {job.provider}, not this one")
        if digest != job.spec_hash:
            raise AgentError(
                409,
                "spec_hash_mismatch",
                f"the spec hashes to 0x{digest.hex()}, job {job_id}'s on-chain spec_hash is 0x{job.spec_hash.hex()}",
            )
        with self._submit_lock:
            self.verifier.consume(request, signer)
            known = self.store.get(job_id)
            if known is not None and known.state != JobStatus.ACCEPTED:
                return known, False
            left = self._time_left(job)
            if left is not None and left <= 0:
                self._refuse(job_id, job, digest, spec, 409, "deadline_passed", self._deadline_detail(job, left))
            why = self.runner.refusal(spec)
            if why is None and isinstance(spec, ContainerJobSpec) and spec.gpu_count != job.gpu_count:
                why = f"the spec asks for {spec.gpu_count} GPUs, the job on chain has gpu_count {job.gpu_count}"
            if why is not None:
                self._refuse(job_id, job, digest, spec, 422, "spec_not_runnable", why)
            gpus = self.gpus.acquire(job.gpu_count)
            if gpus is None:
                raise AgentError(
                    503,
                    "gpus_busy",
                    f"job {job_id} needs {job.gpu_count} GPUs, {self.gpus.free} of {self.gpus.size} are free",
                    headers={"Retry-After": "5"},
                )
            busy = self.runner.capacity_refusal(job.gpu_count)
            if busy is not None:
                self.gpus.release(gpus)
                raise AgentError(503, "gpus_busy", f"job {job_id}: {busy}", headers={"Retry-After": "5"})
            try:
                self.store.receive_spec(
                    job_id, job.client, digest, spec.canonical_bytes(), gpus, str(self.runner.paths(job_id).root)
                )
            except StoreConflict as error:
                self.gpus.release(gpus)
                raise AgentError(409, "spec_already_received", str(error)) from None
            return self._launch(job_id, spec, gpus, left), True

    def _time_left(self, job: OnChainJob | None) -> float | None:
        """Seconds of paid time the job has left now; None when its deadline is unknown."""
        if job is None or not job.end_deadline:
            return None
        now = self._clock()
        if job.chain_time is not None:
            now = max(now, float(job.chain_time))
        return job.end_deadline - now

    @staticmethod
    def _deadline_detail(job: OnChainJob, left: float) -> str:
        return f"not started: its paid time (on-chain end_deadline {job.end_deadline}) ended {-left:.0f} s ago"

    def _refuse(
        self, job_id: int, job: OnChainJob, digest: bytes, spec: AnyJobSpec, status: int, code: str, detail: str
    ) -> None:
        """Records a job that can never run here as lost, its status saying why (``code`` as the
        reason: its paid time is up, or its spec asks what this agent cannot run), and refuses it
        with ``status``. It never started: the job ends by expiry, nobody is slashed."""
        try:
            self.store.receive_spec(job_id, job.client, digest, spec.canonical_bytes(), (), "")
            self.store.mark_lost(job_id, detail, code)
        except StoreConflict as error:
            raise AgentError(409, "spec_already_received", str(error)) from None
        log.warning("job %d: refused: %s", job_id, detail)
        raise AgentError(status, code, f"job {job_id}: {detail}")

    def _launch(
        self, job_id: int, spec: AnyJobSpec, gpus: tuple[int, ...], time_left: float | None = None
    ) -> JobRecord:
        """Starts the job now, or, on a runtime that pulls images, gets its image on a thread of
        its own first (the job stays ``spec_received``, its status ``pulling``) and starts it then."""
        if not self.runner.pulls_images:
            return self._start(job_id, spec, gpus, time_left)
        give_up_at = time.monotonic() + min(self.pull_policy.give_up_s, time_left or self.pull_policy.give_up_s)
        thread = threading.Thread(
            target=self._prepare_then_start,
            args=(job_id, spec, gpus, time_left, give_up_at),
            name=f"job-{job_id}-pull",
            daemon=True,
        )
        with self._followed_lock:
            self._pulling[job_id] = thread
        thread.start()
        record = self.store.get(job_id)
        assert record is not None  # stored by submit_spec or recover before the launch
        return record

    def _prepare_then_start(
        self, job_id: int, spec: AnyJobSpec, gpus: tuple[int, ...], time_left: float | None, give_up_at: float
    ) -> None:
        began = time.monotonic()
        retry_s = self.pull_policy.first_retry_s
        try:
            while True:
                try:
                    # A pull never outlasts the attempt: past the paid time a job still waiting
                    # for its image would read to the oracles as one running over it.
                    self.runner.prepare(job_id, spec, timeout_s=max(give_up_at - time.monotonic(), 1.0))
                    break
                except ImageUnavailable as error:
                    definitive = error.code != "image_unavailable"
                    if definitive or time.monotonic() + retry_s >= give_up_at:
                        self._lose_before_start(job_id, gpus, f"{error.code}: {error.detail}", error.code)
                        return
                    log.warning("job %d: %s; trying again in %.0f s", job_id, error.detail, retry_s)
                if self._closing.wait(retry_s):
                    return  # the agent is stopping: the job is still spec_received, the next agent starts it
                retry_s = min(retry_s * 2, self.pull_policy.max_retry_s)
            left = None if time_left is None else time_left - (time.monotonic() - began)
            if left is not None and left <= 0:
                detail = f"not started: its paid time ran out while its image was got ({time_left:.0f} s)"
                self._lose_before_start(job_id, gpus, detail, "deadline_passed")
                return
            try:
                self._start(job_id, spec, gpus, left)
            except AgentError:
                pass  # recorded lost by _start, with the reason
        except Exception as error:  # the thread must leave the job recorded, whatever broke
            log.exception("job %d: getting it started failed", job_id)
            self._lose_before_start(job_id, gpus, f"could not start: {type(error).__name__}: {error}", "start_failed")
        finally:
            with self._followed_lock:
                self._pulling.pop(job_id, None)

    def _lose_before_start(self, job_id: int, gpus: tuple[int, ...], detail: str, reason: str) -> None:
        self.gpus.release(gpus)
        try:
            self.store.mark_lost(job_id, detail, reason)
        except StoreConflict:
            return
        log.warning("job %d: lost before it started (%s)", job_id, detail)

    def _start(self, job_id: int, spec: AnyJobSpec, gpus: tuple[int, ...], time_left: float | None = None) -> JobRecord:
        try:
            running = self.runner.start(job_id, spec, gpus, max_seconds=time_left)
        except OSError as error:
            self.gpus.release(gpus)
            self.store.mark_lost(job_id, f"could not start: {error.strerror or error}", "start_failed")
            log.error("job %d: could not start: %s", job_id, error)
            raise AgentError(500, "start_failed", f"job {job_id} could not start: {error.strerror or error}") from None
        record = self.store.mark_running(job_id, running.pid, running.start_ticks, running.started_at)
        self._follow(job_id, running)
        return record

    def _follow(self, job_id: int, running: RunningJobHandle) -> None:
        item = _RunningJob(running)
        item.thread = threading.Thread(
            target=self._run_to_end, args=(job_id, running), name=f"job-{job_id}", daemon=True
        )
        with self._followed_lock:
            self._followed[job_id] = item
        item.thread.start()

    def _run_to_end(self, job_id: int, running: RunningJobHandle) -> None:
        try:
            result = running.wait()
            if self._jobs_handed_over.is_set():
                # This agent is closed and its store may be too: the next agent's recover finds
                # the job ended and records it from its files.
                log.info("job %d ended after the agent closed; the next agent records it", job_id)
                return
            self._record_end(result)
        except Exception as error:  # the job thread must record every ending, whatever broke
            log.exception("job %d: following it failed", job_id)
            record = self.store.get(job_id)
            if record is not None and record.state == JobStatus.RUNNING and self.runner.has_ended(job_id):
                self._finalize(record)  # e.g. an adopted job that ended before its meter started
            elif record is not None and record.state in (JobStatus.SPEC_RECEIVED, JobStatus.RUNNING):
                self.store.mark_lost(
                    job_id, f"the agent could not follow it: {type(error).__name__}: {error}", "follow_failed"
                )
        finally:
            self.gpus.release(running.gpus)
            with self._followed_lock:
                self._followed.pop(job_id, None)

    def _record_end(self, result: RunResult) -> None:
        self.store.mark_finished(
            result.job_id,
            finished_at=result.finished_at,
            exit_code=result.exit_code,
            stop_reason=result.stop_reason,
            output_limit_exceeded=result.output_limit_exceeded,
            result_hash=result.result_hash,
            evidence_hash=result.evidence_hash,
        )

    def _finalize(self, job: JobRecord) -> None:
        """Records a job that ended while no agent followed it as finished, from its files; lost
        when it left no ending (its process vanished) or its files cannot be read."""
        assert job.pid is not None and job.started_at is not None
        try:
            result = self.runner.finalize(
                job.job_id, parse_spec(job.spec or b""), job.pid, job.start_ticks, job.started_at
            )
        except ProcessGone as error:
            self._lose(job, str(error))
            return
        except (OSError, ValueError) as error:  # unreadable files: nothing to show for the job
            log.exception("job %d: recording its ending failed", job.job_id)
            self._lose(job, f"its ending could not be recorded: {type(error).__name__}: {error}")
            return
        self._record_end(result)
        self.gpus.release(job.gpus)

    def _lose(self, job: JobRecord, detail: str) -> None:
        self.gpus.release(job.gpus)
        self.store.mark_lost(job.job_id, detail, "vanished")
        log.warning("job %d: lost (%s)", job.job_id, detail)

    def _chain_job(self, job_id: int) -> OnChainJob | None:
        try:
            return self.jobs.get_job(job_id)
        except Exception as error:  # whatever the source raises, the caller gets a 503, not a 500
            log.warning("job source failed for job %d: %s", job_id, error)
            raise AgentError(503, "chain_unavailable", f"could not read job {job_id} from the chain") from None

    @staticmethod
    def _parse_spec(raw: bytes) -> AnyJobSpec:
        try:
            return parse_spec(raw)
        except SpecError as error:
            status = {"oversized": 413, "malformed_json": 400}.get(error.code, 422)
            raise AgentError(status, error.code, error.detail) from None

    def status(self, job_id: int) -> JobRecord:
        record = self.store.get(job_id)
        if record is None:
            raise AgentError(404, "unknown_job", f"this agent has no job {job_id}")
        return record

    def public_status(self, record: JobRecord) -> dict[str, Any]:
        """What anyone may see of a job: its record's public part, the runtime that runs it,
        whether its image is being got, and on a cluster the node it runs on."""
        with self._followed_lock:
            pulling = record.job_id in self._pulling
        status = {**record.public(), "runtime": self.runner.name, "pulling": pulling}
        placement = self.runner.placement(record.job_id)
        if placement is not None:
            status["placement"] = placement
        return status

    def usage(self, job_id: int) -> bytes:
        """The finished job's usage record (canonical JSON; keccak-256 of it is evidence_hash)."""
        record = self._finished(self.status(job_id))
        return self.runner.paths(record.job_id).usage.read_bytes()

    def result(self, job_id: int, authorization: str | None) -> bytes:
        """The result bundle, to the job's client only."""
        request = SignedRequest.from_header(authorization)
        signer = self.verifier.authenticate(request, action="get-result", job_id=job_id)
        record = self.status(job_id)
        self.verifier.check_signer(signer, record.client)
        self.verifier.consume(request, signer)
        self._finished(record)
        return self.runner.paths(job_id).result.read_bytes()

    @staticmethod
    def _finished(record: JobRecord) -> JobRecord:
        if record.state == JobStatus.LOST:
            raise AgentError(409, "job_lost", f"job {record.job_id} was lost: {record.detail}")
        if record.state != JobStatus.FINISHED:
            raise AgentError(409, "not_finished", f"job {record.job_id} is {record.state.value}")
        return record

    # ------------------------------------------------------------------ challenges

    def request_turn(self, max_wait_s: float | None = None) -> dict[str, Any]:
        """Waits for the prover's turn (gpumarket.provider.challenges); the token and how long it holds."""
        turn = self.challenges.request_turn(max_wait_s)
        return {"turn": turn.token, "valid_for_s": self.challenges.turn_valid_s}

    def answer_challenge(self, raw: bytes, turn: str | None = None) -> bytes:
        """A Challenge's wire bytes in, the Commitment's out."""
        return self.challenges.answer(raw, turn)

    def open_challenge(self, raw: bytes) -> bytes:
        """An OpeningRequest's wire bytes in, the Opening's out."""
        return self.challenges.open(raw)

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "provider": self.config.address,
            "chain_id": self.config.chain_id,
            "market": self.config.market,
            "gpu_class": self.config.gpu_class.name,
            "gpus": list(self.config.gpus),
            "free_gpus": self.gpus.free,
            "prover": self.prover.backend,
            **self.runner.offer(),
            "jobs": self.store.counts(),
        }
