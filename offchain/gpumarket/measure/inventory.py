"""What a machine has: its GPUs (through NVML, and torch's view when torch is installed),
its CPU always, and the GPU class it can claim.

Nothing here raises because a GPU stack is missing: no ``pynvml`` module, no NVML library,
no driver loaded or no device each leave ``Inventory.gpus`` empty, with the reason in
``Inventory.nvml`` (and likewise ``Inventory.torch`` for torch), so the same call works on a
GPU server and on a 2-core laptop.

The class is chosen from the GPU names by the device patterns of the class table
(``gpumarket.measure.classes``): every GPU must map to the same class, and a machine without a
GPU is ``cpu-dev``. A GPU that no class claims, or a mix of classes, gives no class
(``gpu_class is None``) with the reason, so a provider never claims a class by accident.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import platform
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from gpumarket.measure.classes import class_by_name, class_for_device_name
from gpumarket.measure.nvml import NvmlStatus, NvmlUnavailable, as_text, nvml_query, nvml_session, status_of
from gpumarket.measure.records import STRICT, parse_json

__all__ = [
    "CPU_DEV_CLASS",
    "INVENTORY_VERSION",
    "ClassChoice",
    "CpuInfo",
    "GpuInfo",
    "Inventory",
    "NvmlStatus",
    "NvmlView",
    "TorchDevice",
    "TorchView",
    "choose_class",
    "class_for_gpu_name",
    "detect",
    "detect_cpu",
    "detect_nvml",
    "detect_torch",
]

log = logging.getLogger(__name__)

INVENTORY_VERSION = 1
CPU_DEV_CLASS = "cpu-dev"


# --------------------------------------------------------------------------- types


@dataclass(frozen=True)
class CpuInfo:
    """The host CPU and memory."""

    __pydantic_config__ = STRICT

    model: str
    logical_cores: int  # os.cpu_count(): every online hardware thread
    usable_cores: int  # the cores this process may run on (affinity, e.g. a container's cpuset)
    physical_cores: int | None  # distinct (package, core) pairs; None where /proc/cpuinfo lacks them
    memory_total_bytes: int


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as NVML reports it."""

    __pydantic_config__ = STRICT

    index: int  # NVML index (ignores CUDA_VISIBLE_DEVICES, unlike torch's indices)
    name: str
    uuid: str
    memory_total_bytes: int
    power_limit_watts: float | None  # enforced power limit; None where NVML does not support it
    compute_capability: str | None  # "9.0"; None where NVML does not support it
    pci_bus_id: str | None


@dataclass(frozen=True)
class NvmlView:
    """What NVML said, or why it said nothing."""

    __pydantic_config__ = STRICT

    status: NvmlStatus
    detail: str  # the error text, or a short note when status is OK
    driver_version: str | None = None
    cuda_driver_version: str | None = None  # the CUDA version the driver supports, "12.4"
    gpus: tuple[GpuInfo, ...] = ()


@dataclass(frozen=True)
class TorchDevice:
    """One CUDA device as torch sees it (index in torch's numbering)."""

    __pydantic_config__ = STRICT

    index: int
    name: str
    compute_capability: str
    memory_total_bytes: int


@dataclass(frozen=True)
class TorchView:
    """torch's view of the machine; ``installed`` False when torch cannot be imported."""

    __pydantic_config__ = STRICT

    installed: bool
    detail: str
    version: str | None = None
    cuda_available: bool = False
    cuda_version: str | None = None  # the CUDA version torch was built with; None on a CPU build
    devices: tuple[TorchDevice, ...] = ()


@dataclass(frozen=True)
class ClassChoice:
    """The class a machine can claim, with the reason for it (or for having none)."""

    __pydantic_config__ = STRICT

    gpu_class: str | None
    gpu_class_id: int | None  # the on-chain id (GpuMarket.register's gpu_class)
    gpu_count: int  # GPUs of that class; 1 for cpu-dev (the CPU counts as one unit); 0 when no class
    source: str  # "nvml", "torch" or "cpu": whose device list decided
    reason: str


