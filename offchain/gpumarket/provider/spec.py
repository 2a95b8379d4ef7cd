"""The job spec: what a client asks a provider to run, and its on-chain hash.

A job spec is a small versioned JSON document (the schema, with an example, is in
docs/job-spec.md)::

    {"version": 1,
     "command": ["python3", "train.py", "--epochs", "3"],
     "env": {"PATH": "/usr/bin:/bin"},
     "limits": {"max_seconds": 3600, "max_output_bytes": 1048576, "max_memory_bytes": null},
     "outputs": ["model.bin"]}

``JobSpec`` is a strict pydantic model: no unknown fields, no "5" for 5, bounded sizes (argv
and environment counts and lengths, the whole document). ``parse_spec`` turns wire bytes into
a spec or raises ``SpecError`` saying precisely why not.

The hash the client puts in ``create_job`` is ``spec_hash(spec)``: keccak-256 of the spec's
canonical encoding (``canonical_spec``): every field present (defaults filled in), JSON with
sorted keys, no whitespace, ASCII only (``\\uXXXX`` escapes). Two documents that differ only in
spelling (key order, spaces, an omitted default) therefore have the same hash, and any change
of meaning changes it. The provider agent runs a spec only when this hash equals the job's
on-chain ``spec_hash``.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Final, Literal

from eth_utils import keccak
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from gpumarket.measure.metering import canonical_json

__all__ = [
    "MAX_ARGS",
    "MAX_ARG_CHARS",
    "MAX_ENV_VALUE_CHARS",
    "MAX_ENV_VARS",
    "MAX_MEMORY_BYTES",
    "MAX_OUTPUTS",
    "MAX_OUTPUT_BYTES",
    "MAX_SECONDS",
    "MAX_SPEC_BYTES",
    "MIN_MEMORY_BYTES",
    "RESERVED_ENV",
    "SPEC_VERSION",
    "JobSpec",
    "Limits",
    "SpecError",
    "canonical_spec",
    "parse_spec",
    "spec_hash",
]

SPEC_VERSION: Final = 1
MAX_SPEC_BYTES = 64 * 1024  # the document as sent, and its canonical encoding
MAX_ARGS = 256
MAX_ARG_CHARS = 4096
MAX_ENV_VARS = 128
MAX_ENV_NAME_CHARS = 128
MAX_ENV_VALUE_CHARS = 4096
MAX_OUTPUTS = 64
MAX_OUTPUT_PATH_CHARS = 255
MAX_SECONDS = 30 * 86_400
MAX_OUTPUT_BYTES = 32 * 1024 * 1024  # the result bundle travels as one HTTP response
MIN_MEMORY_BYTES = 16 * 1024 * 1024  # below this not even the wrapper shell starts
MAX_MEMORY_BYTES = 2**48
# Set by the agent from the GPUs it assigns (and PWD by the wrapper shell); a spec may not set them.
RESERVED_ENV = frozenset({"CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "PWD"})

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SpecError(ValueError):
    """A spec was refused. ``code`` is ``oversized``, ``malformed_json`` or ``invalid_spec``."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(f"{value[:40]!r} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
    if value in RESERVED_ENV:
        raise ValueError(f"{value} is set by the provider from the GPUs it assigns")
    return value


def _output_path(value: str) -> str:
    if value.startswith("/"):
        raise ValueError(f"{value!r} is absolute; outputs are relative to the job's working directory")
    if "\\" in value:
        raise ValueError(f"{value!r} contains a backslash; use '/' between path parts")
    parts = value.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"{value!r} has an empty, '.' or '..' part")
    return value


Arg = Annotated[str, Field(max_length=MAX_ARG_CHARS), AfterValidator(_no_nul)]
EnvName = Annotated[str, Field(min_length=1, max_length=MAX_ENV_NAME_CHARS), AfterValidator(_env_name)]
EnvValue = Annotated[str, Field(max_length=MAX_ENV_VALUE_CHARS), AfterValidator(_no_nul)]
OutputPath = Annotated[
    str, Field(min_length=1, max_length=MAX_OUTPUT_PATH_CHARS), AfterValidator(_no_nul), AfterValidator(_output_path)
]


