"""gpumarket.measure.inventory: the CPU always, NVML's fallbacks, torch's view, the class chosen."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pynvml
import pytest

from gpumarket.measure.classes import class_by_name
from gpumarket.measure.inventory import (
    CPU_DEV_CLASS,
    GpuInfo,
    Inventory,
    NvmlView,
    TorchDevice,
    TorchView,
    choose_class,
    class_for_gpu_name,
    detect,
    detect_cpu,
    detect_nvml,
    detect_torch,
)
from gpumarket.measure.nvml import NvmlStatus, NvmlUnavailable, nvml_available, nvml_session, status_of

NO_TORCH = TorchView(installed=False, detail="not checked")


def gpu(name: str, index: int = 0) -> GpuInfo:
    return GpuInfo(index, name, f"GPU-{index:08x}-0000-0000-0000-000000000000", 80 << 30, 700.0, "9.0", None)


def nvml_with(*names: str) -> NvmlView:
    gpus = tuple(gpu(name, i) for i, name in enumerate(names))
    return NvmlView(NvmlStatus.OK, f"{len(gpus)} GPU(s)", "550.54.15", "12.4", gpus)


# --------------------------------------------------------------------------- CPU


def test_cpu_of_this_machine():
    cpu = detect_cpu()
    assert cpu.model and cpu.model != "unknown"
    assert cpu.logical_cores == os.cpu_count()
    assert 1 <= cpu.usable_cores <= cpu.logical_cores
    assert cpu.physical_cores is None or 1 <= cpu.physical_cores <= cpu.logical_cores
    # /proc/meminfo and sysconf read the same kernel figure
    assert cpu.memory_total_bytes == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    meminfo = Path("/proc/meminfo").read_text()
    assert cpu.memory_total_bytes == int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1)) * 1024


X86_SMT = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t\t: 0

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t\t: 0

processor\t: 2
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 1
core id\t\t: 0
"""

ARM = """processor\t: 0
BogoMIPS\t: 50.00
CPU part\t: 0xd4f

processor\t: 1
BogoMIPS\t: 50.00
CPU part\t: 0xd4f
"""


@pytest.mark.parametrize(
    ("cpuinfo", "model", "physical"),
    [
        pytest.param(X86_SMT, "Intel(R) Xeon(R) Platinum 8480+", 2, id="x86 two threads on one core, two packages"),
        pytest.param(ARM, None, None, id="arm64 without model or core ids"),
        pytest.param("", None, None, id="empty"),
    ],
)
def test_cpuinfo_parsing(tmp_path, cpuinfo, model, physical):
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    cpu = detect_cpu(proc=tmp_path)
    assert cpu.physical_cores == physical
    if model is None:
        assert cpu.model  # falls back to the platform's name for the processor
    else:
        assert cpu.model == model


def test_cpu_without_proc_files(tmp_path):
    # neither cpuinfo nor meminfo: the platform's processor name and sysconf's memory
    cpu = detect_cpu(proc=tmp_path)
    assert cpu.model and cpu.physical_cores is None
    assert cpu.memory_total_bytes == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def test_memory_from_meminfo(tmp_path):
    (tmp_path / "meminfo").write_text("MemTotal:       16384 kB\nMemFree:        1024 kB\n")
    assert detect_cpu(proc=tmp_path).memory_total_bytes == 16384 * 1024


# --------------------------------------------------------------------------- NVML fallbacks


def test_nvml_binding_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    view = detect_nvml()
    assert view.status is NvmlStatus.NOT_INSTALLED
    assert "cannot import pynvml" in view.detail and view.gpus == ()
    inventory = detect(with_torch=False)
    assert inventory.gpu_class == CPU_DEV_CLASS and inventory.choice.source == "cpu"
    assert "NVML: not-installed" in inventory.choice.reason


