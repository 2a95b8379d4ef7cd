"""What the market benchmark measures, and how each figure is defined.

- **CPU seconds** of a process: user + system time from ``/proc/<pid>/stat`` (its own threads
  and reaped children), the difference between two reads (:func:`cpu_seconds`).
- **Memory**: resident set size, ``VmRSS`` of ``/proc/<pid>/status``, sampled every
  ``interval_s`` by :class:`ProcessWatch` (the largest sample is the peak over the window; the
  first is the baseline), beside the kernel's own high-water mark ``VmHWM``.
- **The job loop's lag**: each oracle's ``GET /health`` (``job_loop.lag_s``, how late its steps
  start after they fell due), sampled with the memory; the largest is reported.
- **Steps and polls**: each oracle's ``gpumarket_oracle_job_steps_total`` counter by action
  (``GET /metrics``), read before and after the load (:func:`job_steps`).
- **Latency** of a job: from its end (the agent's ``finished_at``) to the wall-clock moment the
  benchmark's event watch first saw its ``JobSettled`` (a ``get_logs`` poll every quarter
  second): block timestamps are not used, since anvil runs ahead of the wall clock when it
  mines more than a block a second. p50 and p99 by linear interpolation (:func:`percentile`).
- **Gas per job**: the ``gasUsed`` of every transaction that emitted a ``JobSettled``, each
  counted once (a batch settles many jobs in one), over the jobs; and every transaction the
  oracles' senders sent during the load (a losing fallback's reverted one included), over
  the jobs (:func:`transactions_from`).
- **Heartbeats** (:func:`count_heartbeats`), per oracle and job, from the challenges the oracle
  recorded (``GET /challenges/job/<id>``) and the job's running window ``[s, f]`` from the
  agent: the job loop challenges a job when it first sees it running and then every
  ``heartbeat_interval_s`` after the last heartbeat while it runs. So heartbeat ``k`` is *owed*
  at ``d_1 = s``, ``d_{k+1} = t_k + H`` (``t_k`` the recorded time of heartbeat ``k``, or ``d_k``
  when it was missed), as long as ``d_k <= f - grace``: a heartbeat due within ``grace`` of the
  job's end cannot be asked of an agent that reports the job finished. A heartbeat recorded
  in ``[d_k, d_k + H)`` *answers* the owed one: **late** when it was recorded after ``d_k +
  grace``; an owed heartbeat with no record in that interval is **missed**. ``grace`` is one
  status poll (heartbeats ride on polls) plus ``late_grace_s`` for the challenge itself (the
  record's time is when the judgement ended: the turn's wait and the proving are in it).
  Heartbeats whose verdict is ``no answer`` are also counted as **unanswered**.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from web3 import Web3

from gpumarket.web.client import Timeouts, WebClient, WebError

__all__ = [
    "HeartbeatCount",
    "ProcessFigures",
    "ProcessWatch",
    "count_heartbeats",
    "cpu_seconds",
    "job_steps",
    "percentile",
    "rss_bytes",
    "spread",
    "transactions_from",
]

log = logging.getLogger(__name__)

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")
_STEPS = re.compile(r'^gpumarket_oracle_job_steps_total\{action="([^"]+)"\}\s+([0-9.eE+-]+)$', re.MULTILINE)
_QUICK = Timeouts(2.0, 5.0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (its reaped children included)."""
    text = (_PROC / str(pid) / "stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return sum(int(value) for value in fields[11:15]) / _CLOCK_TICKS


def _status_kib(pid: int, key: str) -> int:
    for line in (_PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` now (``VmRSS``)."""
    return _status_kib(pid, "VmRSS") * 1024


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear interpolation; NaN for no values."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else math.nan


def spread(values: Sequence[float]) -> dict[str, float]:
    """p50, p99, mean and max of ``values`` (seconds)."""
    if not values:
        return {"p50": math.nan, "p99": math.nan, "mean": math.nan, "max": math.nan}
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "mean": float(np.mean(values)),
        "max": float(max(values)),
    }


@dataclass(frozen=True)
class ProcessFigures:
    """One process over a watched window."""

    pid: int
    cpu_s: float
    rss_start_bytes: int
    rss_peak_bytes: int
    hwm_bytes: int  # VmHWM at the end: the process's peak over its whole life
    max_lag_s: float | None = None  # an oracle's job-loop lag, the largest sampled

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Watched:
    pid: int
    cpu_start: float
    rss_start: int
    rss_peak: int
    health_url: str | None = None
    max_lag: float | None = None
    client: WebClient | None = field(default=None, repr=False)


class ProcessWatch:
    """Samples named processes (and oracles' ``/health``) from a thread between ``start`` and ``stop``."""

    def __init__(
        self, pids: Mapping[str, int], health_urls: Mapping[str, str] | None = None, interval_s: float = 0.5
    ) -> None:
        self.pids = dict(pids)
        self.health_urls = dict(health_urls or {})
        self.interval_s = interval_s
        self._watched: dict[str, _Watched] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ProcessWatch:
        for name, pid in self.pids.items():
            rss = rss_bytes(pid)
            url = self.health_urls.get(name)
            self._watched[name] = _Watched(
                pid, cpu_seconds(pid), rss, rss, url, None, WebClient(url, timeouts=_QUICK) if url else None
            )
        self._thread = threading.Thread(target=self._run, name="marketbench-watch", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        for watched in self._watched.values():
            try:
                watched.rss_peak = max(watched.rss_peak, rss_bytes(watched.pid))
            except OSError:
                pass  # exited: stop() says so
            if watched.client is not None:
                try:
                    lag = watched.client.request("GET", "/health").json()["job_loop"]["lag_s"]
                    watched.max_lag = max(watched.max_lag or 0.0, float(lag))
                except (WebError, KeyError, TypeError, ValueError):
                    pass  # an oracle too busy to answer within the timeout: the next sample

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def stop(self) -> dict[str, ProcessFigures]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._sample()
        figures = {}
        for name, watched in self._watched.items():
            figures[name] = ProcessFigures(
                pid=watched.pid,
                cpu_s=cpu_seconds(watched.pid) - watched.cpu_start,
                rss_start_bytes=watched.rss_start,
                rss_peak_bytes=watched.rss_peak,
                hwm_bytes=_status_kib(watched.pid, "VmHWM") * 1024,
                max_lag_s=watched.max_lag,
            )
            if watched.client is not None:
                watched.client.close()
        return figures


def job_steps(oracle_url: str) -> dict[str, float]:
    """The oracle's job-loop steps so far, by action (its ``/metrics``)."""
    with WebClient(oracle_url, timeouts=Timeouts(5.0, 30.0)) as client:
        text = client.request("GET", "/metrics", limit=16 << 20).expect_ok().decode()
    return {action: float(value) for action, value in _STEPS.findall(text)}


@dataclass
class HeartbeatCount:
    owed: int = 0
    made: int = 0  # owed heartbeats that were recorded (on time or late)
    late: int = 0
    missed: int = 0
    unanswered: int = 0  # heartbeat records with no answer from the agent

    def add(self, other: HeartbeatCount) -> None:
        self.owed += other.owed
        self.made += other.made
        self.late += other.late
        self.missed += other.missed
        self.unanswered += other.unanswered

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def count_heartbeats(
    records: Iterable[Mapping[str, Any]], started_at: float, finished_at: float, interval_s: float, grace_s: float
) -> HeartbeatCount:
    """One oracle's heartbeats of one job against the rule (see the module docstring)."""
    heartbeats = sorted(
        (float(record["at"]), str(record["verdict"])) for record in records if record.get("kind") == "heartbeat"
    )
    count = HeartbeatCount(unanswered=sum(1 for _, verdict in heartbeats if verdict == "no answer"))
    times = [at for at, _ in heartbeats if at >= started_at]
    index, due = 0, started_at
    while due <= finished_at - grace_s:
        count.owed += 1
        while index < len(times) and times[index] < due:
            index += 1  # recorded before this one fell due: it answered an earlier one
        if index < len(times) and times[index] < due + interval_s:
            at = times[index]
            index += 1
            count.made += 1
            count.late += at > due + grace_s
            due = at + interval_s
        else:
            count.missed += 1
            due += interval_s
    return count


@dataclass(frozen=True)
class Transactions:
    count: int
    gas: int
    reverted: int

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def transactions_from(w3: Web3, senders: Iterable[str], from_block: int, to_block: int) -> Transactions:
    """Every transaction ``senders`` sent in blocks ``[from_block, to_block]``: count, gas, reverted."""
    wanted = {Web3.to_checksum_address(sender) for sender in senders}
    count = gas = reverted = 0
    for number in range(from_block, to_block + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            if not isinstance(tx, Mapping) or Web3.to_checksum_address(tx["from"]) not in wanted:
                continue
            receipt = w3.eth.get_transaction_receipt(tx["hash"])
            count += 1
            gas += int(receipt["gasUsed"])
            reverted += int(receipt["status"]) != 1
    return Transactions(count, gas, reverted)


def settlement_gas(w3: Web3, tx_hashes: Iterable[str]) -> Transactions:
    """The distinct settling transactions' count and gas."""
    distinct = sorted(set(tx_hashes))
    gas = 0
    for tx_hash in distinct:
        gas += int(w3.eth.get_transaction_receipt(tx_hash)["gasUsed"])  # type: ignore[arg-type]
    return Transactions(len(distinct), gas, 0)


def wait_until(condition: Any, timeout_s: float, what: str, interval_s: float = 0.25) -> None:
    """Polls ``condition()`` until true; TimeoutError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)