@dataclass(frozen=True)
class Inventory:
    """Everything detected on one machine, JSON-serialisable (``to_json`` / ``from_json``)."""

    __pydantic_config__ = STRICT

    version: int
    cpu: CpuInfo
    nvml: NvmlView
    torch: TorchView
    choice: ClassChoice

    @property
    def gpus(self) -> tuple[GpuInfo, ...]:
        return self.nvml.gpus

    @property
    def gpu_class(self) -> str | None:
        return self.choice.gpu_class

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Inventory:
        """Parses and validates an inventory produced by ``to_json`` (raises ValueError)."""
        return parse_json(cls, text)


# --------------------------------------------------------------------------- CPU


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _parse_cpuinfo(text: str) -> tuple[str | None, int | None]:
    """(model, physical cores) from /proc/cpuinfo text; either may be None."""
    model: str | None = None
    cores: set[tuple[str, str]] = set()
    package = core = None
    # Processor blocks are separated by blank lines; a trailing "" closes the last one.
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if core is not None:
                cores.add((package or "0", core))
            package = core = None
            continue
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        # x86 says "model name"; arm64 kernels may say "Model" or only "CPU part".
        if model is None and key in ("model name", "Model", "Processor", "cpu model") and value:
            model = value
        elif key == "physical id":
            package = value
        elif key == "core id":
            core = value
    return model, (len(cores) or None)


def _memory_total_bytes(proc: Path) -> int:
    text = _read_text(proc / "meminfo")
    if text is not None:
        match = re.search(r"^MemTotal:\s+(\d+)\s+kB", text, re.MULTILINE)
        if match:
            return int(match.group(1)) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def detect_cpu(proc: Path = Path("/proc")) -> CpuInfo:
    """The CPU model, core counts and total memory of this machine (``proc``: where procfs is)."""
    cpuinfo = _read_text(proc / "cpuinfo")
    model, physical = _parse_cpuinfo(cpuinfo) if cpuinfo is not None else (None, None)
    logical = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else logical
    return CpuInfo(
        model=model or platform.processor() or platform.machine() or "unknown",
        logical_cores=logical,
        usable_cores=usable,
        physical_cores=physical,
        memory_total_bytes=_memory_total_bytes(proc),
    )


# --------------------------------------------------------------------------- NVML


def _cuda_version_text(encoded: int | None) -> str | None:
    # NVML and the CUDA driver API encode 12.4 as 12040.
    return None if encoded is None else f"{encoded // 1000}.{encoded % 1000 // 10}"


def _gpu_info(pynvml: ModuleType, index: int) -> GpuInfo:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    limit_mw = nvml_query(pynvml, pynvml.nvmlDeviceGetEnforcedPowerLimit, handle)
    capability = nvml_query(pynvml, pynvml.nvmlDeviceGetCudaComputeCapability, handle)
    pci = nvml_query(pynvml, pynvml.nvmlDeviceGetPciInfo, handle)
    return GpuInfo(
        index=index,
        name=as_text(pynvml.nvmlDeviceGetName(handle)),
        uuid=as_text(pynvml.nvmlDeviceGetUUID(handle)),
        memory_total_bytes=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
        power_limit_watts=None if limit_mw is None else limit_mw / 1000,
        compute_capability=None if capability is None else f"{capability[0]}.{capability[1]}",
        pci_bus_id=None if pci is None else as_text(pci.busId),
    )


