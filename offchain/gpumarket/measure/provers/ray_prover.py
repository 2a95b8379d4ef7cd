"""The cluster prover: a challenge's rounds computed on every GPU of the provider's Ray cluster.

A cluster provider sells the GPUs of its Ray cluster (the agent is the cluster's driver), so the
committee must time all of them at once: ``RayProver`` spreads a challenge's rounds over the
cluster's GPU **slots**, one slot per GPU a node declares, ``(node id, GPU index)``, and yields
each round's fingerprints as it arrives, so the base class hashes leaves while the slots go on.
The measured throughput is the sum over every GPU of every node. The verifier does not change: it
sees one root, as from a single machine with that many GPUs.

Placement: one pinned actor per slot, holding no Ray resources.

* Each slot has an actor created with ``NodeAffinitySchedulingStrategy(node, soft=False)``,
  ``num_gpus=0`` and ``num_cpus=0``. Ray treats GPUs as exclusive: a ``num_gpus=1`` task waits
  while a job holds that GPU, and the oracles time heartbeat challenges DURING jobs, so the
  prover must never queue behind the jobs it is measuring. Holding no resources, the actors are
  always placeable and always runnable; the slot's actor computes on device ``cuda:<index>``,
  the very GPU Ray hands to jobs as GPU id ``index`` on that node, so a heartbeat lands on the
  job's own GPUs and shares them (as TorchProver does beside a container job), and what it
  measures during a job is what the job leaves.
* Ray sets ``CUDA_VISIBLE_DEVICES=""`` in a ``num_gpus=0`` worker; the actors are started with
  ``RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO=0`` in their runtime env, so they keep the node's view of
  its GPUs and ``cuda:<index>`` means what Ray means by GPU ``index``. That runtime env also
  gives them worker processes of their own, fresh ones: a reused task worker might hold a CUDA
  context made under another device mask.
* Actors, not tasks: an actor is a warm process that keeps its backend between challenges (a
  TorchProver probes its matmul paths and may ``torch.compile``: seconds that must not fall in
  the oracle's timed window), and a call to it goes straight to that process, where a task would
  be scheduled (and might start a worker) each time. The actor class is made once per process.
  ``warm_up`` starts them; the agent calls it once connected.
* Rounds are handed out dynamically: each slot has up to ``in_flight`` rounds queued (so it never
  idles between two) and gets the next unassigned round as each one comes back, so a slot slowed
  by a job's work does fewer rounds rather than holding up the challenge. The first pass goes
  round r to slot r, with slots ordered GPU index first, so consecutive rounds land on different
  nodes and a challenge of one round per GPU puts exactly one round on every GPU.
* Nothing large travels: each call carries the Challenge (a few hundred bytes) and a round index,
  and the actor derives A and B from the seed; only the fingerprints (8 bytes a tile) come back.
* The cluster is read again at every challenge (one GCS call): slots of nodes that left are
  dropped, a slot whose actor died has its rounds handed to the others, and a node that joined
  gets actors that serve from the first challenge after they are up (one starting never stalls a
  timed challenge, unless no slot is up at all).

Each slot's backend is the node's own: ``auto`` (torch on ``cuda:<index>`` when torch sees that
GPU, numpy otherwise), or ``numpy``/``torch`` for every slot. ``cheat_on`` (node id -> q) makes
the slots of those nodes compute only a fraction q of each round's tile rows, as SkippingProver
does, and commit 0 for the rest: the dishonest node of the tests and the demo's cheater.

What a cluster challenge proves: that between t0 and t1 the provider's cluster computed the
exact products of fresh matrices at the measured rate (less what the opening would catch being
skipped, with the usual bound q**k however the skipping is split between nodes), which on a
cluster of honest declarations is the sum of its GPUs. What it does not prove:

* which physical device computed a round, or that the slots are distinct GPUs at all: a node's
  GPU count is its own declaration (``ray start --num-gpus``) and the node ids, devices and
  backends that ``describe`` and ``rounds`` report are the provider's word, not evidence. The
  oracle judges only the aggregate rate, so many weak or CPU-only slots pass exactly when their
  sum reaches the floor of the GPUs claimed (as several weaker cards in one machine would);
* anything about the links between nodes: a round needs no communication, so a job spread over
  nodes may run far slower than the challenge suggests (no interconnect is measured);
* that jobs run on the slots that answered, memory capacity, or exclusive use (as on one
  machine; see docs/ARCHITECTURE.md, "What it proves, and what it does not").

Every node needs gpumarket installed (the actors import this module by name), as it needs Ray.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gpumarket.cluster.connect import ClusterError, require_ray
from gpumarket.measure.messages import Challenge
from gpumarket.measure.provers.base import ProverError, TileProver
from gpumarket.measure.provers.numpy_prover import NumpyProver

__all__ = ["NODE_BACKENDS", "GpuSlot", "RayProver", "RoundRecord", "cluster_gpu_slots"]

log = logging.getLogger(__name__)

NODE_BACKENDS = ("auto", "numpy", "torch")
# Without this in an actor's environment, Ray empties CUDA_VISIBLE_DEVICES in num_gpus=0 workers.
_KEEP_DEVICES_ENV = {"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0"}

RoundFingerprints = Callable[[Challenge, int], npt.NDArray[np.int64]]


@dataclass(frozen=True, order=True)
class GpuSlot:
    """One GPU the cluster sells: the node holding it and its Ray GPU index there."""

    node_id: str
    gpu_index: int


@dataclass(frozen=True)
class RoundRecord:
    """Who computed one round of the last challenge, as the slot reported it (node clocks)."""

    round: int
    node_id: str
    gpu_index: int
    backend: str
    started: float  # time.time() on the node
    ended: float


def cluster_gpu_slots(accelerator_type: str | None = None) -> list[GpuSlot]:
    """Every GPU of the joined cluster's alive nodes, as slots ordered GPU index first, then node
    (so that handing out rounds in this order alternates nodes). ``accelerator_type`` keeps only
    nodes Ray labels with that type (``accelerator_type:<type>``, e.g. ``H100``): the one class
    the provider sells."""
    require_ray()
    import ray

    slots = []
    for node in ray.nodes():
        resources = node.get("Resources", {})
        if not node.get("Alive") or (accelerator_type and f"accelerator_type:{accelerator_type}" not in resources):
            continue
        slots += [GpuSlot(str(node["NodeID"]), index) for index in range(int(resources.get("GPU", 0)))]
    return sorted(slots, key=lambda slot: (slot.gpu_index, slot.node_id))


# ---------------------------------------------------------------------------- on the node


def _numpy_rounds() -> tuple[RoundFingerprints, str]:
    prover = NumpyProver()

    def fingerprints(challenge: Challenge, round_index: int) -> npt.NDArray[np.int64]:
        rows = np.arange(challenge.m // challenge.tile, dtype=np.int64)
        return prover.fingerprint_rows(challenge, round_index, rows).reshape(-1)

    return fingerprints, "cpu"


def _torch_rounds(gpu_index: int, require_cuda: bool) -> tuple[RoundFingerprints, str] | None:
    """Torch on ``cuda:<gpu_index>``; on torch's CPU device only when not ``require_cuda``;
    None when torch is absent or (with ``require_cuda``) does not see that GPU."""
    try:
        import torch

        from gpumarket.measure.provers.torch_prover import TorchProver
    except ImportError:
        if require_cuda:
            return None
        raise ProverError("the torch backend needs torch on every node: pip install 'gpumarket[gpu]'") from None
    if torch.cuda.is_available() and gpu_index < torch.cuda.device_count():
        device = torch.device("cuda", gpu_index)
        name = str(torch.cuda.get_device_name(device))
    elif require_cuda:
        return None
    else:
        device, name = torch.device("cpu"), "cpu"
    prover = TorchProver(devices=[device])
    # TorchProver hands rounds to its devices itself; one device here, one round at a time.
    kernels = prover._kernels[0]

    def fingerprints(challenge: Challenge, round_index: int) -> npt.NDArray[np.int64]:
        return prover._round(kernels, challenge, round_index)

    return fingerprints, name


def _skipping_rounds(q: float) -> RoundFingerprints:
    """SkippingProver's rounds one at a time: a random fraction q of the tile rows computed, 0
    committed for the rest (the tiles it skips are caught when opened)."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")
    prover, rng = NumpyProver(), np.random.default_rng()

    def fingerprints(challenge: Challenge, round_index: int) -> npt.NDArray[np.int64]:
        tile_rows = challenge.m // challenge.tile
        out = np.zeros((tile_rows, challenge.tile_columns), dtype=np.int64)
        chosen = np.sort(rng.choice(tile_rows, size=round(q * tile_rows), replace=False)).astype(np.int64)
        if len(chosen):
            out[chosen] = prover.fingerprint_rows(challenge, round_index, chosen)
        return out.reshape(-1)

    return fingerprints


