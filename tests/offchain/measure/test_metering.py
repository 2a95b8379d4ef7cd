"""gpumarket.measure.metering: sampling real processes, the evidence hash, billable time."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
import threading
import time

import pytest

from gpumarket.measure.metering import (
    ChallengeResult,
    GpuSample,
    GpuUsage,
    JobFailed,
    JobMeter,
    Sample,
    SampleJournal,
    UsageReading,
    UsageRecord,
    billable_gpu_seconds,
    canonical_json,
    evidence_hash,
    meter_call,
    meter_pid,
    summarize,
)
from gpumarket.measure.nvml import nvml_available
from gpumarket.measure.records import parse_json

# Burns `seconds` of this process's CPU time (not wall time), so the figure holds on a loaded machine.
BURN = "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < float(sys.argv[1]):\n    pass\n"
INTERVAL = 0.05


def burn(seconds: float) -> list[str]:
    return [sys.executable, "-c", BURN, str(seconds)]


def meter_child(argv: list[str], **kwargs) -> UsageRecord:
    child = subprocess.Popen(argv)
    try:
        return meter_pid(child.pid, interval_s=INTERVAL, **kwargs)
    finally:
        child.kill()  # no-op once it has exited; stops it when metering timed out
        child.wait()


@pytest.fixture(scope="module")
def burner_record() -> UsageRecord:
    return meter_child(burn(0.5), job_id=7)


# --------------------------------------------------------------------------- sampling


def test_cpu_burner_is_metered(burner_record):
    record, summary = burner_record, burner_record.summary
    assert record.complete and record.job_id == 7 and record.gpu_uuids == ()
    # 0.5 s of its own CPU plus interpreter start-up, counted in whole clock ticks.
    assert 0.45 <= summary.cpu_seconds <= 1.5
    # A single-threaded process cannot use more CPU than wall time (plus what it used before
    # the first sample and one clock tick).
    assert summary.cpu_seconds <= summary.wall_seconds + 0.25
    assert summary.wall_seconds >= 0.45
    assert summary.max_rss_bytes > 1 << 20  # a Python interpreter holds megabytes
    assert summary.gpus == () and summary.gpu_seconds_busy is None and summary.energy_joules is None


def test_samples_follow_the_interval_and_the_exit(burner_record):
    samples = burner_record.samples
    assert summary_samples_match(burner_record)
    # about 0.5 s / 0.05 s of samples; a loaded machine skips ticks but never all of them
    assert len(samples) >= 5
    times = [s.t_ns for s in samples]
    assert times == sorted(times) and len(set(times)) == len(times)
    cpu = [s.cpu_ms for s in samples]
    assert cpu == sorted(cpu) and cpu[-1] > cpu[0]
    assert all(s.running for s in samples[:-1]) and not samples[-1].running


def test_the_exit_is_seen_at_once_not_at_the_next_tick():
    # With a 2 s interval, a job that exits after 0.2 s must end the record then (the pidfd
    # wakes the meter), not when the next sample is due.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    try:
        record = meter_pid(child.pid, interval_s=2.0)
    finally:
        child.wait()
    assert record.complete and len(record.samples) == 2
    assert record.summary.wall_seconds < 1.5


def summary_samples_match(record: UsageRecord) -> bool:
    return record.summary == summarize(record.samples, record.gpu_uuids) and record.summary.samples == len(
        record.samples
    )


def test_descendants_are_charged_to_the_job():
    # A shell runs two burners one after the other: their time reaches the shell only as
    # reaped children (cutime) or live descendants, and both must be counted.
    script = f"{shlex.join(burn(0.3))} && {shlex.join(burn(0.3))}"
    record = meter_child(["sh", "-c", script])
    assert record.complete
    assert record.summary.cpu_seconds >= 0.55


def test_timeout_stops_metering_without_the_job_ending():
    record = meter_child([sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=0.3)
    assert not record.complete
    assert all(s.running for s in record.samples)
    assert 0.25 <= record.summary.wall_seconds < 5  # from the first sample, taken just after the start


def burn_here(seconds: float) -> None:
    t = time.process_time()
    while time.process_time() - t < seconds:
        pass


def test_meter_call_returns_the_result_and_this_process_usage():
    def work() -> int:
        burn_here(0.3)
        return 42

    burn_here(1.0)  # this process's time before the call: none of it may be charged
    call = meter_call(work, interval_s=INTERVAL, job_id=3)
    assert call.result == 42
    assert call.usage.complete and call.usage.pid == os.getpid() and call.usage.job_id == 3
    # All of the work is charged (the worker starts after the baseline), the second before it
    # is not; the slack is the meter's own sampling, far below that second.
    assert 0.25 <= call.usage.summary.cpu_seconds < 0.3 + 0.5


def test_meter_call_failure_keeps_the_usage():
    def work() -> None:
        time.sleep(0.1)
        raise RuntimeError("job crashed")

    with pytest.raises(JobFailed) as caught:
        meter_call(work, interval_s=INTERVAL)
    assert isinstance(caught.value.__cause__, RuntimeError)
    # The usage up to the failure is kept: samples over a span of time (how long a span depends on
    # when a loaded machine let the meter take its first sample, so no bound from the sleep).
    usage = caught.value.usage
    assert usage.complete and usage.summary.samples >= 2 and usage.summary.wall_seconds > 0
    usage.check()


def test_meter_stops_when_done_is_set():
    done = threading.Event()
    threading.Timer(0.2, done.set).start()
    record = JobMeter(os.getpid(), interval_s=INTERVAL, count_from_start=False).run(done=done)
    assert record.complete and 0.15 <= record.summary.wall_seconds < 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pid": 0}, "pid must be a positive int"),
        ({"pid": True}, "pid must be a positive int"),
        ({"pid": 2**22 + 12345}, "no process"),
        ({"interval_s": 0.001}, "interval_s must be >= 0.01"),
        ({"interval_s": float("nan")}, "interval_s must be >= 0.01"),
        ({"job_id": -1}, "job_id must be a non-negative int"),
    ],
)
def test_meter_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        JobMeter(**{"pid": os.getpid(), **kwargs})


@pytest.mark.skipif(nvml_available(), reason="NVML works here: assigning a GPU is legitimate")
def test_assigning_gpus_without_nvml_is_refused():
    # This machine has no NVIDIA driver: the real nvmlInit fails, and metering must say so
    # rather than record a GPU job with no GPU evidence.
    meter = JobMeter(os.getpid(), gpus=[0], interval_s=INTERVAL)
    with pytest.raises(ValueError, match=r"GPUs \[0\] assigned but NVML unavailable"):
        meter.run(timeout_s=0.1)


# --------------------------------------------------------------------------- summary


def gpu(uuid="GPU-a", util=None, mem=None, power=None, energy=None) -> GpuSample:
    return GpuSample(uuid, util, mem, power, energy)


def test_summary_of_gpu_samples():
    # Two GPUs, samples at 0, 1 s and 3 s. GPU a has every counter; GPU b has no energy
    # counter (power is integrated instead) and no utilisation.
    s = 1_000_000_000
    samples = (
        Sample(0, True, 0, 100, (gpu("a", 0, 10, 100_000, 5_000), gpu("b", None, 20, 50_000))),
        Sample(1 * s, True, 400, 300, (gpu("a", 50, 30, 300_000, 105_000), gpu("b", None, None, 70_000))),
        Sample(3 * s, False, 900, 200, (gpu("a", 100, 20, 200_000, 705_000), gpu("b", None, 5, None))),
    )
    summary = summarize(samples, ("a", "b"))
    assert (summary.samples, summary.wall_ns, summary.cpu_ms, summary.max_rss_bytes) == (3, 3 * s, 900, 300)
    # busy: 50 % of the first second + 100 % of the next two = 2.5 GPU-seconds
    assert summary.gpus[0] == GpuUsage("a", 2500, 30, 300_000, 700_000, "counter")
    # energy: 50 W x 1 s + 70 W x 2 s = 190 J (left endpoints)
    assert summary.gpus[1] == GpuUsage("b", None, 20, 70_000, 190_000, "power")
    assert summary.gpu_seconds_busy == 2.5
    assert summary.energy_joules == 890.0


def test_summary_of_a_gpu_that_reports_nothing():
    samples = (Sample(0, True, 0, 0, (gpu("a"),)), Sample(10, False, 0, 0, (gpu("a"),)))
    assert summarize(samples, ("a",)).gpus == (GpuUsage("a", None, None, None, None, None),)


def test_summary_needs_samples():
    with pytest.raises(ValueError, match="no samples"):
        summarize((), ())


# --------------------------------------------------------------------------- evidence hash


def test_evidence_hash_is_stable_and_fits_the_job_report(burner_record):
    digest = burner_record.evidence_hash()
    assert isinstance(digest, bytes) and len(digest) == 32
    assert evidence_hash(burner_record) == digest
    copy = UsageRecord.from_json(burner_record.canonical_json())
    assert copy == burner_record and copy.evidence_hash() == digest
    # the canonical form is key-order and whitespace independent
    assert canonical_json({"b": 1, "a": [None, True, "x"]}) == b'{"a":[null,true,"x"],"b":1}'


def leaf_paths(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaf_paths(item, (*path, key))
    elif isinstance(value, (list, tuple)) and value:
        for i, item in enumerate(value):
            yield from leaf_paths(item, (*path, i))
    else:
        yield path


def changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if value is None:
        return 0
    if value in ([], ()):
        return None
    raise AssertionError(f"unexpected leaf {value!r}")


def test_evidence_hash_changes_when_any_field_changes():
    # A record with GPU columns, so every field (utilisation, energy, ...) is a leaf somewhere.
    samples = (
        Sample(0, True, 0, 100, (gpu("GPU-a", 0, 10, 100_000, 5_000),)),
        Sample(1_000_000_000, False, 400, 300, (gpu("GPU-a", 50, None, 300_000, 105_000),)),
    )
    record = UsageRecord(
        1, 9, 1234, ("GPU-a",), 1000, 1_700_000_000_000_000_000, True, samples, summarize(samples, ("GPU-a",))
    )
    record.check()
    paths = list(leaf_paths(record.to_dict()))
    assert len(paths) > 30
    seen = {record.evidence_hash()}
    for path in paths:
        mutated = json.loads(record.canonical_json())
        holder = mutated
        for key in path[:-1]:
            holder = holder[key]
        holder[path[-1]] = changed(holder[path[-1]])
        # parsed without check(): a changed summary no longer matches, which is the point here
        digest = parse_json(UsageRecord, json.dumps(mutated)).evidence_hash()
        assert digest not in seen, f"changing {path} left the hash unchanged"
        seen.add(digest)


def test_canonical_json_refuses_floats_and_odd_keys():
    with pytest.raises(ValueError, match=r"\$.a\[1\] is a float"):
        canonical_json({"a": [1, 0.5]})
    with pytest.raises(ValueError, match="non-string key"):
        canonical_json({1: 2})
    with pytest.raises(ValueError, match="unsupported type bytes"):
        canonical_json({"a": b"x"})


def test_from_json_rejects_inconsistent_records(burner_record):
    def tampered(**changes) -> bytes:
        return canonical_json({**burner_record.to_dict(), **changes})

    summary = dataclasses.asdict(dataclasses.replace(burner_record.summary, cpu_ms=burner_record.summary.cpu_ms + 10))
    with pytest.raises(ValueError, match="does not match its samples"):
        UsageRecord.from_json(tampered(summary=summary))
    samples = [dataclasses.asdict(s) for s in burner_record.samples]
    samples[1]["t_ns"] = samples[0]["t_ns"]
    with pytest.raises(ValueError, match="sample times not increasing"):
        UsageRecord.from_json(tampered(samples=samples))
    with pytest.raises(ValueError, match="version 2"):
        UsageRecord.from_json(tampered(version=2))
    with pytest.raises(ValueError, match="does not cover GPUs"):
        UsageRecord.from_json(tampered(gpu_uuids=["GPU-a"]))
    with pytest.raises(ValueError, match="Unexpected keyword argument"):
        UsageRecord.from_json(tampered(extra=1))
    with pytest.raises(ValueError, match="valid integer"):
        UsageRecord.from_json(tampered(pid=str(burner_record.pid)))


# --------------------------------------------------------------------------- billable time


@pytest.mark.parametrize(
    ("challenges", "gpu_count", "expected"),
    [
        pytest.param([], 1, 0, id="no challenge"),
        pytest.param([(100, True)], 4, 0, id="single challenge brackets nothing"),
        pytest.param([(0, True), (60, True), (120, True)], 1, 120, id="all pass"),
        pytest.param([(0, True), (60, True), (120, True)], 8, 960, id="all pass, 8 GPUs"),
        pytest.param([(0, True), (60, True), (90, False), (120, True), (180, True)], 2, 240, id="failed heartbeat"),
        pytest.param([(0, False), (60, True), (120, True)], 1, 60, id="failed start"),
        pytest.param([(0, True), (60, True), (120, False)], 1, 60, id="failed end"),
        pytest.param([(0, True), (60, False), (120, True)], 1, 0, id="no two passes in a row"),
        pytest.param([(0, False), (60, False)], 3, 0, id="all fail"),
        pytest.param([(0.0, True), (0.1, True), (0.30000000000000004, True)], 10, 3, id="floats rounded down"),
        pytest.param([(0.5, True), (2.25, True)], 3, 5, id="fractional seconds"),
        pytest.param([ChallengeResult(0, True), ChallengeResult(30, True)], 1, 30, id="typed results"),
    ],
)
def test_billable_gpu_seconds(challenges, gpu_count, expected):
    assert billable_gpu_seconds(challenges, gpu_count) == expected


def test_billable_gpu_seconds_accepts_a_generator():
    assert billable_gpu_seconds(((t, True) for t in range(0, 50, 10)), 1) == 40


@pytest.mark.parametrize(
    ("challenges", "gpu_count", "message"),
    [
        ([(60, True), (0, True)], 1, "challenge 1 at 0 is not after challenge 0 at 60"),
        ([(0, True), (0, True)], 1, "must be sorted by time, without duplicates"),
        ([(0, True), (60, True), (30, False)], 1, "challenge 2 at 30 is not after"),
        ([(0, True)], 0, "gpu_count must be an int >= 1"),
        ([(0, True)], 1.0, "gpu_count must be an int >= 1"),
        ([(0, True)], True, "gpu_count must be an int >= 1"),
        ([(float("nan"), True)], 1, "timestamp must be a finite number"),
        ([("0", True)], 1, "timestamp must be a finite number"),
        ([(0, 1)], 1, "passed must be a bool"),
        ([(0, True, "x")], 1, r"not a \(timestamp, passed\) pair"),
    ],
)
def test_billable_gpu_seconds_rejects(challenges, gpu_count, message):
    with pytest.raises(ValueError, match=message):
        billable_gpu_seconds(challenges, gpu_count)


# --------------------------------------------------------------------------- with a GPU


@pytest.mark.gpu
def test_gpu_samples_agree_with_nvml(nvml_gpus):
    """Where a GPU is present: metering GPU 0 (by index and by UUID) reads NVML's own values."""
    first = nvml_gpus[0]
    for selector in (first.index, first.uuid):
        record = meter_child(burn(0.3), gpus=[selector])
        assert record.gpu_uuids == (first.uuid,)
        for sample in record.samples:
            (reading,) = sample.gpus
            assert reading.uuid == first.uuid
            assert reading.utilization_percent is None or 0 <= reading.utilization_percent <= 100
            assert reading.memory_used_bytes is None or 0 <= reading.memory_used_bytes <= first.memory_total_bytes
            assert reading.power_mw is None or reading.power_mw > 0
        energy = [s.gpus[0].energy_mj for s in record.samples if s.gpus[0].energy_mj is not None]
        assert energy == sorted(energy)  # the counter never runs backwards
        record.check()


