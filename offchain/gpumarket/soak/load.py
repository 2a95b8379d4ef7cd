"""The load: a stream of real jobs, played by the soak as their client and as a keeper.

    stream = JobStream(client, providers, plan, gate=gate, echo=progress)
    stream.run(stop)            # until every job ended (or could not), see below

Jobs are the demo's workloads (gpumarket.demo.workloads: small real computations whose
results are checked), number i running workload i. Every `open_every`-th job is open to any
provider; the others are directed to the providers in turn. At most `concurrency` jobs are in
flight, and at most one per provider: an agent holds one job per GPU and skips a job offered
while it is busy (it does not queue it), so a job is directed only to a provider with none of
ours in flight, and an open job is created only once every earlier job has been accepted (so
it cannot take the provider a directed job is waiting for). Providers the chain says are
jailed or no longer verified are skipped.

Per job, as a client does (gpumarket.client.JobClient): create it, send the signed spec once a
provider accepted it, follow it to its end on chain, then read the agent's status (when it
finished, or why it lost the job) and fetch and check the result of a COMPLETED job. A step the
agent or the node refuses now (it is down: the faults) is retried on the next pass.

As a keeper it expires what the committee left: an OPEN job past its accept deadline, a
RUNNING one past started_at + max_duration + settle_grace. The run ends when every job has
ended and been looked at, when no provider can take jobs any more, or at `drain_deadline`.

Every pass runs under `gate`: the fault injector takes it to restart the node, so the soak's own
client is not what a node restart tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from web3.exceptions import ProviderConnectionError, TimeExhausted

from gpumarket.agentapi.errors import ClientError
from gpumarket.chain.errors import ChainError, ContractRevert
from gpumarket.chain.models import ZERO_ADDRESS, Job, JobState
from gpumarket.client.jobs import JobClient
from gpumarket.demo.workloads import workload

__all__ = ["JobRecord", "JobStream", "LoadPlan"]

log = logging.getLogger(__name__)

# What a node or an agent that is down (or restarting) raises: retried on the next pass.
_RETRYABLE = (ChainError, ClientError, OSError, ProviderConnectionError, TimeExhausted)


@dataclass(frozen=True)
class LoadPlan:
    jobs: int
    concurrency: int
    max_price: int  # per GPU-second
    max_duration: int
    gpu_class: int
    settle_grace_s: int  # the market's: when the keeper may expire a RUNNING job
    open_every: int = 4  # every n-th job is open to any provider (0: none)
    accept_window_s: int = 60
    poll_interval_s: float = 0.25
    after_end_timeout_s: float = 90.0  # to read the agent's status and fetch the result once a job ended

    def __post_init__(self) -> None:
        if self.jobs < 0 or self.concurrency < 1 or self.open_every < 0:
            raise ValueError(f"invalid load plan {self}")

    def is_open(self, index: int) -> bool:
        return self.open_every > 0 and index % self.open_every == self.open_every - 1


@dataclass
class JobRecord:
    """What the soak saw of one job (times are wall-clock seconds, time.time())."""

    index: int  # its number in the stream: its workload
    job_id: int
    workload: str
    directed_to: str | None  # a provider's name; None: open to any
    created_at: float
    provider: str | None = None  # who took it
    state: str = "OPEN"  # the chain's, last seen
    spec: str = "not sent"  # "sent", or the last reason it could not be
    ended_seen_at: float | None = None  # when the soak first saw it terminal on chain
    expired_by_keeper: bool = False
    agent_state: str | None = None  # the agent's status after the job ended
    agent_detail: str | None = None
    agent_finished_at: float | None = None
    result: str | None = None  # "ok", or what is wrong; None for a job with no result to check
    looked_at: bool = False  # the status was read and the result checked (or given up on)
    notes: list[str] = field(default_factory=list)

    @property
    def in_flight(self) -> bool:
        return self.ended_seen_at is None

    def note(self, text: str) -> None:
        if not self.notes or self.notes[-1] != text:  # a retried failure is noted once per change
            self.notes.append(text)


class JobStream:
    """See the module docstring. `providers`: name -> address of the providers to load."""

    def __init__(
        self,
        client: JobClient,
        providers: Mapping[str, str],
        plan: LoadPlan,
        *,
        gate: threading.Lock,
        echo: Callable[[str], None],
    ) -> None:
        self.client = client
        self.market = client.market
        self.providers = dict(providers)
        self.names = {address: name for name, address in self.providers.items()}
        self.plan = plan
        self.gate = gate
        self.echo = echo
        self.records: list[JobRecord] = []
        self.stopped_early: str | None = None  # why no more jobs could be created, if so
        self._turn = 0  # the round-robin pointer into the providers

    @property
    def created(self) -> int:
        return len(self.records)

    @property
    def finished(self) -> bool:
        all_created = self.created >= self.plan.jobs or self.stopped_early is not None
        return all_created and all(record.looked_at for record in self.records)

    def run(self, stop: threading.Event, drain_deadline: Callable[[], bool] = lambda: False) -> None:
        """Pass after pass until `finished`, `stop` is set, or `drain_deadline()` says the time
        for the jobs in flight is up (asked only once no more jobs will be created)."""
        while not stop.is_set() and not self.finished:
            with self.gate:
                self.step()
            if (self.created >= self.plan.jobs or self.stopped_early) and drain_deadline():
                log.warning(
                    "drain deadline reached with %d job(s) not looked at", sum(not r.looked_at for r in self.records)
                )
                return
            stop.wait(self.plan.poll_interval_s)

    def step(self) -> None:
        """One pass: follow every job in flight, look at the ended ones, create new ones."""
        try:
            chain_now = self.market.block_timestamp()
        except _RETRYABLE as error:
            log.info("node unreachable: %s", error)
            return
        for record in self.records:
            try:
                if record.in_flight:
                    self._follow(record, chain_now)
                elif not record.looked_at:
                    self._look_at(record)
            except _RETRYABLE as error:
                record.note(f"{type(error).__name__}: {error}")
                log.info("job %d: %s: %s", record.job_id, type(error).__name__, error)
        try:
            while self._create_next():
                pass
        except _RETRYABLE as error:
            log.info("creating a job: %s: %s", type(error).__name__, error)

    # ------------------------------------------------------------------ one job

    def _follow(self, record: JobRecord, chain_now: int) -> None:
        job = self.client.job(record.job_id)
        record.state = job.state.name
        if job.provider != ZERO_ADDRESS and record.provider is None:
            record.provider = self.names.get(job.provider, job.provider)
        if job.state == JobState.RUNNING and record.spec != "sent":
            self._send_spec(record)
        if job.state.terminal:
            record.ended_seen_at = time.time()
            self.echo(
                f"job {record.job_id} ({record.workload}, {record.provider or 'no provider'}) ended "
                f"{job.state.name}" + (" (expired by the keeper)" if record.expired_by_keeper else "")
            )
            self._look_at(record)
        elif self._expirable(job, chain_now):
            self._expire(record, job)

    def _send_spec(self, record: JobRecord) -> None:
        try:
            self.client.send_spec(record.job_id, workload(record.index).spec())
        except ClientError as error:  # the agent is down, or has not seen the acceptance yet
            record.spec = f"not sent yet: {error}"
            return
        record.spec = "sent"

    def _expirable(self, job: Job, chain_now: int) -> bool:
        if job.state == JobState.OPEN:
            return chain_now > job.accept_deadline
        return job.state == JobState.RUNNING and chain_now > job.end_deadline + self.plan.settle_grace_s

    def _expire(self, record: JobRecord, job: Job) -> None:
        try:
            self.client.expire(record.job_id)
        except ContractRevert as error:
            record.note(f"expire_job refused: {error.reason}")
            log.warning("job %d: expire_job refused: %s", record.job_id, error.reason)
            return
        record.expired_by_keeper = True
        self.echo(f"keeper: expired job {record.job_id} ({job.state.name} past its deadline)")

    def _look_at(self, record: JobRecord) -> None:
        """The agent's status after the end, and a COMPLETED job's checked result; retried until
        after_end_timeout_s (the agent may be down), then given up with what is known."""
        assert record.ended_seen_at is not None
        timed_out = time.time() - record.ended_seen_at > self.plan.after_end_timeout_s
        if record.provider is None:  # never accepted: no agent to ask
            record.looked_at = True
            return
        if record.agent_state is None:
            update = self.client.update(record.job_id)
            status = update.provider_status
            if status is None:
                if timed_out:
                    record.note(f"no status from the agent: {update.provider_error}")
                    record.looked_at = True
                return
            record.agent_state = update.provider_state
            record.agent_detail = status.get("detail")
            finished_at = status.get("finished_at")
            record.agent_finished_at = float(finished_at) if isinstance(finished_at, (int, float)) else None
        if record.state == JobState.COMPLETED.name and record.result is None:
            try:
                bundle = self.client.fetch_result(record.job_id)  # checked against the settled result_hash
            except ClientError as error:
                if not timed_out:
                    return
                record.result = f"not fetched: {error}"
            else:
                problem = workload(record.index).check(bundle)
                record.result = "ok" if problem is None else f"wrong: {problem}"
            if record.result != "ok":
                self.echo(f"job {record.job_id}: result {record.result}")
        record.looked_at = True

    # ------------------------------------------------------------------ new jobs

    def _create_next(self) -> bool:
        """Create the stream's next job if a provider can take it now; whether one was created."""
        self._adopt_unrecorded()
        index = self.created
        in_flight = [record for record in self.records if record.in_flight]
        if index >= self.plan.jobs or self.stopped_early is not None or len(in_flight) >= self.plan.concurrency:
            return False
        if any(record.state == JobState.OPEN.name and record.directed_to is None for record in in_flight):
            return False  # an open job not taken yet could take the provider a new job waits for
        if self.plan.is_open(index) and any(record.state == JobState.OPEN.name for record in in_flight):
            return False  # and an open job could take the provider a directed one waits for
        able = [name for name in self.providers if self._can_take_jobs(name)]
        if not able:
            self.stopped_early = "no provider can take jobs (every one jailed, unverified, or never verified)"
            self.echo(f"load: {self.stopped_early}; {index} job(s) created")
            return False
        busy = {name for record in in_flight for name in (record.directed_to, record.provider) if name}
        free = [name for name in able if name not in busy]
        if not free:
            return False
        target = None if self.plan.is_open(index) else self._next_in_turn(free)
        self._create(index, target)
        return True

    def _next_in_turn(self, free: list[str]) -> str:
        """The first free provider from the round-robin pointer on; the pointer moves past it."""
        order = list(self.providers)
        target = min(free, key=lambda name: (order.index(name) - self._turn) % len(order))
        self._turn = (order.index(target) + 1) % len(order)
        return target

    def _adopt_unrecorded(self) -> None:
        """A create_job whose answer was lost (the node or this machine too slow to reply) may
        still have been mined: the soak is the market's only client, so a job id beyond the
        records is the job it last tried to create, and is recorded now."""
        while self.market.job_count() > self.created:
            index = self.created
            job = self.client.job(index + 1)
            target = self.names.get(job.provider) if job.provider != ZERO_ADDRESS else None
            self.records.append(JobRecord(index, job.job_id, workload(index).name, target, time.time()))
            log.warning("job %d was created although its transaction reported an error", job.job_id)

    def _can_take_jobs(self, name: str) -> bool:
        address = self.providers[name]
        return not self.market.providers(address).jailed and self.market.is_verified(address)

    def _create(self, index: int, target: str | None) -> None:
        work = workload(index)
        job_id = self.client.create_job(
            work.spec(),
            gpu_class=self.plan.gpu_class,
            gpu_count=1,
            max_price=self.plan.max_price,
            max_duration=self.plan.max_duration,
            provider=None if target is None else self.providers[target],
            accept_window=self.plan.accept_window_s,
        )
        self.records.append(JobRecord(index, job_id, work.name, target, time.time()))
        self.echo(
            f"job {job_id} created ({work.name}, {'open' if target is None else 'for ' + target}); "
            f"{index + 1}/{self.plan.jobs}"
        )