def detect_nvml() -> NvmlView:
    """The GPUs NVML lists; never raises for a missing binding, library, driver or device."""
    try:
        with nvml_session() as pynvml:
            try:
                driver = as_text(pynvml.nvmlSystemGetDriverVersion())
                cuda = _cuda_version_text(nvml_query(pynvml, pynvml.nvmlSystemGetCudaDriverVersion))
                gpus = tuple(_gpu_info(pynvml, index) for index in range(pynvml.nvmlDeviceGetCount()))
            except pynvml.NVMLError as error:
                return NvmlView(status_of(pynvml, error), f"NVML query failed: {error}")
    except NvmlUnavailable as error:
        return NvmlView(error.status, error.detail)
    if not gpus:
        return NvmlView(NvmlStatus.NO_DEVICES, "NVML found no GPU", driver, cuda)
    return NvmlView(NvmlStatus.OK, f"{len(gpus)} GPU(s)", driver, cuda, gpus)


# --------------------------------------------------------------------------- torch


def detect_torch() -> TorchView:
    """torch's version and CUDA devices, or why torch is not there."""
    try:
        torch = importlib.import_module("torch")
    except (ImportError, OSError) as error:  # OSError: a build whose CUDA libraries do not load
        return TorchView(installed=False, detail=f"cannot import torch: {error}")
    cuda_version = torch.version.cuda
    if not torch.cuda.is_available():
        why = "CPU-only build" if cuda_version is None else "no CUDA device visible to torch"
        return TorchView(True, why, torch.__version__, False, cuda_version)
    devices = []
    try:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(TorchDevice(index, props.name, f"{props.major}.{props.minor}", int(props.total_memory)))
    except RuntimeError as error:  # CUDA initialisation can still fail (driver too old, GPU lost)
        return TorchView(True, f"CUDA query failed: {error}", torch.__version__, False, cuda_version)
    return TorchView(True, f"{len(devices)} CUDA device(s)", torch.__version__, True, cuda_version, tuple(devices))


# --------------------------------------------------------------------------- classes


def class_for_gpu_name(name: str) -> tuple[str | None, str]:
    """(class name or None, reason) for one GPU name, by the class table's device patterns."""
    try:
        gpu_class = class_for_device_name(name)
    except ValueError as error:  # a name two classes claim: refuse rather than pick one
        return None, str(error)
    if gpu_class is None:
        return None, f"no class in the table matches GPU {name!r}"
    return gpu_class.name, f"{name!r} is {gpu_class.name}"


def choose_class(nvml: NvmlView, torch: TorchView) -> ClassChoice:
    """The class of the machine: from NVML's GPUs, else torch's, else cpu-dev."""
    if nvml.gpus:
        names, source = [gpu.name for gpu in nvml.gpus], "nvml"
    elif torch.devices:
        names, source = [device.name for device in torch.devices], "torch"
    else:
        why = f"no GPU (NVML: {nvml.status.value}: {nvml.detail}; torch: {torch.detail})"
        return ClassChoice(CPU_DEV_CLASS, class_by_name(CPU_DEV_CLASS).id, 1, "cpu", why)
    verdicts = [class_for_gpu_name(name) for name in names]
    unknown = [reason for cls, reason in verdicts if cls is None]
    if unknown:
        return ClassChoice(None, None, 0, source, "; ".join(unknown))
    classes = sorted({cls for cls, _ in verdicts if cls is not None})
    if len(classes) > 1:
        return ClassChoice(None, None, 0, source, f"GPUs of different classes {classes}: a claim covers one class")
    chosen = class_by_name(classes[0])
    return ClassChoice(chosen.name, chosen.id, len(names), source, f"{len(names)} x {verdicts[0][1]}")


# --------------------------------------------------------------------------- entry point


def detect(*, with_torch: bool = True) -> Inventory:
    """Detects this machine's CPU, GPUs and class. ``with_torch=False`` skips importing torch."""
    nvml = detect_nvml()
    torch = detect_torch() if with_torch else TorchView(installed=False, detail="not checked")
    inventory = Inventory(INVENTORY_VERSION, detect_cpu(), nvml, torch, choose_class(nvml, torch))
    log.info("inventory: class %s (%s)", inventory.choice.gpu_class, inventory.choice.reason)
    return inventory
