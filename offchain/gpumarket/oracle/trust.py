"""When an oracle may act on a challenge: a verdict that costs money must survive a second look.

    measurement = measure_trusted(lambda: challenge_provider(...), required_gops,
                                  good={Bucket.PASS}, config=ChallengeConfig())

One challenge is one sample of a noisy quantity: the provider's machine may be busy for a
moment, and so may the oracle's. So, per judgement (a hardware check, or one of a job's start,
heartbeat and end challenges):

- A result in ``good`` (what the caller needs: PASS for a hardware report, PASS or SLOW during
  a job) is taken at once: delays only ever make a measurement slower, so a good result under
  load is still good.
- **Proven invalid** work (wrong tiles, values, proofs: gpumarket.oracle.challenge) is taken at
  once as FAIL: it is evidence anyone can check again, and load does not change values.
- A **slow** result (below ``good``) is first checked against this oracle's own delays: if the
  measurement with the longest stall of this oracle's process removed at both ends of the
  timed window (``2 x max_stall``) would land in a better bucket, or the wall clock jumped, the
  oracle cannot tell its delay from the provider's slowness: the sample is *disturbed* and
  does not count. An undisturbed slow sample is then **confirmed by a fresh challenge**: the
  verdict is the better bucket of two undisturbed samples (a cheater is slow in both; noise
  rarely is twice).
- A **busy** prover (no turn within the caller's ``turn_wait_s``) ends the judgement with no
  verdict and no try: the caller asks again later, and no silence clock runs.
- No answer at all ends the judgement with no verdict (the caller's silence clock runs); so
  does running out of ``max_challenges`` without two undisturbed samples (the oracle abstains:
  the agent did answer, with valid work, so this is not silence either).

Rates, for an honest provider whose single sample falls below ``good`` with probability p
(independently): one oracle reaches a slow verdict with probability about p^2; a slashing
report needs a quorum of oracles each reaching FAIL, so with a 2-of-3 committee about 3 p^4.
A cheater gains nothing from the second look: a device cannot be measured faster than it is
(every delay adds time), and wrong work fails at once, as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from gpumarket.oracle.challenge import GOPS, Bucket, ChallengeConfig, ChallengeOutcome, canonical_throughput

__all__ = ["Measurement", "disturbed", "measure_trusted"]

log = logging.getLogger(__name__)

_RANK = {Bucket.FAIL: 0, Bucket.SLOW: 1, Bucket.PASS: 2}
_DEFAULT_CHALLENGE = ChallengeConfig()


@dataclass(frozen=True)
class Measurement:
    """A judgement: ``bucket`` None means no verdict (see ``answered`` for why)."""

    bucket: Bucket | None
    outcome: ChallengeOutcome  # the last challenge run
    challenges: int  # how many were run
    answered: bool  # the agent answered with work (valid or proven invalid) at least once
    detail: str = ""
    busy: bool = False  # ended by a busy prover: the judgement is to be asked for again

    @property
    def measured_gops(self) -> float:
        return self.outcome.measured_gops


def disturbed(outcome: ChallengeOutcome, required_gops: int, max_clock_jump_s: float) -> str:
    """Why this slow sample cannot be trusted, or "" when it can."""
    watch, verdict = outcome.disturbance, outcome.verdict
    if watch is None or verdict is None:
        return ""
    if watch.clock_jump_s > max_clock_jump_s:
        return f"the wall clock jumped {watch.clock_jump_s:.1f} s while the answer was timed"
    # The most the provider could have done if each end of the window lost this oracle's longest stall.
    timed = verdict.elapsed_seconds - verdict.rtt_seconds - 2 * watch.max_stall_s
    if timed <= 0:
        return f"this oracle stalled {watch.max_stall_s:.3f} s, as long as the answer took"
    best_case, _ = canonical_throughput(verdict.ops / timed / GOPS, required_gops)
    measured, _ = canonical_throughput(outcome.measured_gops, required_gops)
    if best_case is not measured:
        return (
            f"this oracle stalled up to {watch.max_stall_s:.3f} s while timing it: "
            f"{outcome.measured_gops:.2f} GOPS measured could be {best_case.value}"
        )
    return ""


def measure_trusted(
    run: Callable[[], ChallengeOutcome],
    required_gops: int,
    *,
    good: Collection[Bucket],
    config: ChallengeConfig = _DEFAULT_CHALLENGE,
    sleep: Callable[[float], None] = time.sleep,
) -> Measurement:
    """Run challenges until a verdict can be trusted (see the module docstring)."""
    slow: list[Bucket] = []
    answered = False
    outcome = ChallengeOutcome(0.0, error="no challenge was run", unreachable=True)
    for count in range(1, config.max_challenges + 1):
        if count > 1:
            sleep(config.confirm_delay_s)
        outcome = run()
        if outcome.busy:
            return Measurement(None, outcome, count, answered, f"prover busy: {outcome.error}", busy=True)
        if outcome.unreachable:
            return Measurement(None, outcome, count, answered, f"no answer: {outcome.error}")
        answered = True
        if outcome.proven_invalid:
            return Measurement(Bucket.FAIL, outcome, count, answered, f"invalid work: {outcome.error}")
        bucket, _ = canonical_throughput(outcome.measured_gops, required_gops)
        if bucket in good:
            return Measurement(bucket, outcome, count, answered)
        why = disturbed(outcome, required_gops, config.max_clock_jump_s)
        if why:
            log.info("a %s sample is not trusted (%s): challenging again", bucket, why)
            continue
        slow.append(bucket)
        if len(slow) == 2:
            verdict = max(slow, key=_RANK.__getitem__)
            return Measurement(verdict, outcome, count, answered, f"{verdict} in two undisturbed challenges")
        log.info(
            "%s at %.2f GOPS (%d required): confirming with a fresh challenge",
            bucket,
            outcome.measured_gops,
            required_gops,
        )
    return Measurement(
        None,
        outcome,
        config.max_challenges,
        answered,
        f"abstained: no two undisturbed samples in {config.max_challenges} challenges",
    )
