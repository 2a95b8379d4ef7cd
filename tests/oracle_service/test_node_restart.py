"""The chain node goes away mid-job and comes back (anvil restarted on its saved state): the
oracles' and the provider's followers ride it out and the job still settles, once."""

from __future__ import annotations

import time
from pathlib import Path

from gpumarket.agentapi.client import ProviderApi
from gpumarket.chain.anvil import AnvilNode
from gpumarket.chain.connection import connect
from gpumarket.chain.keys import test_account
from gpumarket.chain.models import JobState
from gpumarket.signing.eip712 import Outcome

from .conftest import busy_spec, deploy_world, running, wait_for
from .test_job_loop import assert_quorum_agrees, settled_event


def test_a_job_settles_across_a_node_restart(anvil: AnvilNode, tmp_path: Path) -> None:
    with running(deploy_world(connect(anvil.url), tmp_path)) as world:
        provider = world.start_provider(test_account(1))
        client = world.client(test_account(4))
        job_id = world.run_job(client, provider.address, busy_spec(6.0))
        wait_for(lambda: ProviderApi(provider.url).status(job_id)["state"] == "running", 20, "job running")
        wait_for(lambda: all(job_id in o.jobs.followed for o in world.oracles), 20, "oracles following")
        anvil.stop()
        time.sleep(2.0)  # services retry against a closed port meanwhile
        anvil.start()
        job = world.wait_terminal(job_id, timeout_s=90)
        assert job.state == JobState.COMPLETED
        assert settled_event(world, job_id).gpu_seconds >= 5
        assert_quorum_agrees(world, job_id, Outcome.COMPLETED)
        assert all(o.wait(0) is None for o in world.oracles)  # every oracle still running