@pytest.mark.gpu
def test_gpu_busy_time_under_a_cuda_workload(nvml_gpus):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device: cannot load the GPU")

    def load() -> None:
        a = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()

    # CUDA's device order need not be NVML's, so meter every GPU and look for the busy one.
    usage = meter_call(load, gpus=[g.uuid for g in nvml_gpus], interval_s=0.1).usage
    usage.check()
    busy = [g.busy_ms for g in usage.summary.gpus if g.busy_ms is not None]
    if not busy:
        pytest.skip("these GPUs do not report utilisation through NVML")
    assert max(busy) > 0
    assert usage.summary.gpu_seconds_busy <= usage.summary.wall_seconds * len(nvml_gpus)


@pytest.mark.gpu
def test_a_gpu_listed_twice_is_refused(nvml_gpus):
    with pytest.raises(ValueError, match="listed twice"):
        JobMeter(os.getpid(), gpus=[nvml_gpus[0].index, nvml_gpus[0].uuid], interval_s=INTERVAL).run(timeout_s=0.1)


@pytest.mark.gpu
def test_an_absent_gpu_is_refused(nvml_gpus):
    with pytest.raises(ValueError, match="no GPU 'GPU-00000000-0000-0000-0000-000000000000'"):
        JobMeter(os.getpid(), gpus=["GPU-00000000-0000-0000-0000-000000000000"], interval_s=INTERVAL).run(timeout_s=0.1)


