"""Gas of the largest quorum on py-evm; run by test_bounded_loops in its own `ape test`.

Not named test_*.py, so the main (boa) run never collects it: it runs only when named on
the command line, with `--network ethereum:local:test`, whose receipts carry real gas.
Switching networks inside the boa session breaks ape's and boa's snapshots, hence the
separate process. Writes {"<threshold>": {"settle": gas, ...}} to $GPUMARKET_GAS_REPORT.
"""

from __future__ import annotations

import json
import os

import pytest

from gpumarket.signing.eip712 import Outcome
from helpers.committee import Committee
from helpers.constants import MAX_MEMBERS, MIN_STAKE, TOKEN

REPORT_ENV = "GPUMARKET_GAS_REPORT"
THRESHOLDS = [MAX_MEMBERS // 2 + 1, MAX_MEMBERS]


@pytest.fixture(scope="module")
def report():
    measured: dict[str, dict[str, int]] = {}
    yield measured
    with open(os.environ[REPORT_ENV], "w") as out:
        json.dump(measured, out)


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_measure(threshold, report, chain, deploy_token, make_kit, provider, client, owner):
    assert chain.provider.name == "test", "run with --network ethereum:local:test"
    largest = Committee.of_size(MAX_MEMBERS, threshold)
    kit = make_kit(deploy_token("MockToken", "STK"), deploy_token("MockToken", "PAY"), members=largest)
    kit.register(provider)
    hardware_tx = kit.submit_hardware(kit.hardware_report(provider))
    kit.market.stake(MIN_STAKE + 100 * TOKEN, sender=provider)
    job_id = kit.running_job(client, provider)
    settle_tx = kit.settle(job_id, Outcome.COMPLETED, gpu_seconds=600)
    assert len(settle_tx.decode_logs(kit.market.JobSettled)) == 1
    rotate_tx = kit.market.set_committee(largest.addresses, threshold, sender=owner)
    report[str(threshold)] = {
        "signatures": len(kit.committee.sign(kit.domain, kit.job_report(job_id))),
        "settle": settle_tx.gas_used,
        "submit_hardware_report": hardware_tx.gas_used,
        "set_committee": rotate_tx.gas_used,
    }
