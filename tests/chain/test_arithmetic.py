"""gpumarket.chain.arithmetic: the contracts' shares and collateral, rounded up as on chain."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gpumarket.chain.arithmetic import BPS, RATE_SCALE, ceil_bps, job_collateral

amounts = st.integers(min_value=0, max_value=10**30)
shares = st.integers(min_value=0, max_value=BPS)


@given(amounts, shares)
def test_a_share_rounds_up_and_never_exceeds_the_whole(amount, bps):
    share = ceil_bps(amount, bps)
    assert share * BPS >= amount * bps > (share - 1) * BPS or (amount * bps == 0 and share == 0)
    assert share <= amount


@given(amounts, shares, st.integers(min_value=0, max_value=10**6 * RATE_SCALE))
def test_collateral_is_the_exact_ceiling(value, bps, rate):
    collateral = job_collateral(value, bps, rate)
    scaled = value * bps * rate
    assert collateral * BPS * RATE_SCALE >= scaled > (collateral - 1) * BPS * RATE_SCALE or scaled == collateral == 0


def test_examples():
    assert job_collateral(10**15 * 600, 5_000, RATE_SCALE) == 3 * 10**17  # half the job's value, rate 1
    assert job_collateral(1, 1, 1) == 1  # any positive value locks at least one unit
    assert ceil_bps(1, 1) == 1 and ceil_bps(10_000, 250) == 250
