"""Three OracleServices settling in batches (--batch-size): jobs that end together settle in one
batch through the market's BatchSettler, as they would alone; a lone job is not held up, and
settles alone (a batch of one costs more gas than settle)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from gpumarket.chain.connection import EMBEDDED, connect
from gpumarket.chain.events import JobSettled, scan_events
from gpumarket.chain.keys import test_account
from gpumarket.chain.models import JobState
from gpumarket.signing.eip712 import Outcome

from .conftest import CPU_DEV, JOB_CONFIG, PRICE, Market3, busy_spec, deploy_world, running

# Batches of two, or whatever waits once the oldest job has waited 20 s: wide enough that two
# jobs started together are decided within it on a loaded machine. The fallback members wait
# far longer, so the designated submitter settles every job here.
BATCH_CONFIG = replace(JOB_CONFIG, batch_size=2, batch_max_age_s=20.0, fallback_delay_s=120.0)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[Market3]:
    world = deploy_world(connect(EMBEDDED), tmp_path_factory.mktemp("oracle-batches"))
    world.job_config = BATCH_CONFIG
    with running(world) as started:
        yield started


def _settlement(world: Market3, job_id: int) -> tuple[JobSettled, dict]:
    """A COMPLETED job's JobSettled event and the receipt of the transaction that emitted it."""
    job = world.wait_terminal(job_id, timeout_s=180)
    assert job.state == JobState.COMPLETED
    [event] = [e for e in scan_events(world.market(), ["JobSettled"]) if e.job_id == job_id]
    assert event.outcome == Outcome.COMPLETED and event.gpu_seconds >= 2
    return event, world.w3.eth.get_transaction_receipt(event.meta.tx_hash)


def test_a_lone_job_waits_its_batch_age_then_settles_alone(world: Market3) -> None:
    provider = world.start_provider(test_account(1))
    job_id = world.run_job(world.client(test_account(4)), provider.address, busy_spec(2.5))
    _, receipt = _settlement(world, job_id)
    assert receipt["to"] == world.market().address  # settle, not the BatchSettler


def test_jobs_that_end_together_settle_in_one_batch(world: Market3) -> None:
    first = world.providers[0] if world.providers else world.start_provider(test_account(1))
    second = world.start_provider(test_account(2))
    client = world.client(test_account(4))
    # Each oracle batches the jobs it is the designated submitter of: job id modulo the committee
    # size picks it, so the two jobs are members' count ids apart, with jobs between that stay
    # OPEN: directed to a registered provider that runs no agent.
    idle = test_account(11)
    world.market(idle).register(CPU_DEV, 1, PRICE, "http://127.0.0.1:9")
    jobs = [world.run_job(client, first.address, busy_spec(2.5))]
    for _ in range(len(world.market().members()) - 1):
        client.create_job(
            busy_spec(1), gpu_class=CPU_DEV, gpu_count=1, max_price=PRICE, max_duration=60, provider=idle.address
        )
    jobs.append(world.run_job(client, second.address, busy_spec(2.5)))
    (one, receipt), (other, _) = (_settlement(world, job_id) for job_id in jobs)
    assert receipt["to"] == world.market().batch_settler()
    assert one.meta.tx_hash == other.meta.tx_hash
