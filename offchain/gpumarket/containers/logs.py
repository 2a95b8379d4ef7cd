"""The engine's ``k8s-file`` log of a container, counted as it grows and split into stdout and stderr.

A container's output goes through ``conmon`` (the engine's monitor, a process of its own that
outlives the agent), which writes it to the file named by ``--log-opt path=...``, one line per
chunk it read::

    2026-12-03T12:07:47.229230150+00:00 stdout F hello
    2026-12-03T12:07:47.229230150+00:00 stdout P partial
    2026-12-03T12:07:47.229346944+00:00 stderr F an error

``<RFC 3339 time> <stdout|stderr> <P|F> <content>``: ``F`` (full) says a newline followed the
content in the stream, ``P`` (partial) that none did (a line longer than conmon's buffer, or
output that does not end with a newline). The content is the stream's bytes as written, so the
streams are exactly rebuilt: each F line's content plus a newline, each P line's content alone.

- ``LogCounter`` counts the content bytes of both streams so far, reading only what was added
  since its last ``poll`` (the output-limit watchdog polls it every few milliseconds).
- ``split_log`` writes the job's ``stdout`` and ``stderr`` files from the log. The result is a
  function of the log alone, and conmon no longer writes to a container's log once it exited,
  so splitting again (after an agent restart) gives the same bytes.

Why a file and not the engine's pipes: the job must outlive the agent (an agent restart
follows it again), and the log is in the job's own directory, not in the engine's storage, so it
survives the container's removal.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["LogCounter", "LogFormatError", "LogLine", "iter_log", "parse_line", "split_log"]

STDOUT: Final = b"stdout"
STDERR: Final = b"stderr"
_CHUNK = 1 << 20


class LogFormatError(ValueError):
    """A line that is not ``<time> <stdout|stderr> <P|F> <content>``."""


@dataclass(frozen=True)
class LogLine:
    stream: str  # "stdout" or "stderr"
    partial: bool  # P: no newline followed the content
    content: bytes

    @property
    def data(self) -> bytes:
        """The bytes this line stands for in its stream."""
        return self.content if self.partial else self.content + b"\n"


def parse_line(line: bytes) -> LogLine:
    """One log line, without its newline."""
    parts = line.split(b" ", 3)
    if len(parts) == 3 and parts[2] in (b"P", b"F"):
        parts.append(b"")  # conmon writes an empty chunk as "<time> <stream> F" with no space after
    if len(parts) != 4 or not parts[0] or parts[1] not in (STDOUT, STDERR) or parts[2] not in (b"P", b"F"):
        raise LogFormatError(f"not a k8s-file log line: {line[:80]!r}")
    return LogLine(parts[1].decode(), parts[2] == b"P", parts[3])


def iter_log(lines: Iterable[bytes]) -> Iterator[LogLine]:
    """The lines of a log (each with or without its newline), parsed; LogFormatError on the first bad one."""
    for line in lines:
        line = line.removesuffix(b"\n")
        if line:
            yield parse_line(line)


class LogCounter:
    """Counts the output bytes (stdout + stderr) a container's log holds, incrementally.

    ``poll`` reads only the bytes added since it last read and parses the whole lines among them;
    a line still being written is kept for the next poll. A line that does not parse counts in
    full (raw length): the count never under-reports what the job wrote."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.total = 0
        self._offset = 0
        self._pending = b""

    def poll(self) -> int:
        """Output bytes so far (0 until the log exists)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return self.total
        try:
            size = os.fstat(fd).st_size
            if size < self._offset:  # truncated or replaced: count from its start again
                self.total, self._offset, self._pending = 0, 0, b""
            while self._offset < size:
                chunk = os.pread(fd, min(_CHUNK, size - self._offset), self._offset)
                if not chunk:
                    break
                self._offset += len(chunk)
                self._consume(chunk)
        finally:
            os.close(fd)
        return self.total

    def _consume(self, chunk: bytes) -> None:
        data = self._pending + chunk
        end = data.rfind(b"\n")
        if end < 0:
            self._pending = data
            return
        self._pending = data[end + 1 :]
        for line in data[:end].split(b"\n"):
            if not line:
                continue
            try:
                self.total += len(parse_line(line).data)
            except LogFormatError:
                self.total += len(line) + 1


def split_log(log: Path, stdout: Path, stderr: Path) -> tuple[int, int]:
    """Writes ``stdout`` and ``stderr`` from the container's ``log`` (both empty when there is
    none); their sizes. Each file is written whole under another name, then renamed. A last
    line without its newline (a log cut short) is taken as it is; LogFormatError on a line
    that is not a log line."""
    temporary = {name: path.with_name(path.name + ".tmp") for name, path in (("stdout", stdout), ("stderr", stderr))}
    sizes = {"stdout": 0, "stderr": 0}
    with contextlib.ExitStack() as files:
        handles = {name: files.enter_context(open(path, "wb")) for name, path in temporary.items()}
        try:
            source = files.enter_context(open(log, "rb"))
        except FileNotFoundError:
            pass
        else:
            for line in iter_log(source):
                data = line.data
                handles[line.stream].write(data)
                sizes[line.stream] += len(data)
        for handle in handles.values():
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temporary["stdout"], stdout)
    os.replace(temporary["stderr"], stderr)
    return sizes["stdout"], sizes["stderr"]
