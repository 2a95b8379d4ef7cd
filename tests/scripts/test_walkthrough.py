"""`ape run walkthrough`: the whole story runs, prints real gas and balances, and fails loudly."""

from __future__ import annotations

import re

from gpumarket.chain import walkthrough as story
from gpumarket.chain.params import load_params
from gpumarket.testing.committee import Committee


def _locked_collateral(output: str) -> str:
    """What the accept step says it locked, e.g. "0.72" from "... = 0.72 mSTK locked"."""
    match = re.search(r"^\s+collateral = .* = (\S+) mSTK locked$", output, flags=re.MULTILINE)
    assert match, "no collateral line in the accept step"
    return match.group(1)


def _expected_collateral(collateral_bps: int, collateral_rate: int) -> int:
    # docs/PROTOCOL.md: job value (at the accepted price) * COLLATERAL_BPS, converted to stake
    # tokens by collateral_rate (1e18 = one to one), rounded up.
    job_value = story.PRICE_PER_GPU_SECOND * 1 * story.MAX_DURATION
    return -(-job_value * collateral_bps * collateral_rate // (10_000 * 10**18))


def _row(output: str, account: str) -> list[str]:
    match = re.search(rf"^{account}\s+(\S+)\s+(\S+)$", output, flags=re.MULTILINE)
    assert match, f"no balance row for {account}"
    return list(match.groups())


def test_walkthrough_runs_to_a_conserved_end(run_in_repo, default_params_path):
    result = run_in_repo("ape", "run", "walkthrough")
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout
    assert "on ethereum:local:test" in output
    for step in (
        "registers",
        "stakes",
        "measures the hardware",
        "creates open job 1",
        "accepts job 1",
        "keeper settles",
        "claims",
        "withdraws",
    ):
        assert step in output, step
    # Real receipts: every transaction pays at least the 21,000 base.
    gas = [int(g.replace(",", "")) for g in re.findall(r"gas\s+([\d,]+)$", output, flags=re.MULTILINE)]
    assert len(gas) == 12 and min(gas) > 21_000

    # docs/PROTOCOL.md's rules: the provider is paid price * gpu_seconds less the fee (rounded
    # up, to the treasury); the client pays exactly that payment; stakes come back whole.
    fee_bps = load_params(default_params_path).overrides()["protocol_fee_bps"]
    payment = story.PRICE_PER_GPU_SECOND * story.GPU_SECONDS_RUN
    fee = -(-payment * fee_bps // 10_000)
    assert _row(output, "provider") == [story.tokens(story.PROVIDER_STAKE_MINT), story.tokens(payment - fee)]
    assert _row(output, "treasury") == ["0", story.tokens(fee)]
    assert _row(output, "client") == ["0", story.tokens(story.CLIENT_PAYMENT_MINT - payment)]
    assert _row(output, "market") == ["0", "0"]
    assert "conservation: OK" in output
    overrides = load_params(default_params_path).overrides()
    assert _locked_collateral(output) == story.tokens(
        _expected_collateral(overrides["collateral_bps"], overrides["collateral_rate"])
    )


def test_walkthrough_locks_collateral_converted_by_the_rate(run_in_repo, params_data, write_params):
    # A third of a stake unit per payment unit: value * bps * rate is not a multiple of
    # 1e22, so the walkthrough's own check against the contract needs the rounding up.
    collateral_rate = 10**18 // 3
    params_data["parameters"]["collateral_rate"] = collateral_rate
    result = run_in_repo("ape", "run", "walkthrough", "--params", str(write_params(params_data)))
    assert result.returncode == 0, result.stdout + result.stderr
    expected = _expected_collateral(params_data["parameters"]["collateral_bps"], collateral_rate)
    assert expected % 10**12 == 0  # printed exactly (tokens() marks anything finer with "~")
    assert _locked_collateral(result.stdout) == story.tokens(expected)
    assert "x rate 0.333333333333333333 mSTK/mPAY" in result.stdout
    assert "conservation: OK" in result.stdout


def test_walkthrough_exits_non_zero_on_a_deviation(run_in_repo, params_data, write_params):
    # A committee whose keys the walkthrough does not hold: its signatures cannot count.
    params_data["committee"]["members"] = Committee.of_size(3, threshold=2, first_index=3).addresses
    result = run_in_repo("ape", "run", "walkthrough", "--params", str(write_params(params_data)))
    assert result.returncode == 1
    assert "walkthrough failed: committee in the params" in result.stdout + result.stderr
    assert "conservation: OK" not in result.stdout


def test_titanoboa_is_refused_with_what_to_use(run_in_repo):
    result = run_in_repo("ape", "run", "walkthrough", "--network", "ethereum:local:boa")
    assert result.returncode != 0
    assert "ethereum:local:test" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
