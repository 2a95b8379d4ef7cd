"""`gpumarket devnet --runtime ray`: the market's story with every provider's jobs on a local
multi-node Ray cluster that devnet starts and stops; the JSON says where each job ran."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from demo.expect import check_story_json
from gpumarket.chain.params import load_params
from gpumarket.demo.story import DEFAULT_PARAMS, StoryParams

pytestmark = pytest.mark.ray

WORKER_ADDRESSES = {"127.0.0.2", "127.0.0.3"}  # LocalRayCluster's two workers; the head holds no GPU


def test_devnet_story_with_every_job_on_the_cluster(tmp_path, anvil_binary):
    completed = subprocess.run(
        [sys.executable, "-m", "gpumarket", "devnet", "--json", "--workdir", str(tmp_path), "--runtime", "ray"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    summary = json.loads(completed.stdout)
    check_story_json(summary, StoryParams(), load_params(DEFAULT_PARAMS))
    ran = [job for job in summary["jobs"] if job["outcome"] == "COMPLETED"]
    assert ran and all(job["runtime"] == "ray" for job in ran), summary["jobs"]
    assert all(job["node"] in WORKER_ADDRESSES for job in ran), summary["jobs"]
    assert "starting it (two worker nodes, two GPUs each)" in completed.stderr
    # Each provider's agent ran its challenges on the cluster: the honest ones' logs say so.
    assert "cluster prover up" in (tmp_path / "honest-1.log").read_text()


def test_the_in_process_demo_refuses_the_ray_runtime():
    completed = subprocess.run(
        [sys.executable, "-m", "gpumarket", "demo", "--runtime", "ray"], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 2 and "gpumarket devnet --runtime ray" in completed.stderr