# --------------------------------------------------------------------------- a usage source (containers)


class Readings:
    """A usage source that replays readings (as a container's cgroup reader would give them)."""

    def __init__(self, *readings: UsageReading) -> None:
        self.readings = list(readings)
        self.calls = 0

    def __call__(self) -> UsageReading:
        self.calls += 1
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]


def test_a_usage_source_replaces_the_process_tree(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        source = Readings(
            UsageReading(running=True, cpu_ms=10, rss_bytes=5_000),
            UsageReading(running=True, cpu_ms=250, rss_bytes=9_000),
            UsageReading(running=True, cpu_ms=200, rss_bytes=9_000),  # a source that goes back is not followed
            UsageReading(running=False, cpu_ms=300, rss_bytes=9_500),
        )
        journal = SampleJournal.begin(tmp_path / "samples.jsonl", job_id=5)
        record = JobMeter(child.pid, interval_s=INTERVAL, job_id=5, journal=journal, usage_source=source).run()
    finally:
        child.kill()
        child.wait()
    # The process still ran: the source said the job ended, and its figures are the record's.
    assert record.complete and record.pid == child.pid and source.calls == 4
    assert [(s.running, s.cpu_ms, s.rss_bytes) for s in record.samples] == [
        (True, 10, 5_000),
        (True, 250, 9_000),
        (True, 250, 9_000),
        (False, 300, 9_500),
    ]
    assert (record.summary.cpu_ms, record.summary.max_rss_bytes) == (300, 9_500)
    assert SampleJournal.resume(tmp_path / "samples.jsonl", job_id=5).samples == list(record.samples)
    UsageRecord.from_json(record.canonical_json())  # the same record format


def test_a_usage_source_needs_no_live_process_and_may_start_from_a_baseline():
    gone = 2**22 + 12345  # no such process: the source alone tells
    source = Readings(UsageReading(True, 1_000, 1), UsageReading(True, 1_400, 2), UsageReading(False, 1_500, 3))
    record = JobMeter(gone, interval_s=INTERVAL, count_from_start=False, usage_source=source).run()
    assert [s.cpu_ms for s in record.samples] == [400, 500]  # less the first reading, the baseline
    assert record.summary.max_rss_bytes == 3 and record.pid == gone
