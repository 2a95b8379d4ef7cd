"""The client's side of a job: pay, create, hand over the spec, follow, fetch and check.

    client = JobClient(market.with_signer(key), key)
    job_id = client.create_job(spec, gpu_class=1, gpu_count=1, max_price=10**15,
                               max_duration=600, provider=offer.address)
    client.wait_running(job_id, timeout_s=120)        # JobNotAccepted -> client.expire(job_id)
    client.send_spec(job_id, spec)                     # signed put-spec to the provider's endpoint
    for update in client.follow(job_id, timeout_s=600): print(update.describe())
    bundle = client.fetch_result(job_id)               # verified ResultBundle (ResultMismatch if not)
    client.claim()                                     # refunds credited to the client
    ask_agents(market, jobs)                           # {job_id: AgentAnswer}, the agents asked in parallel

Every wait is bounded (timeout and poll interval). The provider's endpoint is read from
the chain (`Market.providers(job.provider).endpoint`) unless given. Requests to the agent
are signed with the client key (gpumarket.agentapi.auth.sign_request), which the agent
checks against the job's on-chain client. A result is accepted only when its files match
its manifest, the manifest hashes to the provider's reported result_hash, and, once the
job settled COMPLETED, to the result_hash in JobSettled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eth_account.messages import SignableMessage

from gpumarket.agentapi.auth import sign_request
from gpumarket.agentapi.client import HttpTimeouts, ProviderApi, in_parallel
from gpumarket.agentapi.errors import ClientError, ProviderRefused, ProviderUnreachable
from gpumarket.agentapi.result import BundleError, ResultBundle
from gpumarket.agentapi.spec import AnyJobSpec, spec_hash
from gpumarket.chain.events import JobCreated, JobSettled, scan_events
from gpumarket.chain.market import Market, TxResult
from gpumarket.chain.models import ZERO_ADDRESS, Job, JobState
from gpumarket.client.errors import FollowTimeout, JobNotAccepted, JobNotRunning, ResultMismatch
from gpumarket.signing.eip712 import Outcome

__all__ = ["PROVIDER_DONE_STATES", "AgentAnswer", "ClientKey", "JobClient", "JobUpdate", "ask_agents"]

log = logging.getLogger(__name__)

PROVIDER_DONE_STATES = frozenset({"finished", "lost"})


class ClientKey(Protocol):
    """The client's key: a gpumarket.chain.keys.ServiceKey or an eth_account LocalAccount."""

    address: str

    def sign_message(self, signable_message: SignableMessage) -> Any: ...


@dataclass(frozen=True)
class AgentAnswer:
    """What a job's provider agent said about it at GET /jobs/<id>/status.

    `status` is the agent's status document, None when it gave none: then `error` says why
    and `code` is the agent's refusal code ("unknown_job": it never received the spec) or
    "unreachable".
    """

    status: dict[str, Any] | None
    error: str | None = None
    code: str | None = None

    @classmethod
    def ask(cls, endpoint: str, job_id: int, timeouts: HttpTimeouts | None = None) -> AgentAnswer:
        """Ask the agent at `endpoint`; never raises (an agent that does not answer is an answer too)."""
        try:
            return cls(ProviderApi(endpoint, timeouts).status(job_id))
        except ProviderRefused as refused:  # the message, without the hint meant for the one who sent a request
            return cls(None, refused.args[0], refused.code)
        except ProviderUnreachable as unreachable:
            return cls(None, unreachable.args[0], "unreachable")

    @property
    def state(self) -> str | None:
        """accepted, spec_received, running, finished or lost (docs/provider-api.md); None: no answer."""
        return None if self.status is None else str(self.status.get("state"))

    @property
    def exit_code(self) -> int | None:
        value = None if self.status is None else self.status.get("exit_code")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def has_spec(self) -> bool | None:
        """Whether the agent holds the job's spec; None when it did not say (down, or another refusal)."""
        if self.state is not None:
            return self.state != "accepted"  # "accepted": its chain watcher saw the job, no spec came yet
        return False if self.code == "unknown_job" else None

    def describe(self) -> str:
        if self.state is None:
            return "has no spec" if self.has_spec is False else f"no answer: {self.error}"
        text = "has no spec (accepted)" if self.state == "accepted" else self.state
        if self.exit_code:
            text += f", command exit status {self.exit_code}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "has_spec": self.has_spec,
            "exit_code": self.exit_code,
            "error": self.error,
            "code": self.code,
            "status": self.status,
        }