class SlotWorker:
    """One slot's prover (a Ray actor on its node): the backend stays warm between challenges."""

    def __init__(self, gpu_index: int, backend: str, skip_q: float | None) -> None:
        import ray

        self.node_id = ray.get_runtime_context().get_node_id()
        self.gpu_index = gpu_index
        chosen = None
        if backend in ("auto", "torch"):
            chosen = _torch_rounds(gpu_index, require_cuda=backend == "auto")
            self.backend = "torch"
        if chosen is None:
            chosen, self.backend = _numpy_rounds(), "numpy"
        self._fingerprints, self.device = chosen
        if skip_q is not None:
            self._fingerprints, self.backend = _skipping_rounds(skip_q), f"{self.backend}-skipping"

    def describe(self) -> dict[str, object]:
        return {
            "node_id": self.node_id,
            "gpu_index": self.gpu_index,
            "backend": self.backend,
            "device": self.device,
        }

    def round(self, challenge: Challenge, round_index: int) -> tuple[npt.NDArray[np.int64], float, float]:
        """One round's fingerprints, with when (this node's wall clock) it started and ended."""
        started = time.time()
        fingerprints = self._fingerprints(challenge, round_index)
        return fingerprints, started, time.time()


# ---------------------------------------------------------------------------- on the driver


