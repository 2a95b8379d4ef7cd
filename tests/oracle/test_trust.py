"""When an oracle may act on a challenge (gpumarket.oracle.trust): a good result at once, wrong
work at once, a slow one only when a fresh challenge confirms it and the oracle's own stalls
cannot explain it; and the scheduling watch sees a process that was really stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from gpumarket.measure.timing import Disturbance, SchedulingWatch
from gpumarket.measure.verifier import Reason, Verdict
from gpumarket.oracle.challenge import Bucket, ChallengeConfig, ChallengeOutcome
from gpumarket.oracle.trust import disturbed, measure_trusted

REQUIRED = 10  # GOPS: PASS >= 10, SLOW >= 5, FAIL below
OPS = 10 * 10**9  # one second of work at the floor
CONFIG = ChallengeConfig(max_challenges=4, confirm_delay_s=0.0)
CALM = Disturbance(max_stall_s=0.001, clock_jump_s=0.0, wakeups=100)


def sample(
    gops: float, *, stall_s: float = 0.001, jump_s: float = 0.0, reason: Reason | None = None, unreachable: bool = False
) -> ChallengeOutcome:
    """A challenge outcome as gpumarket.oracle.challenge builds it, for ``gops`` measured."""
    if unreachable:
        return ChallengeOutcome(0.0, error="ConnectionRefusedError: nothing listens", unreachable=True)
    elapsed = OPS / (gops * 10**9) if gops > 0 else 1.0
    verdict = Verdict(
        challenge_id="00" * 16,
        gpu_class="cpu-dev",
        gpu_count=1,
        passed=reason is None and gops >= REQUIRED,
        reason=reason,
        detail=str(reason or ""),
        ops=OPS,
        elapsed_seconds=elapsed,
        rtt_seconds=0.0,
        throughput_ops_per_second=gops * 10**9 if gops > 0 else None,
        required_ops_per_second=REQUIRED * 10**9,
        verify_cpu_seconds=0.0,
    )
    measured = gops if reason in (None, Reason.BELOW_FLOOR) else 0.0
    return ChallengeOutcome(measured, verdict, error=str(reason or ""), disturbance=Disturbance(stall_s, jump_s, 100))


def run_samples(*samples: ChallengeOutcome, good=frozenset({Bucket.PASS})):
    queue = list(samples)
    ran = []

    def run() -> ChallengeOutcome:
        ran.append(queue[0])
        return queue.pop(0)

    return measure_trusted(run, REQUIRED, good=good, config=CONFIG, sleep=lambda s: None), len(ran)


def test_a_good_result_is_taken_at_once_even_when_the_oracle_stalled():
    measurement, ran = run_samples(sample(12.0, stall_s=0.4))
    assert (measurement.bucket, ran) == (Bucket.PASS, 1)


def test_wrong_work_fails_at_once_whatever_the_timing():
    measurement, ran = run_samples(sample(50.0, reason=Reason.WRONG_VALUES))
    assert (measurement.bucket, ran, measurement.answered) == (Bucket.FAIL, 1, True)
    assert "invalid work" in measurement.detail


def test_a_slow_result_is_confirmed_by_a_fresh_challenge_before_it_counts():
    # Noise once: the confirming challenge passes.
    measurement, ran = run_samples(sample(3.0), sample(11.0))
    assert (measurement.bucket, ran) == (Bucket.PASS, 2)
    # Slow twice: the better of the two (a cheater is slow in both).
    measurement, ran = run_samples(sample(3.0), sample(7.0))
    assert (measurement.bucket, ran) == (Bucket.SLOW, 2)
    measurement, ran = run_samples(sample(2.0), sample(3.0))
    assert (measurement.bucket, ran) == (Bucket.FAIL, 2)
    # During a job SLOW is good enough: no confirmation needed.
    measurement, ran = run_samples(sample(7.0), good={Bucket.PASS, Bucket.SLOW})
    assert (measurement.bucket, ran) == (Bucket.SLOW, 1)


def test_samples_the_oracles_own_stall_could_explain_do_not_count():
    # 4 GOPS over 2.5 s; had the oracle not stalled 0.6 s at each end it could be 7.7: not trusted.
    stalled = sample(4.0, stall_s=0.6)
    assert "stalled" in disturbed(stalled, REQUIRED, CONFIG.max_clock_jump_s)
    assert disturbed(sample(4.0, stall_s=0.05), REQUIRED, CONFIG.max_clock_jump_s) == ""
    assert "clock jumped" in disturbed(sample(4.0, jump_s=5.0), REQUIRED, CONFIG.max_clock_jump_s)
    measurement, ran = run_samples(stalled, sample(4.0), stalled, sample(4.5))
    assert (measurement.bucket, ran) == (Bucket.FAIL, 4)  # only the two calm samples counted
    # Never two trusted samples: the oracle abstains, and the agent did answer.
    measurement, ran = run_samples(*(sample(4.0, stall_s=0.6) for _ in range(4)))
    assert (measurement.bucket, measurement.answered, ran) == (None, True, 4)
    assert "abstained" in measurement.detail


def test_no_answer_is_no_verdict_and_not_an_answer():
    measurement, ran = run_samples(sample(0, unreachable=True))
    assert (measurement.bucket, measurement.answered, ran) == (None, False, 1)
    # No answer while confirming a slow sample: still no verdict.
    measurement, _ = run_samples(sample(3.0), sample(0, unreachable=True))
    assert (measurement.bucket, measurement.answered) == (None, True)


_CHILD = """
import sys, time
from gpumarket.measure.timing import SchedulingWatch
with SchedulingWatch() as watch:
    print("watching", flush=True)
    time.sleep(float(sys.argv[1]))
