"""No unbounded loops (docs/PROTOCOL.md, Security properties).

The only loops in the market run over the committee's members and a report's signatures,
both DynArrays bounded by MAX_MEMBERS (31). The largest committee must work and cost far
less than a block; a 32nd member or signature must not even decode.

Gas is measured on py-evm (`ethereum:local:test`), whose receipts are real: the default
boa provider reports execution gas only (a 16-of-31 settle: 149,005 there against 253,065
on py-evm; even with the 21,000 base and calldata added it falls 58,000 short) and its
estimate_gas_cost came out at 26,172 for a 2-of-3 settle. Switching to py-evm inside the
boa session corrupts both plugins' snapshots, so pyevm/ runs in its own `ape test`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ape
import pytest

from gpumarket.signing.eip712 import Outcome
from helpers.committee import Committee, oracle_key
from helpers.constants import MAX_MEMBERS

# Mainnet's block gas limit when this was written; "far below" means under a tenth of it.
BLOCK_GAS_LIMIT = 30_000_000
GAS_BUDGET = BLOCK_GAS_LIMIT // 10
# How ape reports a revert without data; here, Vyper's ABI decoder refusing an array
# longer than its bound (every check the market makes itself has a reason).
REVERT_WITHOUT_REASON = "0x"
MEASURE_SCRIPT = Path(__file__).with_name("pyevm") / "measure_largest_quorum_gas.py"


@pytest.mark.parametrize("threshold", [16, MAX_MEMBERS])
def test_a_committee_of_max_members_can_be_installed(threshold, market, owner):
    largest = Committee.of_size(MAX_MEMBERS, threshold)
    tx = market.set_committee(largest.addresses, threshold, sender=owner)
    [event] = tx.decode_logs(market.CommitteeChanged)
    assert event.event_arguments == {"epoch": 2, "members": largest.addresses, "threshold": threshold}
    assert market.members() == largest.addresses
    assert market.threshold() == threshold


def test_a_committee_of_max_members_plus_one_cannot_be_passed(market, owner, committee):
    too_many = Committee.of_size(MAX_MEMBERS + 1, threshold=MAX_MEMBERS // 2 + 2)
    with ape.reverts(REVERT_WITHOUT_REASON):
        market.set_committee(too_many.addresses, too_many.threshold, sender=owner)
    assert market.members() == committee.addresses


def test_max_members_plus_one_signatures_cannot_be_passed(root_kit, client, provider, market):
    root_kit.ready_provider(provider)
    job_id = root_kit.running_job(client, provider)
    report = root_kit.job_report(job_id, Outcome.COMPLETED, gpu_seconds=60)
    # Valid member signatures padded with extra ones: only the count is wrong.
    extra_keys = [oracle_key(500 + i) for i in range(MAX_MEMBERS + 1 - len(root_kit.committee.keys))]
    signatures = root_kit.committee.sign(root_kit.domain, report, signers=len(root_kit.committee.keys))
    signatures += Committee(extra_keys, 1).sign(root_kit.domain, report, signers=len(extra_keys))
    assert len(signatures) == MAX_MEMBERS + 1
    with ape.reverts(REVERT_WITHOUT_REASON):
        market.settle(report, signatures, sender=root_kit.keeper)


@pytest.fixture(scope="module")
def pyevm_gas(tmp_path_factory) -> dict[str, dict[str, int]]:
    """Gas of the largest quorum's transactions, measured by pyevm/ in its own `ape test`."""
    report = tmp_path_factory.mktemp("gas") / "largest_quorum.json"
    root = Path(__file__).resolve().parents[2]
    ape = Path(sys.executable).with_name("ape")
    result = subprocess.run(
        [str(ape), "test", str(MEASURE_SCRIPT), "--network", "ethereum:local:test", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        env={**os.environ, "GPUMARKET_GAS_REPORT": str(report)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4_000:] + result.stderr[-4_000:]
    return json.loads(report.read_text())


@pytest.mark.parametrize("threshold", [MAX_MEMBERS // 2 + 1, MAX_MEMBERS])
def test_the_largest_quorum_costs_far_less_than_a_block(threshold, pyevm_gas):
    gas = pyevm_gas[str(threshold)]
    print(f"\n{threshold}-of-{MAX_MEMBERS} committee, gas on py-evm: {gas}")
    assert gas.pop("signatures") == threshold
    for name, used in gas.items():
        assert 21_000 < used < GAS_BUDGET, f"{name} used {used} gas"