@functools.cache
def _remote_worker() -> Any:
    """SlotWorker as a Ray actor class, made once: Ray exports a class to the cluster per make."""
    import ray

    return ray.remote(SlotWorker)


@dataclass
class _Slot:
    slot: GpuSlot
    actor: Any  # ray.actor.ActorHandle of a SlotWorker
    ready: Any  # ObjectRef of its describe(), resolved once the actor is up
    info: dict[str, object] | None = None  # its describe(), once up


class RayProver(TileProver):
    """Answers challenges on every GPU slot of the joined Ray cluster (``connect`` first).

    ``gpu_slots``: the slots to use; None reads them from the cluster at every challenge (those
    of ``accelerator_type`` nodes only, when given). ``node_backend``: each slot's backend
    (auto, numpy, torch). ``cheat_on``: node id -> q, for tests and the demo's cheater only.
    ``in_flight``: rounds queued per slot. A challenge fails (ProverError) when no round comes
    back for ``round_timeout_s``, or no slot is up ``start_timeout_s`` after it began waiting.
    """

    backend = "ray"

    def __init__(
        self,
        gpu_slots: Sequence[GpuSlot] | None = None,
        *,
        node_backend: str = "auto",
        accelerator_type: str | None = None,
        cheat_on: Mapping[str, float] | None = None,
        in_flight: int = 2,
        round_timeout_s: float = 120.0,
        start_timeout_s: float = 300.0,
    ) -> None:
        super().__init__()
        if node_backend not in NODE_BACKENDS:
            raise ProverError(f"unknown node backend {node_backend!r}; choose from {', '.join(NODE_BACKENDS)}")
        if in_flight < 1:
            raise ValueError(f"in_flight must be at least 1, got {in_flight}")
        self._fixed_slots = sorted(gpu_slots, key=lambda s: (s.gpu_index, s.node_id)) if gpu_slots else None
        self.node_backend = node_backend
        self.accelerator_type = accelerator_type
        self.cheat_on = dict(cheat_on or {})
        self.in_flight = in_flight
        self.round_timeout_s = round_timeout_s
        self.start_timeout_s = start_timeout_s
        self._slots: dict[GpuSlot, _Slot] = {}
        self._lock = threading.Lock()  # slots: a challenge and describe() may run at once
        self.rounds: list[RoundRecord] = []  # the last challenge's rounds, in arrival order

    # ------------------------------------------------------------------ slots

    def _wanted(self) -> list[GpuSlot]:
        require_ray()
        import ray

        if not ray.is_initialized():
            raise ClusterError("this process has not joined the cluster: gpumarket.cluster.connect(address) first")
        return list(self._fixed_slots) if self._fixed_slots is not None else cluster_gpu_slots(self.accelerator_type)

    def _start(self, slot: GpuSlot) -> _Slot:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        worker = _remote_worker().options(
            num_cpus=0,
            num_gpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(slot.node_id, soft=False),
            runtime_env={"env_vars": dict(_KEEP_DEVICES_ENV)},
            max_restarts=0,
        )
        actor: Any = worker.remote(slot.gpu_index, self.node_backend, self.cheat_on.get(slot.node_id))
        return _Slot(slot, actor, actor.describe.remote())

    def _drop(self, slot: GpuSlot, why: str, level: int = logging.WARNING) -> None:
        import ray

        entry = self._slots.pop(slot, None)
        if entry is not None:
            log.log(level, "prover slot %s/gpu%d dropped: %s", slot.node_id[:12], slot.gpu_index, why)
            ray.kill(entry.actor, no_restart=True)

    def _refresh(self, wait_s: float) -> list[_Slot]:
        """Bring the actors in line with the cluster and return the slots that are up, in slot
        order. Slots still starting are left out (a node that just joined serves from a later
        challenge), unless none is up: then all of them are waited for, up to ``wait_s``."""
        wanted = self._wanted()
        with self._lock:
            for slot in [s for s in self._slots if s not in wanted]:
                self._drop(slot, "its node left the cluster")
            for slot in wanted:
                if slot not in self._slots:
                    self._slots[slot] = self._start(slot)

        def up() -> list[_Slot]:
            with self._lock:
                return [self._slots[s] for s in wanted if s in self._slots and self._slots[s].info is not None]

        self._collect_starts(0.0)
        if up():
            return up()
        # A cold start (the first challenge, or every slot restarting): they started together.
        if self._collect_starts(wait_s) and not up():
            raise ProverError(f"no prover slot of the cluster came up within {wait_s:.0f} s")
        return up()

    def _collect_starts(self, timeout_s: float) -> int:
        """Settle the actors that come up within ``timeout_s`` (the lock is not held while
        waiting); returns how many are still starting."""
        import ray

        with self._lock:
            starting = {entry.ready: entry for entry in self._slots.values() if entry.info is None}
        if not starting:
            return 0
        done, _ = ray.wait(list(starting), num_returns=len(starting), timeout=timeout_s)
        with self._lock:
            for ref in done:
                if self._slots.get(starting[ref].slot) is starting[ref]:  # not dropped meanwhile
                    self._settle_start(starting[ref], ref)
        return len(starting) - len(done)

    def _settle_start(self, entry: _Slot, ref: Any) -> None:
        import ray

        try:
            info = ray.get(ref)
        except ray.exceptions.RayError as error:
            self._drop(entry.slot, f"its prover did not start: {error}")
            return
        if info["node_id"] != entry.slot.node_id:  # hard affinity makes this impossible; say so if not
            self._drop(entry.slot, f"its prover runs on node {info['node_id']}")
            return
        entry.info = info

    def warm_up(self) -> dict[str, object]:
        """Start every slot's prover and wait (up to ``start_timeout_s``) until all are up, so
        the first challenge pays no start-up; returns ``describe()``."""
        self._refresh(self.start_timeout_s)
        self._collect_starts(self.start_timeout_s)
        return self.describe()

    def close(self) -> None:
        """End every slot's actor (a later challenge starts them again)."""
        with self._lock:
            for slot in list(self._slots):
                self._drop(slot, "the prover was closed", logging.DEBUG)

    # ------------------------------------------------------------------ challenges

    def round_fingerprints(self, challenge: Challenge) -> Iterator[tuple[int, npt.NDArray[np.int64]]]:
        require_ray()
        import ray

        try:
            slots = self._refresh(self.start_timeout_s)
        except ClusterError as error:
            raise ProverError(f"the cluster cannot answer: {error}") from None
        if not slots:
            raise ProverError("the cluster has no GPU slot to answer with")
        todo = deque(range(challenge.rounds))
        running: dict[Any, tuple[_Slot, int]] = {}  # ObjectRef -> (slot, round)
        queued = dict.fromkeys((entry.slot for entry in slots), 0)
        records: list[RoundRecord] = []
        self.rounds = records

        def send(entry: _Slot) -> None:
            round_index = todo.popleft()
            running[entry.actor.round.remote(challenge, round_index)] = (entry, round_index)
            queued[entry.slot] += 1

        try:
            # Round r to slot r first, so every slot starts at once and, with one round per GPU,
            # every GPU gets exactly one; then up to in_flight each.
            for _ in range(self.in_flight):
                for entry in slots:
                    if todo:
                        send(entry)
            while running:
                done, _ = ray.wait(list(running), num_returns=1, timeout=self.round_timeout_s)
                if not done:
                    raise ProverError(f"no round of the challenge came back within {self.round_timeout_s:.0f} s")
                entry, round_index = running.pop(done[0])
                queued[entry.slot] -= 1
                try:
                    fingerprints, started, ended = ray.get(done[0])
                except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as error:
                    # The slot (or its node) is gone: its rounds go back to the slots still up.
                    lost = [ref for ref, (owner, _) in running.items() if owner is entry]
                    todo.extendleft(sorted([round_index, *(running.pop(ref)[1] for ref in lost)], reverse=True))
                    with self._lock:
                        self._drop(entry.slot, f"it failed during a challenge: {type(error).__name__}")
                    slots = [other for other in slots if other is not entry]
                    if not slots:
                        raise ProverError("every prover slot of the cluster failed during the challenge") from error
                    for other in slots:
                        while todo and queued[other.slot] < self.in_flight:
                            send(other)
                    continue
                except ray.exceptions.RayTaskError as error:
                    raise ProverError(f"slot {entry.slot} failed round {round_index}: {error}") from None
                assert entry.info is not None  # only slots that are up get rounds
                backend = str(entry.info["backend"])
                records.append(
                    RoundRecord(round_index, entry.slot.node_id, entry.slot.gpu_index, backend, started, ended)
                )
                if todo:
                    send(entry)
                yield round_index, fingerprints
        finally:
            for ref in running:  # a failed or abandoned challenge: stop what is still queued
                with contextlib.suppress(Exception):  # best effort: it may have just finished
                    ray.cancel(ref)

    # ------------------------------------------------------------------ reports

    def describe(self) -> dict[str, object]:
        """Backend "ray"; each slot's device (``devices``, in slot order); per node its GPU slots,
        their backends and devices, and the rounds it computed in the last challenge."""
        with self._lock:
            infos = [entry.info for _, entry in sorted(self._slots.items()) if entry.info is not None]
        rounds: dict[str, int] = {}
        for record in self.rounds:
            rounds[record.node_id] = rounds.get(record.node_id, 0) + 1
        nodes: dict[str, dict[str, object]] = {}
        for node_id in dict.fromkeys(str(info["node_id"]) for info in infos):
            own = [info for info in infos if info["node_id"] == node_id]
            nodes[node_id] = {
                "gpus": len(own),
                "backends": sorted({str(info["backend"]) for info in own}),
                "devices": [str(info["device"]) for info in own],
                "last_rounds": rounds.get(node_id, 0),
            }
        return {"backend": self.backend, "devices": [str(info["device"]) for info in infos], "nodes": nodes}
