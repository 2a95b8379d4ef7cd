"""Three OracleServices settling in batches (--batch-size): a lone job is not held up, its batch
goes by age, through the market's BatchSettler, and settles as it would alone."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from gpumarket.chain.connection import EMBEDDED, connect
from gpumarket.chain.events import scan_events
from gpumarket.chain.keys import test_account
from gpumarket.chain.models import JobState
from gpumarket.signing.eip712 import Outcome

from .conftest import JOB_CONFIG, Market3, busy_spec, deploy_world, running


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[Market3]:
    world = deploy_world(connect(EMBEDDED), tmp_path_factory.mktemp("oracle-batches"))
    world.job_config = replace(JOB_CONFIG, batch_size=8, batch_max_age_s=1.0)
    with running(world) as started:
        yield started


def test_a_lone_job_is_settled_by_a_batch_of_one_once_it_waited(world: Market3) -> None:
    provider = world.start_provider(test_account(1))
    client = world.client(test_account(4))
    job_id = world.run_job(client, provider.address, busy_spec(2.5))
    job = world.wait_terminal(job_id)
    assert job.state == JobState.COMPLETED
    market = world.market()
    [event] = [e for e in scan_events(market, ["JobSettled"]) if e.job_id == job_id]
    assert event.outcome == Outcome.COMPLETED and event.gpu_seconds >= 2
    receipt = world.w3.eth.get_transaction_receipt(event.meta.tx_hash)
    assert receipt["to"] == market.batch_settler()
