"""The challenge across a real multi-node Ray cluster: RayProver spreads the rounds over every GPU
slot of the cluster, its commitment is the single machine's, the real verifier passes it, a
dishonest node is caught at the predicted rate, and GPUs held by a job do not stop a challenge.

The verifier's clock ticks 1 us per reading: these tests check what was computed and where,
never how fast (the machine is shared); the throughput is the sum over slots by construction.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterator

import pytest

from gpumarket.cluster import LocalRayCluster
from gpumarket.measure.classes import GpuClass
from gpumarket.measure.layout import tile_position
from gpumarket.measure.messages import Challenge, Commitment, Opening, OpeningRequest
from gpumarket.measure.provers import NumpyProver, ProverError, make_prover
from gpumarket.measure.provers.cheats import skipping_pass_probability
from gpumarket.measure.provers.ray_prover import GpuSlot, RayProver, cluster_gpu_slots
from gpumarket.measure.verifier import Reason, Verdict, Verifier

pytestmark = pytest.mark.ray

# One round per GPU: 64 x 64 x 64 rounds of 64 tiles of 8 x 8, three opened per challenge.
TINY = GpuClass(
    id=910, name="test-cluster-tiny", floor_gops_per_gpu=1, m=64, n=64, p=64, rounds=1, tile=8, k=3, tiles_per_leaf=4
)
# Rounds long enough (tens of ms of numpy each) that slots on two nodes visibly overlap.
LONG = GpuClass(
    id=911, name="test-cluster-long", floor_gops_per_gpu=1, m=512, n=512, p=512, rounds=2, tile=16, k=8,
    tiles_per_leaf=8,
)  # fmt: skip
GPUS = 4  # the ray_cluster fixture: two worker nodes of two GPUs each


def ticking_verifier(seed: int | None = None) -> Verifier:
    """A real verifier whose clock advances 1 us per reading: every valid answer is fast enough."""
    ticks = itertools.count()
    randomness = random.Random(seed) if seed is not None else None
    return Verifier(clock=lambda: next(ticks) / 1e6, randomness=randomness)


def round_trip(prover: RayProver, gpu_class: GpuClass, seed: int | None = None) -> tuple[Challenge, Verdict]:
    """One challenge for the cluster's four GPUs, every message through its wire bytes."""
    verifier = ticking_verifier(seed)
    challenge = verifier.issue(gpu_class, gpu_count=GPUS)
    commitment = prover.commit(Challenge.parse(challenge.to_bytes()))
    request = verifier.receive_commitment(Commitment.parse(commitment.to_bytes()))
    opening = prover.open(OpeningRequest.parse(request.to_bytes()))
    return challenge, verifier.check_opening(Opening.parse(opening.to_bytes()))


@pytest.fixture(scope="module")
def prover(ray_cluster: LocalRayCluster) -> Iterator[RayProver]:
    """An honest RayProver, its slots started once for the module."""
    honest = RayProver(round_timeout_s=60)
    honest.warm_up()
    yield honest
    honest.close()


def _nodes(prover: RayProver) -> set[str]:
    return {record.node_id for record in prover.rounds}


def test_the_cluster_has_a_slot_per_gpu_alternating_nodes(ray_cluster: LocalRayCluster) -> None:
    slots = cluster_gpu_slots()
    workers = set(ray_cluster.worker_node_ids())
    assert len(slots) == ray_cluster.total_gpus == GPUS
    assert {slot.node_id for slot in slots} == workers  # the head declares no GPU: no slot
    assert [slot.gpu_index for slot in slots] == [0, 0, 1, 1]
    assert slots[0].node_id != slots[1].node_id  # consecutive rounds go to different nodes
    assert cluster_gpu_slots(accelerator_type="H100") == []  # no node carries that label here


def test_a_challenge_with_one_round_per_gpu_runs_one_round_on_every_gpu_and_passes(
    ray_cluster: LocalRayCluster, prover: RayProver
) -> None:
    _, verdict = round_trip(prover, TINY)
    assert verdict.passed and verdict.reason is None, verdict.detail
    assert sorted(record.round for record in prover.rounds) == [0, 1, 2, 3]
    ran_on = {GpuSlot(record.node_id, record.gpu_index) for record in prover.rounds}
    assert ran_on == set(cluster_gpu_slots())  # one round on each of the four slots
    assert _nodes(prover) == set(ray_cluster.worker_node_ids())
    described = prover.describe()
    assert described["backend"] == "ray" and described["devices"] == ["cpu"] * GPUS
    nodes = described["nodes"]
    assert isinstance(nodes, dict) and set(nodes) == set(ray_cluster.worker_node_ids())
    for node in nodes.values():  # no CUDA on these nodes: each slot fell back to numpy
        assert node == {"gpus": 2, "backends": ["numpy"], "devices": ["cpu", "cpu"], "last_rounds": 2}


def test_the_commitment_is_the_single_machines(prover: RayProver) -> None:
    challenge = ticking_verifier().issue(LONG, gpu_count=GPUS)
    assert prover.commit(challenge).root == NumpyProver().commit(challenge).root
    assert len(prover.rounds) == challenge.rounds == 8 and len(_nodes(prover)) == 2