@pytest.mark.skipif(nvml_available(), reason="NVML works here, so its library is not missing")
def test_nvml_library_not_found_on_this_machine():
    # No NVIDIA driver here: the real nvmlInit fails to load libnvidia-ml.so.
    view = detect_nvml()
    assert view.status is NvmlStatus.LIBRARY_NOT_FOUND
    assert "NVML Shared Library Not Found" in view.detail
    assert (view.gpus, view.driver_version) == ((), None)
    with pytest.raises(NvmlUnavailable, match=r"library-not-found") as caught:
        with nvml_session():
            pass
    assert caught.value.status is NvmlStatus.LIBRARY_NOT_FOUND
    inventory = detect(with_torch=False)
    assert (inventory.gpu_class, inventory.choice.gpu_count, inventory.gpus) == (CPU_DEV_CLASS, 1, ())


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, NvmlStatus.LIBRARY_NOT_FOUND),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, NvmlStatus.DRIVER_NOT_LOADED),
        (pynvml.NVML_ERROR_NO_PERMISSION, NvmlStatus.ERROR),
        (pynvml.NVML_ERROR_GPU_IS_LOST, NvmlStatus.ERROR),
    ],
)
def test_nvml_error_statuses(code, status):
    # The binding's own error factory builds the subclass NVML would raise for this code.
    assert status_of(pynvml, pynvml.NVMLError(code)) is status


@pytest.mark.parametrize(
    "nvml",
    [
        NvmlView(NvmlStatus.NO_DEVICES, "NVML found no GPU", "550.54.15", "12.4"),
        NvmlView(NvmlStatus.DRIVER_NOT_LOADED, "nvmlInit failed: Driver Not Loaded"),
        NvmlView(NvmlStatus.NOT_INSTALLED, "cannot import pynvml"),
    ],
    ids=lambda view: view.status.value,
)
def test_no_gpu_means_cpu_dev(nvml):
    choice = choose_class(nvml, NO_TORCH)
    assert (choice.gpu_class, choice.gpu_class_id, choice.gpu_count, choice.source) == (
        CPU_DEV_CLASS,
        class_by_name(CPU_DEV_CLASS).id,
        1,
        "cpu",
    )
    assert nvml.status.value in choice.reason and nvml.detail in choice.reason


# --------------------------------------------------------------------------- torch


def test_torch_view():
    view = detect_torch()
    try:
        import torch
    except ImportError:
        assert not view.installed and "cannot import torch" in view.detail
        return
    assert view.installed and view.version == torch.__version__
    assert view.cuda_available == torch.cuda.is_available()
    assert len(view.devices) == (torch.cuda.device_count() if view.cuda_available else 0)


def test_torch_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    view = detect_torch()
    assert not view.installed and view.devices == () and "cannot import torch" in view.detail


def test_torch_devices_decide_when_nvml_sees_none():
    # e.g. a container with CUDA but without the NVML library
    torch = TorchView(
        True,
        "2 CUDA device(s)",
        "2.13.0",
        True,
        "12.4",
        (
            TorchDevice(0, "NVIDIA A100-SXM4-80GB", "8.0", 80 << 30),
            TorchDevice(1, "NVIDIA A100-SXM4-80GB", "8.0", 80 << 30),
        ),
    )
    choice = choose_class(NvmlView(NvmlStatus.LIBRARY_NOT_FOUND, "nvmlInit failed"), torch)
    assert (choice.gpu_class, choice.gpu_count, choice.source) == ("a100", 2, "torch")


# --------------------------------------------------------------------------- class mapping


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-sxm"),
        ("NVIDIA H200", "h100-sxm"),
        ("NVIDIA GH200 480GB", "h100-sxm"),
        ("NVIDIA A100-SXM4-80GB", "a100"),
        ("NVIDIA A100-PCIE-40GB", "a100"),
        ("NVIDIA A100 80GB PCIe", "a100"),
        ("NVIDIA GeForce RTX 4090", "rtx4090"),
        ("NVIDIA L4", "l4-a10"),
        ("NVIDIA A10", "l4-a10"),
        ("NVIDIA A10G", "l4-a10"),
        # no class claims these: slower than a floor they would need, or simply not listed
        ("Tesla T4", None),
        ("NVIDIA L40S", None),
        ("NVIDIA A40", None),
        ("NVIDIA GeForce RTX 3090", None),
        ("Tesla V100-SXM2-16GB", None),
        ("AMD Instinct MI300X", None),
    ],
)
def test_class_for_gpu_name(name, expected):
    gpu_class, reason = class_for_gpu_name(name)
    assert gpu_class == expected
    assert name in reason
    if expected is None:
        assert "no class in the table matches" in reason
    else:
        class_by_name(expected)  # every answer is a row of the table


