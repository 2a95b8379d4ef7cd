"""LateSkippingProver: the demo's cheater is honest for its first N challenges, then skips work.

Each challenge is a real cpu-dev round trip through the verifier (every message as wire bytes).
"""

from __future__ import annotations

import numpy as np
import pytest

from gpumarket.measure.classes import CPU_DEV
from gpumarket.measure.local import run_round_trip
from gpumarket.measure.provers.cheats import LateSkippingProver, skipping_pass_probability
from gpumarket.measure.verifier import Reason, Verifier

# Reasons that say the work itself was wrong (a skipped tile), not merely slow.
NOT_DETECTION = (None, Reason.BELOW_FLOOR, Reason.UNTIMEABLE)
Q = 0.25


def test_honest_for_the_first_challenges_then_caught():
    prover = LateSkippingProver(Q, honest_challenges=2, rng=np.random.default_rng(7))
    verifier = Verifier()
    verdicts = [run_round_trip(verifier, prover, CPU_DEV)[0] for _ in range(3)]
    # Honest answers are never judged wrong (on a loaded machine one may only be slow).
    assert [v.reason in NOT_DETECTION for v in verdicts[:2]] == [True, True], [v.detail for v in verdicts]
    # The third skips 3/4 of the tiles: it passes with probability C(qL, k) / C(L, k).
    tiles = CPU_DEV.tiles_per_round * CPU_DEV.rounds
    assert skipping_pass_probability(tiles, round(Q * tiles), CPU_DEV.k) < 1e-9
    assert not verdicts[2].passed and verdicts[2].reason not in NOT_DETECTION, verdicts[2].detail
    assert prover.committed == 3


def test_zero_honest_challenges_skips_from_the_first():
    prover = LateSkippingProver(0.0, honest_challenges=0)
    verdict, _ = run_round_trip(Verifier(), prover, CPU_DEV)
    assert verdict.reason not in NOT_DETECTION, verdict.detail


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_honest_challenges_must_be_a_count(bad):
    with pytest.raises(ValueError, match="honest_challenges must be an int >= 0"):
        LateSkippingProver(0.5, honest_challenges=bad)


def test_q_is_checked_as_for_the_skipping_prover():
    with pytest.raises(ValueError, match=r"q must be in \[0, 1\]"):
        LateSkippingProver(1.5, honest_challenges=1)
