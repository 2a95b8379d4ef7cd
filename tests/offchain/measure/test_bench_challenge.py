"""`gpumarket bench challenge`, run_local_challenge and the backend helpers, on the CPU."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import gpumarket.measure.provers as provers
from gpumarket.cli import main
from gpumarket.measure.classes import CPU_DEV, class_by_name
from gpumarket.measure.cost import challenge_cost
from gpumarket.measure.local import detection_twin, run_local_challenge
from gpumarket.measure.provers import NumpyProver, ProverError, available_backends, make_prover

REQUIRED_KEYS = {
    "backend",
    "gpu_class",
    "m",
    "n",
    "p",
    "prove_seconds",
    "verify_seconds",
    "throughput_tops",
    "verify_over_prove",
    "detect_rate_at_q_half",
}


def test_cpu_dev_passes_locally_and_its_verifier_does_under_five_percent_of_the_provers_work():
    # The wall-clock ratio is a benchmark figure (`gpumarket bench challenge`); on a loaded machine
    # it moves with the scheduler, so the test checks the design's operation counts instead.
    run = run_local_challenge(CPU_DEV, prover=NumpyProver())
    assert run.passed and run.backend == "numpy" and run.gpu_count == 1
    assert run.rounds == CPU_DEV.rounds and run.to_dict()["gpu_class"] == "cpu-dev"
    assert run.prove_seconds > 0 and run.verify_seconds >= 0
    assert run.verify_over_prove == run.verify_seconds / run.prove_seconds
    assert challenge_cost(CPU_DEV).verify_over_prove <= 0.05


def test_bench_challenge_prints_one_json_object():
    result = CliRunner().invoke(main, ["bench", "challenge", "--json", "--backend", "numpy", "--trials", "3"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)  # exactly one JSON document, nothing else
    assert REQUIRED_KEYS <= set(record)
    assert (record["backend"], record["gpu_class"], record["m"], record["n"], record["p"]) == (
        "numpy",
        "cpu-dev",
        1024,
        1024,
        1024,
    )
    assert record["passed"] and record["throughput_tops"] >= 0.01
    assert record["detect_rate_at_q_half"] == 1.0 and record["detect_trials"] == 3
    assert 0 < record["verify_over_prove"] < 1 and record["verify_over_prove_ops"] < 0.05


def test_bench_challenge_human_output_and_errors(monkeypatch):
    runner = CliRunner()
    result = runner.invoke(main, ["bench", "challenge", "--backend", "numpy", "--trials", "1", "--no-warmup"])
    assert result.exit_code == 0 and "cpu-dev on numpy" in result.output and "PASSED" in result.output
    assert runner.invoke(main, ["bench", "challenge", "--gpu-class", "v100"]).exit_code == 2
    monkeypatch.setattr(provers, "_torch_installed", lambda: False)
    result = runner.invoke(main, ["bench", "challenge", "--backend", "torch"])
    assert result.exit_code == 1 and "the torch backend needs torch" in result.output


def test_backends_and_the_auto_choice(monkeypatch):
    assert available_backends()[0] == "numpy"
    monkeypatch.setattr(provers, "_torch_installed", lambda: False)
    assert available_backends() == ["numpy"]
    assert isinstance(make_prover("auto"), NumpyProver)  # no torch, no GPU: numpy
    with pytest.raises(ProverError, match="unknown backend 'jax'"):
        make_prover("jax")


def test_detection_twin_keeps_k_and_shrinks_only_gpu_sizes():
    assert detection_twin(CPU_DEV) is CPU_DEV
    h100 = class_by_name("h100-sxm")
    twin = detection_twin(h100)
    assert (twin.k, twin.id, twin.floor_gops_per_gpu) == (h100.k, h100.id, h100.floor_gops_per_gpu)
    assert twin.tiles_per_round * twin.rounds >= 16 * twin.k and twin.m == 256