class Limits(BaseModel):
    """What the job may use. The agent kills the job's process group at ``max_seconds`` of wall
    time and when stdout + stderr pass ``max_output_bytes``; the result bundle (stdout, stderr,
    outputs) holds at most ``max_output_bytes``. ``max_memory_bytes`` caps each process's
    address space (``ulimit -v``): leave it null for CUDA jobs, which reserve large ranges."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_seconds: int = Field(ge=1, le=MAX_SECONDS)
    max_output_bytes: int = Field(ge=1, le=MAX_OUTPUT_BYTES)
    max_memory_bytes: int | None = Field(default=None, ge=MIN_MEMORY_BYTES, le=MAX_MEMORY_BYTES)


class JobSpec(BaseModel):
    """One job: argv, its whole environment, limits, and the files it leaves as its result."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    version: Literal[1] = SPEC_VERSION
    command: list[Arg] = Field(min_length=1, max_length=MAX_ARGS)
    env: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=MAX_ENV_VARS)
    limits: Limits
    outputs: list[OutputPath] = Field(default_factory=list, max_length=MAX_OUTPUTS)

    @model_validator(mode="after")
    def _whole_document(self) -> JobSpec:
        if not self.command[0]:
            raise ValueError("command[0] (the program) is empty")
        if len(set(self.outputs)) != len(self.outputs):
            raise ValueError("outputs repeat a path")
        size = len(canonical_spec(self))
        if size > MAX_SPEC_BYTES:
            raise ValueError(f"the canonical encoding is {size} bytes, more than {MAX_SPEC_BYTES}")
        return self

    def canonical_bytes(self) -> bytes:
        return canonical_spec(self)

    def hash(self) -> bytes:
        return spec_hash(self)


def canonical_spec(spec: JobSpec) -> bytes:
    """The one encoding that is hashed: every field, sorted keys, no spaces, ASCII."""
    return canonical_json(spec.model_dump(mode="json"))


def spec_hash(spec: JobSpec) -> bytes:
    """keccak-256 of ``canonical_spec(spec)``: the 32-byte on-chain ``spec_hash``."""
    return keccak(canonical_spec(spec))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key[:40]!r} appears twice")
        result[key] = value
    return result


def _describe(error: ValidationError) -> str:
    reasons = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"])
        reason = problem["msg"].removeprefix("Value error, ")
        reasons.append(f"{where}: {reason}" if where else reason)
    return "; ".join(reasons)


def parse_spec(raw: bytes | bytearray | str) -> JobSpec:
    """A JobSpec from its JSON document (bytes as sent); SpecError says precisely why not.

    The size is checked before anything is decoded; duplicate keys, NaN and Infinity are
    refused, so a document has one meaning."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if not isinstance(raw, (bytes, bytearray)):
        raise SpecError("invalid_spec", f"expected bytes, got {type(raw).__name__}")
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError("oversized", f"the spec is {len(raw)} bytes, more than {MAX_SPEC_BYTES}")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecError("malformed_json", f"not UTF-8 at byte {error.start}") from None
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise SpecError("malformed_json", f"malformed JSON at byte {error.pos}: {error.msg}") from None
    except RecursionError:  # nesting deeper than the interpreter's recursion limit
        raise SpecError("malformed_json", "JSON nested too deeply") from None
    except ValueError as error:
        raise SpecError("malformed_json", str(error)) from None
    if not isinstance(data, dict):
        raise SpecError("invalid_spec", f"expected a JSON object, got {type(data).__name__}")
    if data.get("version") != SPEC_VERSION:
        raise SpecError(
            "invalid_spec", f"unsupported version {data.get('version')!r} (this agent reads version {SPEC_VERSION})"
        )
    try:
        return JobSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError("invalid_spec", _describe(error)) from None
