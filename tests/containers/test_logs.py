"""gpumarket.containers.logs: the engine's k8s-file log, counted incrementally and split into
stdout and stderr; hand-written logs and a real container's."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gpumarket.containers.engine import ContainerConfig
from gpumarket.containers.logs import (
    LogCounter,
    LogFormatError,
    LogLine,
    iter_log,
    parse_line,
    split_log,
)

T = b"2026-12-03T12:07:47.229230150+00:00"
LOG = (
    T
    + b" stdout F hello\n"
    + T
    + b" stderr F an error\n"
    + T
    + b" stdout P part\n"
    + T
    + b" stdout F ial\n"
    + T
    + b" stdout F \n"  # an empty line
    + T
    + b" stderr P no newline at the end\n"
    + T
    + b" stdout F  two  spaces \r\n"  # content is kept byte for byte
)
STDOUT = b"hello\npartial\n\n two  spaces \r\n"
STDERR = b"an error\nno newline at the end"


def test_lines_are_parsed():
    assert parse_line(T + b" stdout F hello world") == LogLine("stdout", False, b"hello world")
    assert parse_line(T + b" stderr P x") == LogLine("stderr", True, b"x")
    assert parse_line(T + b" stdout F ").data == b"\n"
    assert parse_line(T + b" stdout F") == LogLine("stdout", False, b"")
    assert parse_line(T + b" stdout P ab").data == b"ab"
    for bad in (b"", b"garbage", T + b" stdin F x", T + b" stdout X x", b" stdout F x"):
        with pytest.raises(LogFormatError):
            parse_line(bad)


def test_a_log_is_split_into_its_streams_exactly_and_again_the_same(tmp_path):
    log = tmp_path / "container.log"
    log.write_bytes(LOG)
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    assert split_log(log, stdout, stderr) == (len(STDOUT), len(STDERR))
    assert (stdout.read_bytes(), stderr.read_bytes()) == (STDOUT, STDERR)
    stdout.write_bytes(b"cut by an earlier conclude")
    assert split_log(log, stdout, stderr) == (len(STDOUT), len(STDERR))
    assert (stdout.read_bytes(), stderr.read_bytes()) == (STDOUT, STDERR)
    assert not list(tmp_path.glob("*.tmp"))


def test_no_log_gives_empty_streams_and_a_bad_line_is_refused(tmp_path):
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    assert split_log(tmp_path / "absent.log", stdout, stderr) == (0, 0)
    assert stdout.read_bytes() == stderr.read_bytes() == b""
    bad = tmp_path / "bad.log"
    bad.write_bytes(T + b" stdout F fine\nnot a log line\n")
    with pytest.raises(LogFormatError, match="not a log line"):
        split_log(bad, stdout, stderr)


def test_a_torn_last_line_is_taken_as_written(tmp_path):
    log = tmp_path / "container.log"
    log.write_bytes(T + b" stdout F one\n" + T + b" stdout P tw")
    split_log(log, tmp_path / "stdout", tmp_path / "stderr")
    assert (tmp_path / "stdout").read_bytes() == b"one\ntw"
    assert [line.content for line in iter_log([T + b" stdout F a\n", b"\n", T + b" stderr F b"])] == [b"a", b"b"]


def test_the_counter_reads_only_new_bytes_and_waits_for_whole_lines(tmp_path):
    log = tmp_path / "container.log"
    counter = LogCounter(log)
    assert counter.poll() == 0  # no log yet
    expected = len(STDOUT) + len(STDERR)
    with open(log, "wb") as handle:
        for cut in (0, 10, 50, 51, 52, 120, len(LOG)):  # cuts in the middle of lines, then the rest
            handle.write(LOG[handle.tell() : cut])
            handle.flush()
            whole = LOG[:cut]
            done = whole[: whole.rfind(b"\n") + 1]
            assert counter.poll() == sum(len(line.data) for line in iter_log(done.split(b"\n")))
    assert counter.poll() == expected
    assert counter.poll() == expected  # nothing new: nothing added
    with open(log, "ab") as handle:
        handle.write(b"garbage that is no log line\n")
    assert counter.poll() == expected + len(b"garbage that is no log line\n")  # never under-counted
    log.write_bytes(T + b" stdout F x\n")  # replaced by a shorter file: counted from its start
    assert counter.poll() == 2


def test_a_real_containers_output_is_rebuilt_byte_for_byte(engine, python_image, owner, tmp_path: Path):
    code = (
        "import sys\n"
        "sys.stdout.write('a\\n\\n\\nb\\r\\nc'); sys.stdout.flush()\n"
        "sys.stderr.write('err 1\\n'); sys.stderr.flush()\n"
        "sys.stdout.write('x' * 20000); sys.stdout.flush()\n"  # longer than conmon's buffer: P lines
        "sys.stdout.buffer.write(bytes(range(256)).replace(b'\\n', b'')); sys.stdout.flush()\n"
        "sys.stderr.write('no newline')\n"
    )
    log = tmp_path / "container.log"
    container = engine.run(
        ContainerConfig(
            image=python_image,
            name=f"gpumarket-{owner}-logs",
            labels={"gpumarket.owner": owner},
            entrypoint=["python3", "-c", code],
            log_path=log,
        )
    )
    deadline = time.monotonic() + 20
    while not engine.inspect(container).exited:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    split_log(log, tmp_path / "stdout", tmp_path / "stderr")
    stdout = b"a\n\n\nb\r\nc" + b"x" * 20000 + bytes(range(256)).replace(b"\n", b"")
    assert (tmp_path / "stdout").read_bytes() == stdout
    assert (tmp_path / "stderr").read_bytes() == b"err 1\nno newline"
    assert LogCounter(log).poll() == len(stdout) + len(b"err 1\nno newline")