@dataclass(frozen=True)
class JobUpdate:
    """What the chain and the provider say about a job at one moment."""

    job_id: int
    chain_state: JobState
    provider: str
    agent: AgentAnswer | None  # None: not asked (no provider yet)
    settled: JobSettled | None

    @property
    def provider_state(self) -> str | None:
        """The agent's state; None: no answer yet (spec not sent, or provider down)."""
        return None if self.agent is None else self.agent.state

    @property
    def provider_status(self) -> dict[str, Any] | None:
        return None if self.agent is None else self.agent.status

    @property
    def provider_error(self) -> str | None:
        """Why provider_state is None, when the provider was asked."""
        return None if self.agent is None else self.agent.error

    @property
    def done(self) -> bool:
        """The job's work is over: settled/ended on chain, or the agent finished or lost it."""
        return self.chain_state.terminal or self.provider_state in PROVIDER_DONE_STATES

    def key(self) -> tuple[object, ...]:
        return (self.chain_state, self.provider_state, self.provider_error)

    def describe(self) -> str:
        text = f"job {self.job_id}: chain {self.chain_state.name}"
        if self.provider_state is not None:
            text += f", provider {self.provider_state}"
        elif self.provider_error:
            text += f", provider: {self.provider_error}"
        if self.settled is not None:
            text += f", settled {self.settled.outcome.name} ({self.settled.gpu_seconds} gpu-s)"
        exit_code = None if self.agent is None else self.agent.exit_code
        if exit_code:  # a command that failed (127: not found) still "completes": say so
            text += f", command exit status {exit_code}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "chain_state": self.chain_state.name,
            "provider": self.provider,
            "provider_state": self.provider_state,
            "provider_status": self.provider_status,
            "provider_error": self.provider_error,
            "settlement": None
            if self.settled is None
            else {
                "outcome": self.settled.outcome.name,
                "gpu_seconds": self.settled.gpu_seconds,
                "provider_payment": str(self.settled.provider_payment),
                "client_refund": str(self.settled.client_refund),
                "slashed": str(self.settled.slashed),
                "result_hash": "0x" + self.settled.result_hash.hex(),
            },
        }


def _hash_of(status: dict[str, Any] | None) -> bytes | None:
    value = None if status is None else status.get("result_hash")
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 66:
        return None
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        return None


