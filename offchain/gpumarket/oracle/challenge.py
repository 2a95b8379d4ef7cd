"""One timed throughput challenge of a provider agent over HTTP, and what its result means.

    outcome = challenge_provider(endpoint, gpu_class, gpu_count, config=ChallengeConfig())
    bucket, value = canonical_throughput(outcome.measured_gops, required_gops)

The exchange (gpumarket.measure.verifier on this oracle's own monotonic clock): RTT first
(best of ``GET {endpoint}/health``); a **turn** at the agent's prover (``POST
{endpoint}/challenge/turn``, first come first served among the oracles: the waiting happens
before the clock starts, gpumarket.provider.challenges); then ``POST {endpoint}/challenge``
with the Challenge bytes and the turn (t0 as it is sent), the Commitment back (t1),
``POST {endpoint}/challenge/open`` with the OpeningRequest, the Opening back, judged. An agent
without turns (404 on the turn route) is challenged directly; a busy answer (503) then gets a
fresh challenge after a short wait, so waiting is never timed as work either. A caller that
has other work (the job loop) sets ``turn_wait_s``: past it without a turn, the challenge
hands back a **busy** outcome instead of waiting on, and the caller asks again later.

While the challenge is timed, a :class:`gpumarket.measure.timing.SchedulingWatch` records how
long this oracle's own process was held up: gpumarket.oracle.trust uses it to refuse a slow
verdict that the oracle's own delay could explain.

What an outcome is:

- **valid work**, timed: ``measured_gops`` > 0 (passed, or below the floor);
- **proven invalid**: the opened tiles are wrong (values, fingerprints, proofs, another root,
  other tiles): evidence anyone can re-check, whatever the load;
- **busy**: no turn within ``turn_wait_s`` (the prover was other oracles' all along): no try
  was made, so it says nothing about the hardware and does not run any silence clock;
- **no answer** (``unreachable``): anything else: no connection, a timeout, busy every time
  for ``turn_give_up_s``, an HTTP error, an answer over the size cap, a malformed message, a
  refusal, an answer too fast to time. None of these says anything about the hardware; they
  only run the caller's silence clock.

Units: the contract compares ``measured_throughput`` with ``class_floor(class) * gpu_count``
in **GOPS** (10^9 ops/s); the verifier measures ops/s.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from gpumarket.chain.arithmetic import BPS
from gpumarket.measure.classes import class_by_id
from gpumarket.measure.messages import TURN_HEADER, Commitment, Opening, OpeningRequest
from gpumarket.measure.timing import Disturbance, SchedulingWatch
from gpumarket.measure.verifier import ChallengeRejected, Reason, Verdict, Verifier
from gpumarket.web.client import Timeouts, WebClient, WebError

__all__ = [
    "Bucket",
    "ChallengeConfig",
    "ChallengeOutcome",
    "PROVEN_INVALID",
    "canonical_throughput",
    "canonical_value",
    "challenge_provider",
]

log = logging.getLogger(__name__)

GOPS = 10**9

SPOOF_THRESHOLD_BPS = 5_000  # contracts/modules/verification.vy: below this share of required, slash

# Verdicts whose evidence anyone can check again: the provider sent wrong work.
PROVEN_INVALID = frozenset(
    {
        Reason.ROOT_CHANGED,
        Reason.WRONG_TILES,
        Reason.MALFORMED_TILE,
        Reason.WRONG_FINGERPRINT,
        Reason.WRONG_PROOF,
        Reason.WRONG_VALUES,
    }
)


class Bucket(StrEnum):
    PASS = "pass"
    SLOW = "slow"
    FAIL = "fail"


def canonical_value(bucket: Bucket, required_gops: int) -> int:
    """The measured_throughput signed for a bucket: PASS ``required`` (verifies), SLOW
    ``ceil(required / 2)`` (valid work below the floor: unverifies without slashing), FAIL
    ``0`` (invalid, or below half the floor: slashes)."""
    if bucket is Bucket.PASS:
        return required_gops
    if bucket is Bucket.SLOW:
        return -(-required_gops * SPOOF_THRESHOLD_BPS // BPS)  # ceil: the least value not slashed
    return 0


def canonical_throughput(measured_gops: float, required_gops: int) -> tuple[Bucket, int]:
    """The bucket of a measurement and the canonical value signed for it (``canonical_value``)."""
    if measured_gops >= required_gops:
        bucket = Bucket.PASS
    elif measured_gops > 0 and measured_gops >= canonical_value(Bucket.SLOW, required_gops):
        bucket = Bucket.SLOW
    else:
        bucket = Bucket.FAIL
    return bucket, canonical_value(bucket, required_gops)


@dataclass(frozen=True)
class ChallengeConfig:
    """How one challenge is run, and how many an oracle runs before it trusts a slow verdict."""

    request_timeout_s: float = 30.0
    turn_give_up_s: float = 60.0  # asking for a turn this long without one: no answer
    # None: wait for a turn up to turn_give_up_s. Set: give up after this long with a busy
    # outcome (the caller's worker goes back to other work; the caller counts the whole wait).
    turn_wait_s: float | None = None
    busy_wait_s: float = 0.25  # between tries at an agent without turns that answers 503
    rtt_samples: int = 3
    max_response_bytes: int = 64 << 20
    # gpumarket.oracle.trust: a result below what passes is confirmed by a fresh challenge;
    # at most this many challenges in one judgement, this far apart.
    max_challenges: int = 4
    confirm_delay_s: float = 1.0
    max_clock_jump_s: float = 1.0  # the wall clock moved this much more than the monotonic one


@dataclass(frozen=True)
class ChallengeOutcome:
    """One challenge's result: ``measured_gops`` is 0 unless valid work came back, timed."""

    measured_gops: float
    verdict: Verdict | None = None
    error: str = ""  # why there was no usable answer
    # No usable answer at all (see the module docstring): says nothing about the hardware.
    unreachable: bool = False
    # No turn within turn_wait_s: no try was made (see the module docstring).
    busy: bool = False
    disturbance: Disturbance | None = None  # this oracle's own stalls while it timed the answer

    @property
    def proven_invalid(self) -> bool:
        return self.verdict is not None and self.verdict.reason in PROVEN_INVALID


