"""The result bundle: what a finished job leaves, and the ``result_hash`` that commits to it.

A bundle is a ``ResultManifest`` (exit code, why the job was stopped if it was, and one entry per
file: stdout, stderr, then each declared output in the spec's order, with its size and keccak-256)
plus the files' bytes. ``result_hash`` = keccak-256 of the manifest's canonical JSON (sorted keys,
no spaces, ASCII; the same encoding as the usage record's evidence). The manifest names the job,
so one bundle cannot stand for another job's result. This hash is ``JobReport.result_hash`` on
chain; the client checks a fetched bundle with ``ResultBundle.verify(on_chain_hash)``, which
recomputes every file's hash and the manifest's.

The bytes a bundle holds are bounded by the spec's ``max_output_bytes``, allotted in order:
stdout, stderr (each cut to what remains: ``truncated``), then the outputs, each whole or not at
all (``over_limit``). An output that does not exist is ``missing``; one that is not a regular
file inside the working directory (a directory, FIFO, or a symlink) is ``not_a_file``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from eth_utils.crypto import keccak
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError

from gpumarket.measure.metering import canonical_json

__all__ = [
    "RESULT_VERSION",
    "BundleError",
    "FileStatus",
    "ResultBundle",
    "ResultFile",
    "ResultManifest",
    "collect_result",
]

RESULT_VERSION: Final = 1


class BundleError(ValueError):
    """A bundle that does not parse or does not match its hashes."""


class FileStatus(StrEnum):
    COMPLETE = "complete"
    TRUNCATED = "truncated"
    MISSING = "missing"
    OVER_LIMIT = "over_limit"
    NOT_A_FILE = "not_a_file"


def _hash_hex(value: Any) -> bytes:
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str) and value.startswith("0x") and value == value.lower():
        try:
            raw = bytes.fromhex(value[2:])
        except ValueError:
            raise ValueError("is not hex") from None
    else:
        raise ValueError("must be a lowercase 0x-prefixed hex string")
    if len(raw) != 32:
        raise ValueError(f"must be 32 bytes, got {len(raw)}")
    return raw


Hash32 = Annotated[bytes, BeforeValidator(_hash_hex), PlainSerializer(lambda raw: "0x" + raw.hex(), return_type=str)]
_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


class ResultFile(BaseModel):
    """One file of the bundle; ``keccak`` is of exactly the ``size`` bytes the bundle holds."""

    model_config = _STRICT

    name: str = Field(min_length=1, max_length=512)  # "stdout", "stderr" or "outputs/<path>"
    status: Annotated[FileStatus, Field(strict=False)]  # its string value on the wire
    size: int = Field(ge=0)
    keccak: Hash32 | None

    @property
    def included(self) -> bool:
        return self.status in (FileStatus.COMPLETE, FileStatus.TRUNCATED)


class ResultManifest(BaseModel):
    """What the job left; its canonical JSON is what ``result_hash`` commits to."""

    model_config = _STRICT

    version: Literal[1] = RESULT_VERSION
    job_id: int = Field(ge=0, lt=2**256)
    exit_code: int | None  # the command's status as sh reports it (128+N: killed by signal N)
    timed_out: bool
    output_limit_exceeded: bool
    files: list[ResultFile] = Field(max_length=2 + 64)

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.model_dump(mode="json"))

    def hash(self) -> bytes:
        return keccak(self.canonical_bytes())


class ResultBundle(BaseModel):
    """The manifest, its hash, and the included files' bytes (base64 on the wire)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    manifest: ResultManifest
    result_hash: Hash32
    contents: dict[str, bytes]

    def to_bytes(self) -> bytes:
        data = {
            "manifest": self.manifest.model_dump(mode="json"),
            "result_hash": "0x" + self.result_hash.hex(),
            "contents": {name: base64.b64encode(raw).decode("ascii") for name, raw in self.contents.items()},
        }
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def parse(cls, raw: bytes) -> ResultBundle:
        """A bundle from its wire JSON; BundleError when malformed (``verify`` checks hashes)."""
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BundleError(f"result bundle: not JSON: {error}") from None
        if not isinstance(data, dict) or not isinstance(data.get("contents"), dict):
            raise BundleError("result bundle: expected an object with manifest, result_hash and contents")
        try:
            contents = {
                str(name): base64.b64decode(text.encode("ascii"), validate=True)
                for name, text in data["contents"].items()
            }
        except (AttributeError, binascii.Error, UnicodeEncodeError):
            raise BundleError("result bundle: contents must map names to base64 strings") from None
        try:
            return cls.model_validate(
                {"manifest": data.get("manifest"), "result_hash": data.get("result_hash"), "contents": contents}
            )
        except ValidationError as error:
            raise BundleError(f"result bundle: {error}") from None

    def verify(self, expected_hash: bytes | None = None) -> bytes:
        """Checks every file against the manifest and the manifest against ``result_hash`` (and
        ``expected_hash``, the on-chain one, when given); returns the hash. BundleError otherwise."""
        included = {entry.name: entry for entry in self.manifest.files if entry.included}
        if set(self.contents) != set(included):
            raise BundleError(
                f"result bundle: contents hold {sorted(self.contents)}, the manifest includes {sorted(included)}"
            )
        for name, entry in included.items():
            raw = self.contents[name]
            if len(raw) != entry.size or keccak(raw) != entry.keccak:
                raise BundleError(f"result bundle: {name} does not match its manifest entry")
        actual = self.manifest.hash()
        if actual != self.result_hash:
            raise BundleError(f"result bundle: the manifest hashes to 0x{actual.hex()}, not 0x{self.result_hash.hex()}")
        if expected_hash is not None and actual != expected_hash:
            raise BundleError(f"result bundle: hash 0x{actual.hex()} is not the expected 0x{expected_hash.hex()}")
        return actual


