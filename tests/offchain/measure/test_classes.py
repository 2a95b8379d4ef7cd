"""The GPU class table: agreement with the deployment's YAML, the floor rule, the cost ratio."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gpumarket.measure.classes import (
    CPU_CLASSES,
    CPU_DEV,
    CPU_SMALL,
    GPU_CLASSES,
    GpuClass,
    class_by_id,
    class_by_name,
    class_for_device_name,
)
from gpumarket.measure.cost import challenge_cost

DEFAULT_YAML = Path(__file__).resolve().parents[3] / "deploy" / "params" / "default.yaml"
GPU_ONLY = [c for c in GPU_CLASSES if c not in CPU_CLASSES]


def test_ids_names_and_floors_match_the_deployment_yaml():
    registered = yaml.safe_load(DEFAULT_YAML.read_text())["gpu_classes"]
    assert [(c["id"], c["name"], c["floor_per_gpu_gops"]) for c in registered] == [
        (c.id, c.name, c.floor_gops_per_gpu) for c in GPU_CLASSES
    ]


def test_the_two_founding_classes_keep_their_ids_and_floors():
    assert (class_by_name("cpu-dev").id, class_by_name("cpu-dev").floor_gops_per_gpu) == (1, 10)
    assert (class_by_name("h100-sxm").id, class_by_name("h100-sxm").floor_gops_per_gpu) == (2, 470_000)


MEASURED = [c for c in GPU_ONLY if c.measured_tops is not None]
UNMEASURED = [c for c in GPU_ONLY if c.measured_tops is None]


def _clearly_slower(gpu_class):
    # Cards within 10% of this class's peak are peers (A100 and RTX 4090), not slower ones.
    return [c for c in GPU_ONLY if c.peak_int8_tops < 0.9 * gpu_class.peak_int8_tops]


@pytest.mark.parametrize("gpu_class", MEASURED, ids=lambda c: c.name)
def test_a_measured_floor_leaves_an_honest_card_40_percent(gpu_class):
    assert 0.55 <= gpu_class.floor_gops_per_gpu / (gpu_class.measured_tops * 1000) <= 0.65


@pytest.mark.parametrize("gpu_class", MEASURED, ids=lambda c: c.name)
def test_a_slower_card_passes_a_measured_floor_only_far_more_efficient_than_the_measured_card(gpu_class):
    # The measured card ran the challenge at measured/peak of its own peak; a slower card must
    # reach floor/its peak of its own, at least 1.5 times that.
    measured_efficiency = gpu_class.measured_tops / gpu_class.peak_int8_tops
    for other in _clearly_slower(gpu_class):
        needed = gpu_class.floor_gops_per_gpu / (other.peak_int8_tops * 1000)
        assert needed >= 1.5 * measured_efficiency, other.name


@pytest.mark.parametrize("gpu_class", UNMEASURED, ids=lambda c: c.name)
def test_an_unmeasured_floor_is_about_half_of_what_the_class_achieves(gpu_class):
    achievable_gops = 0.8 * gpu_class.peak_int8_tops * 1000
    assert 0.45 <= gpu_class.floor_gops_per_gpu / achievable_gops <= 0.55


@pytest.mark.parametrize("gpu_class", UNMEASURED, ids=lambda c: c.name)
def test_no_clearly_slower_card_passes_an_unmeasured_floor_even_at_its_peak(gpu_class):
    for other in _clearly_slower(gpu_class):
        assert gpu_class.floor_gops_per_gpu > other.peak_int8_tops * 1000, other.name


@pytest.mark.parametrize("gpu_class", GPU_ONLY, ids=lambda c: c.name)
def test_verifier_work_is_at_most_one_percent_of_the_provers_at_gpu_sizes(gpu_class):
    assert challenge_cost(gpu_class).verify_over_prove <= 0.01
    # More GPUs mean more rounds for the prover and the same k tiles for the verifier.
    assert challenge_cost(gpu_class, gpu_count=8).verify_over_prove < challenge_cost(gpu_class).verify_over_prove


@pytest.mark.parametrize("gpu_class", CPU_CLASSES, ids=lambda c: c.name)
def test_cpu_classes_verifier_work_is_within_five_percent_by_operation_counts(gpu_class):
    assert challenge_cost(gpu_class).verify_over_prove <= 0.05


def test_cpu_small_is_an_eighth_of_cpu_dev_and_matches_no_device():
    assert 8 * challenge_cost(CPU_SMALL).prover_ops == challenge_cost(CPU_DEV).prover_ops
    assert not any(gpu_class.device_patterns for gpu_class in CPU_CLASSES)


def test_cost_counts_grow_with_the_sizes_they_should():
    small = challenge_cost(CPU_DEV)
    more_rounds = challenge_cost(GpuClass(**{**CPU_DEV.__dict__, "rounds": CPU_DEV.rounds * 2}))
    more_tiles_opened = challenge_cost(GpuClass(**{**CPU_DEV.__dict__, "k": CPU_DEV.k * 2}))
    assert more_rounds.prover_ops == 2 * small.prover_ops
    assert more_tiles_opened.verifier_ops > 1.9 * small.verifier_ops
    assert small.prover_ops == 2 * 1024**3 * CPU_DEV.rounds


def test_lookups_by_name_and_id_and_their_errors():
    for gpu_class in GPU_CLASSES:
        assert class_by_name(gpu_class.name) is gpu_class is class_by_id(gpu_class.id)
    with pytest.raises(KeyError, match="unknown gpu class 'h200'; known: cpu-dev, h100-sxm"):
        class_by_name("h200")
    with pytest.raises(KeyError, match=r"unknown gpu class id 99; known: \[1, 2, 3, 4, 5, 6\]"):
        class_by_id(99)


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H200", "h100-sxm"),
        ("NVIDIA A100-SXM4-80GB", "a100"),
        ("NVIDIA A100 80GB PCIe", "a100"),
        ("NVIDIA GeForce RTX 4090", "rtx4090"),
        ("NVIDIA L4", "l4-a10"),
        ("NVIDIA A10", "l4-a10"),
        ("NVIDIA A10G", "l4-a10"),
        ("Tesla T4", None),
        ("NVIDIA GeForce RTX 4080", None),
    ],
)
def test_device_names_map_to_classes(device, expected):
    found = class_for_device_name(device)
    assert (found.name if found else None) == expected


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"m": 1000}, "m=1000 is not a power of two"),
        ({"n": 2**19}, "n=524288 exceeds 262144"),
        ({"tile": 256}, "tile=256 exceeds"),
        ({"rounds": 0}, "rounds=0 is below 1"),
        ({"tiles_per_leaf": 8192}, "tiles_per_leaf=8192 is not a power of two dividing"),
        ({"k": 0}, "k=0 is not between 1"),
        ({"id": 0}, "id 0 is not a uint16"),
        ({"name": "H100"}, "is not a lowercase slug"),
    ],
)
def test_invalid_class_rows_are_refused_with_the_reason(change, message):
    with pytest.raises(ValueError, match=message):
        GpuClass(**{**CPU_DEV.__dict__, **change})