class _Busy(Exception):
    """The prover is not ours now: the agent answered 503 (another oracle's challenge), or 409
    ``turn_expired`` (our turn lapsed before our challenge came: this oracle was late)."""


class _NoTurns(Exception):
    """The agent has no turn route (an older agent): challenge it directly."""


class _Agent:
    """The agent's challenge routes over gpumarket.web.client.

    A fresh connection for every request (``keepalive=False``), as before: the RTT pings and the
    timed challenge each pay one connection setup, so the RTT subtracted from the challenge's time
    is measured the same way as the challenge itself, and no request finds a pooled connection the
    agent closed meanwhile (a reconnect inside the timed window would be timed as work)."""

    def __init__(self, endpoint: str, config: ChallengeConfig) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._web = WebClient(
            self.endpoint,
            timeouts=Timeouts(config.request_timeout_s, config.request_timeout_s),
            max_response_bytes=config.max_response_bytes,
            keepalive=False,
        )

    def close(self) -> None:
        self._web.close()

    def request(self, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
        """POST ``body`` (GET without one) to ``path``; the 2xx answer's body. _Busy when the prover
        is another's, _NoTurns for an agent without the turn route, WebError otherwise."""
        all_headers = {"Content-Type": "application/json"} if body else {}
        all_headers.update(headers or {})
        answer = self._web.request("POST" if body is not None else "GET", path, content=body, headers=all_headers)
        if answer.ok:
            return answer.body
        refused = answer.refusal()
        if answer.status == 503 or (answer.status == 409 and refused.code == "turn_expired"):
            raise _Busy(f"{path}: HTTP {answer.status} {refused.code}: {refused.detail}")
        if answer.status == 404 and path == "/challenge/turn":
            raise _NoTurns(path)
        raise refused


def _turn_wait(config: ChallengeConfig) -> float:
    """How long one challenge asks for a turn before it gives up (busy or no answer)."""
    if config.turn_wait_s is None:
        return config.turn_give_up_s
    return min(config.turn_wait_s, config.turn_give_up_s)


# A turn's answer must reach us before our request times out: the agent waits this much less.
TURN_ANSWER_MARGIN_S = 1.0


def _turn_body(give_up: float, config: ChallengeConfig) -> bytes:
    """How long the agent may keep this turn request waiting: until our read would time out, or
    we give up, less the margin. A turn granted to a request we abandoned would hold the prover
    for nobody while our next request queued behind it."""
    wait = min(config.request_timeout_s, give_up - time.monotonic()) - TURN_ANSWER_MARGIN_S
    return json.dumps({"max_wait_s": max(wait, 0.1)}).encode()


def _turn(agent: _Agent, give_up: float, config: ChallengeConfig, sleep: Callable[[float], None]) -> dict[str, str]:
    """The header of a granted turn; {} for an agent without turns. _Busy once ``give_up`` passed."""
    while True:
        try:
            return {TURN_HEADER: str(json.loads(agent.request("/challenge/turn", _turn_body(give_up, config)))["turn"])}
        except _NoTurns:
            return {}
        except _Busy:
            if time.monotonic() >= give_up:
                raise _Busy(f"no turn at the agent's prover within {_turn_wait(config):.0f} s") from None
            sleep(config.busy_wait_s)


def _commit(
    agent: _Agent,
    verifier: Verifier,
    cls: object,
    gpu_count: int,
    rtt: float,
    config: ChallengeConfig,
    sleep: Callable[[float], None],
) -> tuple[OpeningRequest, SchedulingWatch]:
    """Issue (t0), send, receive the commitment (t1), all under a SchedulingWatch; a turn first,
    and again after a busy answer, until ``turn_wait_s`` (default ``turn_give_up_s``) has passed."""
    give_up = time.monotonic() + _turn_wait(config)
    while True:
        turn = _turn(agent, give_up, config, sleep)
        with SchedulingWatch() as watch:
            challenge = verifier.issue(cls, gpu_count, rtt_seconds=rtt)  # type: ignore[arg-type]
            try:
                # t1 is taken in receive_commitment, before the watch stops.
                opening_request = verifier.receive_commitment(
                    Commitment.parse(agent.request("/challenge", challenge.to_bytes(), turn))
                )
            except _Busy as busy:
                opening_request, last_busy = None, busy
        if opening_request is not None:
            return opening_request, watch
        if time.monotonic() >= give_up:
            raise _Busy(f"agent busy for {_turn_wait(config):.0f} s (last: {last_busy})")
        sleep(config.busy_wait_s)


def challenge_provider(
    endpoint: str,
    gpu_class: int,
    gpu_count: int,
    *,
    config: ChallengeConfig = ChallengeConfig(),
    verifier: Verifier | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ChallengeOutcome:
    """Run one timed throughput challenge against a provider agent's HTTP API (see the module docstring)."""
    verifier = verifier or Verifier()
    agent = _Agent(endpoint, config)
    try:
        cls = class_by_id(gpu_class)
        rtt = verifier.measure_rtt(lambda: agent.request("/health"), samples=config.rtt_samples)
        opening_request, watch = _commit(agent, verifier, cls, gpu_count, rtt, config, sleep)
        opening = Opening.parse(agent.request("/challenge/open", opening_request.to_bytes()))
        verdict = verifier.check_opening(opening)
    except (_Busy, WebError, OSError, RuntimeError, ValueError, ChallengeRejected) as exc:
        if isinstance(exc, _Busy) and config.turn_wait_s is not None:  # the caller asks again later
            log.info("challenge of %s: no turn yet: %s", endpoint, exc)
            return ChallengeOutcome(0.0, error=f"_Busy: {exc}", busy=True)
        log.warning("challenge of %s got no usable answer: %s", endpoint, exc)
        return ChallengeOutcome(0.0, error=f"{type(exc).__name__}: {exc}", unreachable=True)
    finally:
        agent.close()
    if verdict.reason in PROVEN_INVALID:
        log.warning("challenge of %s: invalid work: %s", endpoint, verdict.detail)
        return ChallengeOutcome(0.0, verdict, error=verdict.detail, disturbance=watch.result)
    if verdict.reason not in (None, Reason.BELOW_FLOOR):  # untimeable: too fast to time against the RTT
        return ChallengeOutcome(0.0, verdict, error=verdict.detail, unreachable=True, disturbance=watch.result)
    gops = (verdict.throughput_ops_per_second or 0.0) / GOPS
    log.info("challenge of %s: %s, %.2f GOPS", endpoint, verdict.reason or "passed", gops)
    return ChallengeOutcome(gops, verdict, disturbance=watch.result)