def test_rounds_run_concurrently_on_both_nodes(prover: RayProver) -> None:
    """Each node's rounds overlap in time with the other node's (node clocks: one machine here)."""
    round_trip(prover, LONG)
    first, second = sorted(_nodes(prover))
    spans = {
        node: [(record.started, record.ended) for record in prover.rounds if record.node_id == node]
        for node in (first, second)
    }
    assert any(
        start_a < end_b and start_b < end_a for start_a, end_a in spans[first] for start_b, end_b in spans[second]
    ), spans


def test_a_node_skipping_tiles_is_caught_at_the_predicted_rate(ray_cluster: LocalRayCluster) -> None:
    """One node's slots compute half of each round's tile rows and commit 0 for the rest.

    With one round per GPU that node computes 2 of the 4 rounds, so 192 of 256 tiles are right;
    k = 3 distinct opened tiles all land on right ones with probability C(192, 3) / C(256, 3). Of
    150 seeded challenges the number caught must lie within 4 binomial standard deviations of the
    prediction, and every catch must be a tile of a round the dishonest node computed."""
    cheater = ray_cluster.worker_node_ids()[0]
    dishonest = RayProver(cheat_on={cheater: 0.5}, round_timeout_s=60)
    try:
        described = dishonest.warm_up()
        nodes = described["nodes"]
        assert isinstance(nodes, dict)
        assert nodes[cheater]["backends"] == ["numpy-skipping"]
        assert [node["backends"] for node_id, node in nodes.items() if node_id != cheater] == [["numpy"]]

        trials, caught = 150, 0
        for trial in range(trials):
            challenge, verdict = round_trip(dishonest, TINY, seed=trial)
            if verdict.passed:
                continue
            caught += 1
            assert verdict.reason is Reason.WRONG_FINGERPRINT, verdict.detail
            match = re.match(r"tile (\d+):", verdict.detail)
            assert match, verdict.detail
            bad_round = tile_position(challenge, int(match.group(1))).round
            assert [record.node_id for record in dishonest.rounds if record.round == bad_round] == [cheater]
        total = TINY.tiles_per_round * GPUS
        predicted = 1 - skipping_pass_probability(total, total // 2 + total // 4, TINY.k)
        sigma = (trials * predicted * (1 - predicted)) ** 0.5
        assert abs(caught - trials * predicted) <= 4 * sigma, (caught, trials * predicted, sigma)
    finally:
        dishonest.close()


def test_a_challenge_is_answered_while_jobs_hold_every_gpu(ray_cluster: LocalRayCluster) -> None:
    """Two jobs hold both GPUs of both nodes (num_gpus=2, exclusive to Ray). A prover started
    then (an agent restarted during its jobs) still starts its slots and answers a heartbeat
    challenge on the held GPUs of both nodes, without waiting for the jobs to end."""
    import ray

    @ray.remote(num_gpus=2, num_cpus=0)
    class Job:
        def gpus(self) -> list[str]:
            return sorted(str(gpu) for gpu in ray.get_gpu_ids())

    jobs = [Job.remote() for _ in ray_cluster.worker_node_ids()]  # type: ignore[attr-defined]
    late = RayProver(round_timeout_s=60, start_timeout_s=60)
    try:
        assert [ray.get(job.gpus.remote(), timeout=60) for job in jobs] == [["0", "1"], ["0", "1"]]
        assert ray.available_resources().get("GPU", 0) == 0  # a num_gpus task would wait for the jobs
        _, verdict = round_trip(late, TINY)  # no warm_up: the slots start inside this challenge
        assert verdict.passed, verdict.detail
        assert {GpuSlot(r.node_id, r.gpu_index) for r in late.rounds} == set(cluster_gpu_slots())
        assert all(ray.get([job.gpus.remote() for job in jobs], timeout=60))  # the jobs ran on throughout
    finally:
        late.close()
        for job in jobs:
            ray.kill(job)


def test_a_slot_that_dies_hands_its_rounds_to_the_others(ray_cluster: LocalRayCluster, prover: RayProver) -> None:
    import ray

    victim = cluster_gpu_slots()[0]
    ray.kill(prover._slots[victim].actor)  # its process dies; the prover only learns when it calls it
    challenge = ticking_verifier().issue(TINY, gpu_count=GPUS)
    assert prover.commit(challenge).root == NumpyProver().commit(challenge).root
    assert sorted(record.round for record in prover.rounds) == [0, 1, 2, 3]
    assert victim not in {GpuSlot(r.node_id, r.gpu_index) for r in prover.rounds}
    # The next challenge starts it again; warm_up waits for it, and every slot answers once more.
    prover.warm_up()
    round_trip(prover, TINY)
    assert {GpuSlot(r.node_id, r.gpu_index) for r in prover.rounds} == set(cluster_gpu_slots())


def test_make_prover_makes_a_ray_prover_and_bad_settings_are_refused() -> None:
    assert isinstance(make_prover("ray"), RayProver)
    with pytest.raises(ProverError, match="unknown node backend 'cuda'; choose from auto, numpy, torch"):
        RayProver(node_backend="cuda")
    with pytest.raises(ProverError, match="unknown backend 'jax'; choose from auto, numpy, torch, ray"):
        make_prover("jax")
