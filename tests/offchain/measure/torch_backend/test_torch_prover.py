"""The torch prover gives the numpy prover's root, on torch's CPU device here and on CUDA where
there is a GPU, and its answers pass the verifier."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is the optional 'gpu' extra; make test-torch installs it")

from gpumarket.measure.classes import CPU_DEV, GpuClass, class_for_device_name  # noqa: E402
from gpumarket.measure.local import run_local_challenge  # noqa: E402
from gpumarket.measure.provers import (  # noqa: E402
    NumpyProver,
    ProverError,
    available_backends,
    make_prover,
    torch_prover,  # noqa: E402
)
from gpumarket.measure.provers.torch_prover import TorchProver, visible_devices  # noqa: E402
from gpumarket.measure.verifier import Verifier  # noqa: E402

pytestmark = pytest.mark.torch

SMALL = GpuClass(
    id=901, name="test-small", floor_gops_per_gpu=1, m=128, n=256, p=128, rounds=3, tile=16, k=16, tiles_per_leaf=8
)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")


def _roots(challenge, *provers):
    return [prover.commit(challenge).root for prover in provers]


@pytest.mark.parametrize("path", ["fp32", "int8"])
def test_same_seed_same_root_as_numpy_on_the_cpu_device(path):
    challenge = Verifier().issue(SMALL)
    numpy_root, torch_root = _roots(challenge, NumpyProver(), TorchProver(devices=["cpu"], matmul=path))
    assert torch_root == numpy_root


def test_same_root_at_cpu_dev_sizes_and_the_answer_passes():
    prover = TorchProver(devices=["cpu"])
    challenge = Verifier().issue(CPU_DEV)
    assert _roots(challenge, prover) == _roots(challenge, NumpyProver())
    run = run_local_challenge(CPU_DEV, prover=prover)
    assert run.passed and run.backend == "torch" and run.devices == ["cpu"]


def test_rounds_spread_over_several_devices_give_the_same_root():
    challenge = Verifier().issue(SMALL)
    two = TorchProver(devices=["cpu", "cpu"])
    assert [str(d) for d in two.devices] == ["cpu", "cpu"]
    assert _roots(challenge, two) == _roots(challenge, NumpyProver())


def test_small_blocks_give_the_same_root(monkeypatch):
    monkeypatch.setitem(torch_prover._BLOCK_BYTES, "cpu", 8 * 256 * 16)  # one tile row of A per block
    challenge = Verifier().issue(SMALL)
    assert _roots(challenge, TorchProver(devices=["cpu"])) == _roots(challenge, NumpyProver())


def test_matmul_paths_are_chosen_by_exactness():
    assert TorchProver(devices=["cpu"]).describe()["matmul"] == ["fp32"]
    with pytest.raises(ProverError, match=r"cpu: no exact matmul path among \('fp16',\)"):
        TorchProver(devices=["cpu"], matmul="fp16")  # torch has no fp32-output fp16 mm on the CPU
    with pytest.raises(ValueError, match="unknown matmul path 'fp8'"):
        TorchProver(devices=["cpu"], matmul="fp8")


def test_a_failing_device_surfaces_its_error(monkeypatch):
    prover = TorchProver(devices=["cpu"])

    def broken(*args):
        raise RuntimeError("device lost")

    monkeypatch.setattr(prover, "_launch", broken)
    with pytest.raises(RuntimeError, match="device lost"):
        prover.commit(Verifier().issue(SMALL))


def test_torch_is_an_available_backend():
    assert available_backends() == ["numpy", "torch"]
    assert isinstance(make_prover("torch"), TorchProver)
    assert visible_devices() == (
        [torch.device("cuda", i) for i in range(torch.cuda.device_count())] or [torch.device("cpu")]
    )


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("path", ["auto", "int8", "fp16"])
def test_same_seed_same_root_on_cuda(path):
    challenge = Verifier().issue(SMALL)
    prover = TorchProver(matmul=path)
    assert _roots(challenge, prover) == _roots(challenge, NumpyProver())
    assert all(device.type == "cuda" for device in prover.devices)


@pytest.mark.gpu
@needs_cuda
def test_every_visible_gpu_passes_its_class_floor():
    prover = TorchProver()
    gpu_class = class_for_device_name(torch.cuda.get_device_name(0))
    if gpu_class is None:
        pytest.skip(f"no class for {torch.cuda.get_device_name(0)!r}")
    run_local_challenge(gpu_class, prover=prover)  # warm-up: compilation and allocations
    run = run_local_challenge(gpu_class, prover=prover)
    assert run.gpu_count == torch.cuda.device_count()
    assert run.passed, run.detail


@pytest.mark.gpu
@needs_cuda
def test_cuda_entries_and_fingerprints_match_numpy_elementwise():
    from gpumarket.measure.fingerprint import fingerprint_blocks, fingerprint_keys
    from gpumarket.measure.matrices import a_rows, entries_from_codes, index_codes, matrix_keys

    seed = bytes(range(32))
    keys = matrix_keys(seed, 4)
    device = torch.device("cuda")
    rows = torch.arange(64, dtype=torch.int64, device=device)
    cols = torch.arange(256, dtype=torch.int64, device=device)
    on_gpu = entries_from_codes(index_codes(rows, keys.a_row)[:, None], index_codes(cols, keys.a_col)[None, :])
    assert np.array_equal(on_gpu.cpu().numpy(), a_rows(seed, 4, np.arange(64), 256).astype(np.int64))
    block = np.random.default_rng(0).integers(-(2**24), 2**24, size=(64, 64), dtype=np.int64)
    fp = fingerprint_keys(seed, 16)
    positions = fp.positions()
    expected = fingerprint_blocks(block, fp.weights(positions), fp.offsets(positions), 16)
    gpu_positions = torch.from_numpy(positions).to(device)
    got = fingerprint_blocks(
        torch.from_numpy(block).to(device), fp.weights(gpu_positions), fp.offsets(gpu_positions), 16
    )
    assert np.array_equal(got.cpu().numpy(), expected)


def test_a_compiled_kernel_that_fails_falls_back_to_eager():
    kernels = torch_prover._DeviceKernels(torch.device("cpu"), "fp32", use_compile=False)
    kernels.compiled = True
    calls = []

    def failing_compiled(*args):
        calls.append(args)
        raise RuntimeError("inductor: cannot compile this shape")

    entries = kernels._or_eager(failing_compiled, torch_prover._entries)
    codes = torch.arange(8, dtype=torch.int64)
    expected = torch_prover._entries(codes[:, None], codes[None, :])
    assert torch.equal(entries(codes[:, None], codes[None, :]), expected)
    assert torch.equal(entries(codes[:, None], codes[None, :]), expected)
    assert len(calls) == 1 and kernels.compiled is False  # tried once, then eager for good
