"""`python -m bench.gas`: every operation measured from real receipts, and the report agrees."""

from __future__ import annotations

import json
import re

import pytest

# Per EIP-2929/2200, a cold SSTORE from zero costs 22,100 and from non-zero 5,000.
FRESH_SLOT_EXTRA = 22_100 - 5_000
# Calldata differs between two reports (zero bytes in signatures), by tens of gas.
CALLDATA_JITTER = 500
REQUIRED = [
    "register", "stake/first_time", "stake/steady_state", "request_unstake/first_time",
    "request_unstake/steady_state", "withdraw", "create_job_open/first_time",
    "create_job_open/steady_state", "create_job_directed/steady_state", "accept_job_open",
    "accept_job_directed", "expire_job_open/first_time", "expire_job_running/first_time",
    "claim/first_time", "claim/steady_state",
] + [
    f"settle_{outcome}_{committee}/{case}"
    for outcome in ("completed", "failed")
    for committee in ("1of1", "2of3", "5of9")
    for case in ("first_time", "steady_state")
]
TARGETS = {"create_job": 150_000, "accept_job": 110_000, "settle_completed_2of3": 120_000}


@pytest.fixture(scope="module")
def bench(tmp_path_factory, run_in_repo) -> tuple[dict[str, int], str]:
    """One run of the benchmark for the whole module: (gas.json, GAS.md)."""
    out = tmp_path_factory.mktemp("bench")
    result = run_in_repo("python", "-m", "bench.gas", "--out-dir", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((out / "gas.json").read_text()), (out / "GAS.md").read_text()


def test_every_operation_is_measured_from_a_real_receipt(bench):
    gas, _ = bench
    assert set(REQUIRED) <= set(gas)
    # titanoboa's figures leave out the 21,000 base; receipts from py-evm include it.
    assert all(isinstance(value, int) and 21_000 < value < 30_000_000 for value in gas.values())


@pytest.mark.parametrize(
    "operation, fresh_slots",
    [
        # COMPLETED credits the provider, the treasury and the client's refund.
        *[(f"settle_completed_{c}", 3) for c in ("1of1", "2of3", "5of9")],
        # FAILED credits the refund, the client's and the treasury's slash shares, and
        # counts the provider's failure.
        *[(f"settle_failed_{c}", 4) for c in ("1of1", "2of3", "5of9")],
        ("create_job_open", 2),  # the job counter and the market's token balance
        ("stake", 1),  # the provider's stake word
        ("request_unstake", 2),  # the unbonding entry: amount and release time
    ],
)
def test_first_time_differs_from_steady_state_by_its_fresh_slots(bench, operation, fresh_slots):
    gas, _ = bench
    difference = gas[f"{operation}/first_time"] - gas[f"{operation}/steady_state"]
    assert abs(difference - fresh_slots * FRESH_SLOT_EXTRA) < CALLDATA_JITTER


def test_settlement_grows_with_the_quorum(bench):
    gas, _ = bench
    for outcome in ("completed", "failed"):
        costs = [gas[f"settle_{outcome}_{c}/steady_state"] for c in ("1of1", "2of3", "5of9")]
        assert costs == sorted(costs) and costs[0] < costs[-1]


def test_report_table_agrees_with_the_json(bench):
    gas, report = bench
    for name, value in gas.items():
        operation, _, case = name.partition("/")
        row = re.search(rf"^\| {re.escape(operation)} \| {case or '[a-z_]+'} \| ([\d,]+) \| ([\d,]*) \| (\S*) \|", report, flags=re.MULTILINE)
        assert row, f"no table row for {name}"
        assert int(row.group(1).replace(",", "")) == value
        target = next((t for prefix, t in TARGETS.items() if operation.startswith(prefix)), None)
        if target is None:
            assert row.group(2) == "" and row.group(3) == ""
        else:
            assert int(row.group(2).replace(",", "")) == target
            assert row.group(3) == ("pass" if value <= target else "**miss**")
    for operation, target in TARGETS.items():
        assert f"- **{operation} <= {target:,}**: " in report