class JobClient:
    """A client account's jobs on one market (`market` must carry the client key as signer)."""

    def __init__(
        self,
        market: Market,
        key: ClientKey,
        *,
        timeouts: HttpTimeouts | None = None,
        poll_interval_s: float = 0.5,
        from_block: int = 0,
    ) -> None:
        if market.sender is None:
            raise ValueError("JobClient needs a Market with a signer (market.with_signer(key))")
        if market.sender != key.address:
            raise ValueError("the market's signer and the request key must be the same account")
        self.market = market
        self._key = key
        self.address: str = key.address
        self.timeouts = timeouts or HttpTimeouts()
        self.poll_interval_s = poll_interval_s
        self.from_block = from_block  # where event scans start (the deployment block)

    def __repr__(self) -> str:
        return f"JobClient({self.address} on {self.market.address})"

    # ------------------------------------------------------------------ chain

    def ensure_allowance(self, amount: int) -> TxResult | None:
        """Approve exactly `amount` of the payment token for the market when the allowance is
        below it (never an unlimited allowance: the market holds no more than the job needs)."""
        token = self.market.payment_token
        if token.allowance(self.address, self.market.address) >= amount:
            return None
        log.info("approving %d of the payment token for %s", amount, self.market.address)
        return token.approve(self.market.address, amount)

    def create_job(
        self,
        spec: AnyJobSpec,
        *,
        gpu_class: int,
        gpu_count: int,
        max_price: int,
        max_duration: int,
        provider: str | None = None,
        accept_window: int = 600,
    ) -> int:
        """Escrow max_price * gpu_count * max_duration and create the job; returns its id.
        `provider` directs it to one provider (None: any may accept)."""
        if accept_window < 1:
            raise ValueError("accept_window must be positive")
        self.ensure_allowance(max_price * gpu_count * max_duration)
        # The contract measures the window from the block that creates the job. A local node that
        # mines only on transactions (anvil) can have its latest block minutes old, and the next
        # block takes the wall clock's time: count from whichever is later.
        deadline = max(self.market.block_timestamp(), int(time.time())) + accept_window
        result = self.market.create_job(
            gpu_class, gpu_count, max_price, max_duration, spec_hash(spec), deadline, provider=provider
        )
        job_id = result.event(JobCreated).job_id
        log.info("created job %d (tx %s)", job_id, result.tx_hash)
        return job_id

    def job(self, job_id: int) -> Job:
        job = self.market.get_job(job_id)
        if not job.exists:
            raise JobNotRunning(job_id, "unknown", "check the job id and the --deployment")
        return job

    def wait_running(self, job_id: int, *, timeout_s: float = 120.0) -> Job:
        """Poll until a provider accepted the job. JobNotAccepted when the accept deadline
        passed (then `expire` refunds) or the wait timed out; JobNotRunning if it ended."""
        stop = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if job.state == JobState.RUNNING:
                return job
            if job.state != JobState.OPEN:
                raise JobNotRunning(job_id, job.state.name)
            if self.market.block_timestamp() > job.accept_deadline:
                raise JobNotAccepted(job_id, job.accept_deadline, deadline_passed=True)
            if time.monotonic() >= stop:
                raise JobNotAccepted(job_id, job.accept_deadline, deadline_passed=False)
            time.sleep(self.poll_interval_s)

    def expire(self, job_id: int) -> TxResult:
        return self.market.expire_job(job_id)

    def cancel(self, job_id: int) -> TxResult:
        """Cancel an OPEN job (escrow refunded to the claimable balance); JobNotRunning otherwise."""
        job = self.job(job_id)
        if job.state != JobState.OPEN:
            raise JobNotRunning(job_id, job.state.name, "only an open job can be cancelled")
        return self.market.cancel_job(job_id)

    def claim(self) -> dict[str, int]:
        """Claim everything credited to the client, per token address; {} when nothing is."""
        claimed: dict[str, int] = {}
        for token in (self.market.payment_token, self.market.stake_token):
            amount = self.market.claimable(token, self.address)
            if amount:
                self.market.claim(token)
                claimed[token.address] = amount
        return claimed

    def settlement(self, job_id: int) -> JobSettled | None:
        for event in scan_events(self.market, [JobSettled.name], from_block=self.from_block):
            if isinstance(event, JobSettled) and event.job_id == job_id:
                return event
        return None

    # ------------------------------------------------------------------ provider

    def _api(self, job: Job, endpoint: str | None) -> ProviderApi:
        if endpoint is None:
            if job.provider == ZERO_ADDRESS:
                raise JobNotRunning(job.job_id, job.state.name, "wait until a provider accepts it")
            endpoint = self.market.providers(job.provider).endpoint
        return ProviderApi(endpoint, self.timeouts)

    def send_spec(self, job_id: int, spec: AnyJobSpec, endpoint: str | None = None) -> dict[str, Any]:
        """PUT the spec to the provider, signed; its answer. The job must be RUNNING."""
        job = self.job(job_id)
        if job.state != JobState.RUNNING:
            raise JobNotRunning(job_id, job.state.name, "send the spec once a provider accepted the job")
        if spec_hash(spec) != job.spec_hash:
            raise ClientError(
                f"job {job_id}: this spec does not hash to the job's spec_hash",
                "send the spec the job was created with",
            )
        signed = sign_request(
            self._key,
            action="put-spec",
            chain_id=self.market.chain_id,
            market=self.market.address,
            job_id=job_id,
            spec_hash=job.spec_hash,
        )
        answer = self._api(job, endpoint).put_spec(job_id, spec.canonical_bytes(), signed.to_header())
        log.info("job %d: spec sent (started=%s)", job_id, answer.get("started"))
        return answer

    def update(self, job_id: int, endpoint: str | None = None) -> JobUpdate:
        """One look at the job on the chain and at the provider (a provider error is reported, not raised)."""
        job = self.job(job_id)
        agent = None if job.provider == ZERO_ADDRESS else self.ask_agent(job, endpoint)
        settled = self.settlement(job_id) if job.state in (JobState.COMPLETED, JobState.FAILED) else None
        return JobUpdate(job_id=job_id, chain_state=job.state, provider=job.provider, agent=agent, settled=settled)

    def ask_agent(self, job: Job, endpoint: str | None = None) -> AgentAnswer:
        """The job's provider agent's view of it (an unreachable agent is an answer, not an error)."""
        return AgentAnswer.ask(endpoint or self.market.providers(job.provider).endpoint, job.job_id, self.timeouts)

    def follow(
        self, job_id: int, *, endpoint: str | None = None, timeout_s: float = 600.0, until_settled: bool = False
    ) -> Iterator[JobUpdate]:
        """Yield each change until the job is done (`JobUpdate.done`; with `until_settled`,
        until the chain state is terminal). FollowTimeout after `timeout_s`."""
        stop = time.monotonic() + timeout_s
        last: tuple[object, ...] | None = None
        while True:
            update = self.update(job_id, endpoint)
            if update.key() != last:
                last = update.key()
                yield update
            if update.chain_state.terminal or (update.done and not until_settled):
                return
            if time.monotonic() >= stop:
                raise FollowTimeout(job_id, timeout_s)
            time.sleep(self.poll_interval_s)

    def fetch_result(self, job_id: int, endpoint: str | None = None) -> ResultBundle:
        """The verified result bundle (see the module docstring); ResultMismatch when it does not verify."""
        job = self.job(job_id)
        api = self._api(job, endpoint)
        reported = _hash_of(api.status(job_id))
        if reported is None:
            raise ResultMismatch(job_id, "the provider reports no result_hash (not finished?)")
        signed = sign_request(
            self._key, action="get-result", chain_id=self.market.chain_id, market=self.market.address, job_id=job_id
        )
        raw = api.result(job_id, signed.to_header())
        try:
            bundle = ResultBundle.parse(raw)
            bundle.verify(reported)
        except BundleError as error:
            raise ResultMismatch(job_id, str(error)) from None
        settled = self.settlement(job_id) if job.state == JobState.COMPLETED else None
        if settled is not None and settled.outcome == Outcome.COMPLETED and settled.result_hash != bundle.result_hash:
            raise ResultMismatch(
                job_id, f"on-chain result_hash 0x{settled.result_hash.hex()} != bundle 0x{bundle.result_hash.hex()}"
            )
        return bundle


def ask_agents(market: Market, jobs: Sequence[Job], timeouts: HttpTimeouts | None = None) -> dict[int, AgentAnswer]:
    """Each job's provider agent's view of it, the agents asked in parallel (jobs without a provider are left out)."""
    taken = [job for job in jobs if job.provider != ZERO_ADDRESS]
    endpoints = {provider: market.providers(provider).endpoint for provider in {job.provider for job in taken}}

    answers = in_parallel(lambda job: AgentAnswer.ask(endpoints[job.provider], job.job_id, timeouts), taken)
    return {job.job_id: answer for job, answer in zip(taken, answers, strict=True)}