def _open_regular(path: Path, root: Path) -> int | None:
    """An fd of ``path`` when it is a regular file inside ``root`` reached without symlinks."""
    try:
        resolved = path.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        return None
    if resolved != path or not resolved.is_relative_to(root):
        return None  # a symlink somewhere on the way: it could point anywhere
    try:
        # O_NONBLOCK: opening a FIFO must not hang the agent; O_NOFOLLOW: no last-moment symlink.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _read_up_to(fd: int, limit: int) -> bytes:
    chunks, left = [], limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def collect_result(
    *,
    job_id: int,
    exit_code: int | None,
    timed_out: bool,
    killed_for_output: bool,
    stdout: Path,
    stderr: Path,
    work_dir: Path,
    outputs: Sequence[str],
    max_bytes: int,
) -> ResultBundle:
    """Reads a finished job's files into a bundle within ``max_bytes`` (see the module doc)."""
    work_dir = work_dir.resolve()
    files: list[ResultFile] = []
    contents: dict[str, bytes] = {}
    budget = max_bytes
    over = killed_for_output

    def add(name: str, status: FileStatus, raw: bytes | None) -> None:
        files.append(
            ResultFile(name=name, status=status, size=len(raw or b""), keccak=keccak(raw) if raw is not None else None)
        )
        if raw is not None:
            contents[name] = raw

    for name, path in (("stdout", stdout), ("stderr", stderr)):
        with open(path, "rb") as handle:
            raw = _read_up_to(handle.fileno(), budget + 1)
        truncated = len(raw) > budget
        raw = raw[:budget]
        over |= truncated
        budget -= len(raw)
        add(name, FileStatus.TRUNCATED if truncated else FileStatus.COMPLETE, raw)
    for relative in outputs:
        name = f"outputs/{relative}"
        path = work_dir / relative
        if not os.path.lexists(path):
            add(name, FileStatus.MISSING, None)
            continue
        fd = _open_regular(path, work_dir)
        if fd is None:
            add(name, FileStatus.NOT_A_FILE, None)
            continue
        try:
            raw = _read_up_to(fd, budget + 1)
        finally:
            os.close(fd)
        if len(raw) > budget:
            over = True
            add(name, FileStatus.OVER_LIMIT, None)
            continue
        budget -= len(raw)
        add(name, FileStatus.COMPLETE, raw)
    manifest = ResultManifest(
        job_id=job_id, exit_code=exit_code, timed_out=timed_out, output_limit_exceeded=over, files=files
    )
    return ResultBundle(manifest=manifest, result_hash=manifest.hash(), contents=contents)
