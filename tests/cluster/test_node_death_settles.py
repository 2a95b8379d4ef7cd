"""A worker node of a provider's Ray cluster dies under a running job, and the market settles it.

The whole path on real parts: the market on the embedded chain, the three oracles of the
committee (in this process, real HTTP between them and to the agent), the provider's service
with the cluster runtime on the shared loopback cluster, a client's escrowed job. The node is
killed while the job runs: the agent records the job lost (Ray reports its job failed, with no
ending written), the oracles decide FAILED from the agent's own status, and the quorum's report
settles it on chain: the client refunded in full, the provider's collateral slashed (its node,
its risk: docs/ARCHITECTURE.md, "A provider that is a Ray cluster").
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from gpumarket.chain.connection import EMBEDDED, connect
from gpumarket.chain.keys import test_account
from gpumarket.chain.models import JobState
from gpumarket.provider.ray_runner import RaySettings
from gpumarket.provider.runtime import RuntimeSettings
from gpumarket.signing.eip712 import Outcome
from oracle_service.conftest import deploy_world, running, wait_for
from oracle_service.test_job_loop import assert_quorum_agrees, settled_event
from provider.support import python_spec

pytestmark = pytest.mark.ray


def test_a_job_whose_node_dies_settles_failed_on_chain(tmp_path: Path, doomed_ray_cluster) -> None:
    ray_cluster = doomed_ray_cluster
    runtime = RuntimeSettings(
        kind="ray",
        ray=RaySettings(
            ray_cluster.address,
            ray_cluster.dashboard_url,
            node_ip_address=ray_cluster.driver_address,
            jobs_in="process",
        ),
    )
    with running(deploy_world(connect(EMBEDDED), tmp_path)) as world:
        service = world.start_provider(test_account(1), runtime=runtime)
        client = world.client(test_account(4))
        job_id = world.run_job(client, service.address, python_spec("import time; time.sleep(100)", max_seconds=110))
        runner = service.agent.runner
        placement = wait_for(lambda: runner.placement(job_id), 120, f"job {job_id} placed on a node")
        wait_for(lambda: all(job_id in oracle.jobs.followed for oracle in world.oracles), 30, "oracles following")
        ray_cluster.kill_worker(ray_cluster.worker_node_ids().index(placement["node_id"]))
        # A dying node takes its processes with it; on this machine they stay: end them too.
        os.kill(placement["entrypoint_pid"], signal.SIGKILL)
        os.killpg(placement["pid"], signal.SIGKILL)
        job = world.wait_terminal(job_id, timeout_s=240)
        assert job.state == JobState.FAILED
        event = settled_event(world, job_id)
        assert event.client_refund == job.escrow and event.slashed > 0
        assert_quorum_agrees(world, job_id, Outcome.FAILED)
        record = service.agent.store.get(job_id)
        assert record is not None and record.state.value == "lost" and "ended without" in (record.detail or "")
