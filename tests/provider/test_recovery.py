"""A job across an agent restart, below the agent: the metering journal (one time base for every
meter of a job) and ``Runner.finalize`` (recording a job that ended while no agent followed it).
The agent's side (``recover``) is in test_store.py; real agent processes and signals in
tests/provider_chain/test_agent_restart.py."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from eth_utils import keccak

from gpumarket.measure.metering import (
    GpuSample,
    JournalError,
    JournalHeader,
    Sample,
    SampleJournal,
    UsageRecord,
    boot_id,
    meter_pid,
)
from gpumarket.provider.runner import ProcessGone

from .support import python_spec

GPU = "GPU-00000000-1111-2222-3333-444444444444"


def _wait_for(predicate, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _gpu(util: int | None, energy: int | None) -> tuple[GpuSample, ...]:
    return (
        GpuSample(uuid=GPU, utilization_percent=util, memory_used_bytes=1 << 30, power_mw=50_000, energy_mj=energy),
    )


def _journal_with_header(path: Path, header: JournalHeader, *samples: Sample) -> None:
    path.write_text("".join(json.dumps(asdict(line)) + "\n" for line in (header, *samples)))


def _stored_result_hash(paths) -> bytes:
    return bytes.fromhex(json.loads(paths.result.read_bytes())["result_hash"][2:])


# --------------------------------------------------------------------------- the journal


def test_a_journal_keeps_every_sample_a_meter_takes(tmp_path, runner):
    job = runner.start(1, python_spec("import time; time.sleep(0.3)"))
    record = meter_pid(job.pid, interval_s=0.05, job_id=1, journal=job._journal)
    job._process.wait()
    on_disk = SampleJournal.resume(runner.paths(1).journal, job_id=1)
    assert on_disk.samples == list(record.samples) and not on_disk.samples[-1].running
    assert on_disk.header.boot_id == boot_id() and on_disk.header.started_unix_ns == record.started_unix_ns
    # A journal the meter saw to the end concludes to exactly the meter's record.
    concluded = on_disk.conclude(pid=job.pid, interval_s=0.05, ended_unix_ns=time.time_ns())
    assert concluded.canonical_json() == record.canonical_json()


def test_a_resumed_meter_goes_on_from_the_jobs_start(tmp_path, runner):
    job = runner.start(2, python_spec("import time; time.sleep(1.5)"))
    first = meter_pid(job.pid, interval_s=0.05, job_id=2, journal=job._journal, timeout_s=0.2)  # the first agent
    assert not first.complete
    time.sleep(0.6)  # nobody meters: the agent is down
    resumed = SampleJournal.resume(runner.paths(2).journal, job_id=2)
    assert resumed.resumed and resumed.samples == list(first.samples)
    assert resumed.elapsed_ns() >= first.samples[-1].t_ns + 0.5e9  # the same clock, gap included
    record = meter_pid(job.pid, interval_s=0.05, job_id=2, journal=resumed)
    job._process.wait()
    assert record.complete and record.samples[: len(first.samples)] == first.samples
    assert record.started_unix_ns == first.started_unix_ns
    assert 1.3 <= record.summary.wall_seconds  # from the job's start, not from the second meter's
    assert record.summary.wall_ns <= time.time_ns() - record.started_unix_ns
    UsageRecord.from_json(record.canonical_json())  # times increasing, CPU not decreasing, summary matches


def test_the_clock_is_monotonic_on_the_same_boot_and_the_wall_clock_after_a_reboot(tmp_path):
    now_unix, now_mono = time.time_ns(), time.monotonic_ns()
    same_boot = tmp_path / "same"
    # The wall clock was stepped by 100 s since the start: the monotonic clock is not fooled.
    _journal_with_header(same_boot, JournalHeader(1, 3, now_unix - 100 * 10**9, now_mono - 3 * 10**9, boot_id()))
    assert 2.9e9 <= SampleJournal.resume(same_boot, job_id=3).elapsed_ns() < 10e9
    rebooted = tmp_path / "rebooted"
    _journal_with_header(rebooted, JournalHeader(1, 3, now_unix - 5 * 10**9, now_mono, "another-boot"))
    assert 4.9e9 <= SampleJournal.resume(rebooted, job_id=3).elapsed_ns() < 10e9


def test_a_meter_that_cannot_read_the_journaled_gpus_goes_on_without_readings(tmp_path, runner):
    job = runner.start(8, python_spec("import time; time.sleep(0.3)"))
    job._journal.append(Sample(t_ns=1, running=True, cpu_ms=0, rss_bytes=0, gpus=_gpu(50, 10)))  # on NVML then
    resumed = SampleJournal.resume(runner.paths(8).journal, job_id=8)
    record = meter_pid(job.pid, interval_s=0.05, job_id=8, journal=resumed)  # no GPUs to read now
    job._process.wait()
    assert record.gpu_uuids == (GPU,) and len(record.samples) >= 2
    assert all(sample.gpus == (GpuSample(GPU, None, None, None, None),) for sample in record.samples[1:])
    UsageRecord.from_json(record.canonical_json())


def test_a_torn_last_line_is_dropped_and_a_damaged_journal_refused(tmp_path):
    path = tmp_path / "journal"
    journal = SampleJournal.begin(path, job_id=4)
    with pytest.raises(FileExistsError):
        SampleJournal.begin(path, job_id=4)
    journal.append(Sample(t_ns=10, running=True, cpu_ms=1, rss_bytes=5, gpus=()))
    whole = path.read_bytes()
    with open(path, "ab") as handle:
        handle.write(b'{"cpu_ms":2,"gpus":[],"rss')  # the writer died in the middle of a line
    resumed = SampleJournal.resume(path, job_id=4)
    assert [sample.t_ns for sample in resumed.samples] == [10] and path.read_bytes() == whole
    resumed.append(Sample(t_ns=20, running=True, cpu_ms=2, rss_bytes=5, gpus=()))
    assert [sample.t_ns for sample in SampleJournal.resume(path, job_id=4).samples] == [10, 20]
    with pytest.raises(JournalError, match="not job 5"):
        SampleJournal.resume(path, job_id=5)
    path.write_bytes(whole.replace(b'"cpu_ms":1', b'"cpu_ms":"one"') + b"\n")
    with pytest.raises(JournalError):
        SampleJournal.resume(path, job_id=4)


def test_concluding_adds_the_end_with_the_last_known_counters(tmp_path):
    path = tmp_path / "journal"
    journal = SampleJournal.begin(path, job_id=6)
    start = journal.header.started_unix_ns
    journal.append(Sample(t_ns=10**8, running=True, cpu_ms=5, rss_bytes=100, gpus=_gpu(40, 1_000)))
    journal.append(Sample(t_ns=2 * 10**8, running=True, cpu_ms=9, rss_bytes=200, gpus=_gpu(60, 1_500)))
    ended = start + 3 * 10**8
    _wait_for(lambda: time.time_ns() > ended)
    record = journal.conclude(pid=77, interval_s=0.1, ended_unix_ns=ended)
    end = record.samples[-1]
    assert (end.t_ns, end.running, end.cpu_ms, end.rss_bytes) == (3 * 10**8, False, 9, 0)
    assert end.gpus == (GpuSample(GPU, None, None, None, 1_500),)  # no reading, the counter as last read
    assert record.summary.wall_ns == 2 * 10**8 and record.summary.gpus[0].energy_mj == 500
    assert record.complete and (record.pid, record.job_id, record.gpu_uuids) == (77, 6, (GPU,))
    UsageRecord.from_json(record.canonical_json())
    # The end is journaled: concluding again, from the file, gives the same record.
    again = SampleJournal.resume(path, job_id=6).conclude(pid=77, interval_s=0.1, ended_unix_ns=ended + 10**9)
    assert again.evidence_hash() == record.evidence_hash()


def test_a_concluded_end_is_never_later_than_now_nor_before_the_last_sample(tmp_path):
    future = SampleJournal.begin(tmp_path / "future", job_id=7)
    record = future.conclude(pid=1, interval_s=0.1, ended_unix_ns=time.time_ns() + 3600 * 10**9)
    assert record.summary.wall_ns <= time.time_ns() - record.started_unix_ns < 3600 * 10**9
    assert record.samples[0] == Sample(t_ns=0, running=True, cpu_ms=0, rss_bytes=0, gpus=())  # none journaled
    past = SampleJournal.begin(tmp_path / "past", job_id=7)
    past.append(Sample(t_ns=5 * 10**8, running=True, cpu_ms=3, rss_bytes=1, gpus=()))
    record = past.conclude(pid=1, interval_s=0.1, ended_unix_ns=past.header.started_unix_ns)
    assert [sample.t_ns for sample in record.samples] == [5 * 10**8, 5 * 10**8 + 1]


# --------------------------------------------------------------------------- finalizing an ended job


def test_a_job_that_ended_unfollowed_is_finalized_from_its_files(runner):
    spec = python_spec(
        "import time; time.sleep(1.0); open('out.txt', 'w').write('made'); print('done')", outputs=["out.txt"]
    )
    job = runner.start(10, spec)
    meter_pid(job.pid, interval_s=0.05, job_id=10, journal=job._journal, timeout_s=0.2)  # then the agent died
    job._process.wait()  # the job ends while no agent follows it
    paths = runner.paths(10)
    assert runner.has_ended(10) and not paths.usage.exists() and not paths.result.exists()
    result = runner.finalize(10, spec, job.pid, job.start_ticks, job.started_at)
    assert (result.exit_code, result.stop_reason, result.resumed) == (0, None, True)
    assert result.bundle.contents == {"stdout": b"done\n", "stderr": b"", "outputs/out.txt": b"made"}
    assert result.bundle.verify() == result.result_hash == _stored_result_hash(paths)
    assert keccak(paths.usage.read_bytes()) == result.evidence_hash
    usage = UsageRecord.from_json(paths.usage.read_bytes())
    ended_ns = paths.exit_status.stat().st_mtime_ns
    assert usage.samples[-1].t_ns == ended_ns - usage.started_unix_ns  # ended at its exit status's time
    assert 0.9 <= usage.summary.wall_seconds and result.finished_at == ended_ns / 1e9
    # Again (the agent died before recording it finished): the same hashes.
    again = runner.finalize(10, spec, job.pid, job.start_ticks, job.started_at)
    assert (again.result_hash, again.evidence_hash) == (result.result_hash, result.evidence_hash)


@pytest.mark.parametrize("removed", [("result.json",), ("usage.json", "result.json")])
def test_finalizing_again_after_a_crash_mid_way_gives_the_same_hashes(runner, removed):
    spec = python_spec("print('x' * 5000)", max_output_bytes=1000)  # stdout cut to the limit
    result = runner.run(11, spec)
    assert result.output_limit_exceeded
    # The agent died before writing these files (then it had not cut stdout yet either).
    for name in removed:
        (result.paths.root / name).unlink()
    (result.paths.stdout).write_bytes(b"x" * 5000 + b"\n")
    again = runner.finalize(11, spec, result.usage.pid, None, result.started_at)
    assert (again.result_hash, again.evidence_hash) == (result.result_hash, result.evidence_hash)
    assert again.paths.stdout.stat().st_size == 1000


def test_a_job_the_agent_was_stopping_is_finalized_as_stopped(runner):
    spec = python_spec("import time; time.sleep(60)")
    job = runner.start(12, spec)
    _wait_for(lambda: runner.paths(12).pidfile.exists())
    job.stop("timeout")  # the wrapper dies of the SIGTERM: no exit status; then the agent died
    job._process.wait()
    assert not runner.paths(12).exit_status.exists()
    result = runner.finalize(12, spec, job.pid, job.start_ticks, job.started_at)
    assert (result.stop_reason, result.exit_code, result.timed_out) == ("timeout", None, True)
    assert result.finished_at == runner.paths(12).stop_reason.stat().st_mtime_ns / 1e9


def test_a_job_that_vanished_cannot_be_finalized(runner):
    spec = python_spec("import time; time.sleep(60)")
    job = runner.start(13, spec)
    _wait_for(lambda: runner.paths(13).pidfile.exists())
    os.killpg(job.pid, signal.SIGKILL)
    job._process.wait()
    assert not runner.has_ended(13)
    with pytest.raises(ProcessGone, match="left no exit status"):
        runner.finalize(13, spec, job.pid, job.start_ticks, job.started_at)
    assert not runner.paths(13).usage.exists() and not runner.paths(13).result.exists()


def test_an_adopted_job_without_a_readable_journal_is_metered_from_its_recorded_start(runner):
    spec = python_spec("import time; time.sleep(1.0)")
    job = runner.start(14, spec)
    paths = runner.paths(14)
    paths.journal.write_bytes(b"not a journal\n")
    time.sleep(0.4)
    adopted = runner.adopt(14, spec, (), job.pid, job.start_ticks, job.started_at)
    result = adopted.wait()
    job._process.wait()
    assert paths.journal.with_name("samples.jsonl.unreadable").read_bytes() == b"not a journal\n"
    assert result.usage.samples[0].t_ns == 0 and result.usage.started_unix_ns == round(job.started_at * 1e9)
    assert result.usage.summary.wall_seconds >= 0.8