def test_class_of_several_gpus():
    choice = choose_class(nvml_with(*["NVIDIA H100 80GB HBM3"] * 8), NO_TORCH)
    assert (choice.gpu_class, choice.gpu_class_id, choice.gpu_count, choice.source) == (
        "h100-sxm",
        class_by_name("h100-sxm").id,
        8,
        "nvml",
    )


def test_unknown_gpu_gets_no_class_with_the_reason():
    choice = choose_class(nvml_with("NVIDIA H100 80GB HBM3", "Tesla T4"), NO_TORCH)
    assert (choice.gpu_class, choice.gpu_class_id, choice.gpu_count) == (None, None, 0)
    assert "'Tesla T4'" in choice.reason


def test_mixed_classes_get_no_class():
    choice = choose_class(nvml_with("NVIDIA A100-SXM4-80GB", "NVIDIA L4"), NO_TORCH)
    assert choice.gpu_class is None
    assert "different classes ['a100', 'l4-a10']" in choice.reason


def test_nvml_gpus_win_over_torch():
    torch = TorchView(True, "1 CUDA device(s)", "2.13.0", True, "12.4", (TorchDevice(0, "NVIDIA L4", "8.9", 24 << 30),))
    choice = choose_class(nvml_with("NVIDIA L4", "NVIDIA L4"), torch)
    assert (choice.gpu_class, choice.gpu_count, choice.source) == ("l4-a10", 2, "nvml")


# --------------------------------------------------------------------------- JSON


def test_inventory_json_round_trip():
    inventory = detect()
    text = inventory.to_json()
    assert Inventory.from_json(text) == inventory
    constructed = Inventory(
        1, detect_cpu(), nvml_with("NVIDIA L4"), NO_TORCH, choose_class(nvml_with("NVIDIA L4"), NO_TORCH)
    )
    assert Inventory.from_json(constructed.to_json(indent=None)) == constructed


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["cpu"].update(logical_cores="2"), "valid integer"),
        (lambda d: d["nvml"].update(status="maybe"), "Input should be"),
        (lambda d: d.update(extra=1), "Unexpected keyword argument"),
        (lambda d: d["choice"].pop("reason"), r"choice.reason\n  Field required"),
    ],
)
def test_inventory_json_is_validated(edit, message):
    data = json.loads(detect(with_torch=False).to_json())
    edit(data)
    with pytest.raises(ValueError, match=message):
        Inventory.from_json(json.dumps(data))


# --------------------------------------------------------------------------- with a GPU


@pytest.mark.gpu
def test_inventory_agrees_with_nvml(nvml_gpus):
    inventory = detect()
    assert inventory.nvml.status is NvmlStatus.OK and inventory.nvml.driver_version
    assert [(g.index, g.name, g.uuid, g.memory_total_bytes) for g in inventory.gpus] == [
        (g.index, g.name, g.uuid, g.memory_total_bytes) for g in nvml_gpus
    ]
    for info in inventory.gpus:
        assert info.power_limit_watts is None or info.power_limit_watts > 0
        assert info.compute_capability is None or re.fullmatch(r"\d+\.\d+", info.compute_capability)
    assert inventory.choice.source == "nvml"
    expected = [class_for_gpu_name(g.name)[0] for g in nvml_gpus]
    if None not in expected and len(set(expected)) == 1:
        assert (inventory.gpu_class, inventory.choice.gpu_count) == (expected[0], len(nvml_gpus))
    else:
        assert inventory.gpu_class is None


@pytest.mark.gpu
def test_torch_sees_the_gpus_nvml_lists(nvml_gpus):
    view = detect_torch()
    if not view.cuda_available:
        pytest.skip(f"torch has no CUDA here: {view.detail}")
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        pytest.skip("CUDA_VISIBLE_DEVICES hides some of NVML's GPUs from torch")
    assert sorted(d.name for d in view.devices) == sorted(g.name for g in nvml_gpus)