print(watch.result.max_stall_s, watch.result.clock_jump_s, flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
def test_the_watch_sees_its_process_stopped():
    """A real process stopped (SIGSTOP) for 1.5 s inside its watch reports a stall of about that."""
    child = subprocess.Popen([sys.executable, "-c", _CHILD, "4"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "watching"
        os.kill(child.pid, signal.SIGSTOP)
        time.sleep(1.5)
        os.kill(child.pid, signal.SIGCONT)
        stall, jump = (float(x) for x in child.stdout.readline().split())
    finally:
        child.kill()
        child.wait()
    assert stall >= 1.4  # the stop; a loaded machine only adds to it
    assert jump < 1.0  # the wall clock did not jump: both clocks ran on


def test_a_calm_watch_reports_little():
    with SchedulingWatch() as watch:
        time.sleep(0.2)
    assert watch.result is not None and watch.result.wakeups > 0
    assert watch.result.clock_jump_s < 1.0


def test_silence_is_what_the_oracle_observed_not_its_own_absence():
    """The job loop's silence rule: an oracle back from a long stop whose first try fails does
    not find the agent silent; only enough unanswered tries over the whole period do, and the
    time the oracle did not ask (a gap over the limit between two tries) does not count."""
    from gpumarket.oracle.jobs import _Silence

    silence = _Silence()
    silence.missed(1_000.0, gap_limit=180.0)  # first try after the oracle itself was away for 1,000 s
    assert silence.observed(1_000.0, limit=180.0, min_tries=3) == 0.0
    silence.missed(1_100.0, gap_limit=180.0)
    silence.missed(1_179.0, gap_limit=180.0)
    assert silence.observed(1_179.0, limit=180.0, min_tries=3) == 0.0  # 179 s: not yet
    assert silence.observed(1_180.0, limit=180.0, min_tries=3) == 180.0
    silence.answered()
    assert silence.observed(5_000.0, limit=180.0, min_tries=3) == 0.0
    # One unanswered try, then the oracle is away (or its loop far behind) for 300 s, then two
    # more unanswered tries: three tries over 302 s, but nobody asked for 300 of them.
    silence.missed(6_000.0, gap_limit=180.0)
    silence.missed(6_300.0, gap_limit=180.0)
    silence.missed(6_302.0, gap_limit=180.0)
    assert silence.observed(6_302.0, limit=180.0, min_tries=3) == 0.0
    assert (silence.since, silence.tries) == (6_300.0, 2)


def test_a_busy_prover_ends_the_judgement_with_no_verdict_and_no_try():
    """No turn within the caller's turn_wait_s: no verdict, and not an unanswered try (busy, not
    unreachable); after a slow sample, the judgement ends too, to be asked for again whole."""
    busy = ChallengeOutcome(0.0, error="_Busy: no turn", busy=True)
    measurement, ran = run_samples(busy)
    assert (measurement.bucket, measurement.busy, measurement.answered, ran) == (None, True, False, 1)
    measurement, ran = run_samples(sample(7.0), busy)
    assert (measurement.bucket, measurement.busy, measurement.answered, ran) == (None, True, True, 2)
