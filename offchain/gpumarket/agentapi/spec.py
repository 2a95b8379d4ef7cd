"""The job spec: what a client asks a provider to run, and its on-chain hash.

A job spec is a small versioned JSON document (the schema, with examples, is in
docs/job-spec.md). Version 1 (``JobSpec``, runtime "process") is a command the agent runs as a
process of its own user::

    {"version": 1,
     "command": ["python3", "train.py", "--epochs", "3"],
     "env": {"PATH": "/usr/bin:/bin"},
     "limits": {"max_seconds": 3600, "max_output_bytes": 1048576, "max_memory_bytes": null},
     "outputs": ["model.bin"]}

Version 2 (``ContainerJobSpec``, runtime "container") runs in an OCI container whose image is
pinned by digest, so that the spec's hash fixes the exact bytes that run::

    {"version": 2,
     "image": "registry.example.org/team/train@sha256:<64 lowercase hex>",
     "command": ["python3", "train.py"], "args": ["--epochs", "3"],
     "env": {"PATH": "/usr/local/bin:/usr/bin:/bin"},
     "gpu_count": 1,
     "limits": {"max_seconds": 3600, "max_output_bytes": 1048576, "max_memory_bytes": 8589934592,
                "cpu_millis": 4000, "max_pids": 512, "shm_bytes": 67108864},
     "outputs": ["model.bin"],
     "network": "none"}

Both are strict pydantic models: no unknown fields, no "5" for 5, bounded sizes (argv
and environment counts and lengths, the whole document). ``parse_spec`` turns wire bytes into
a spec of the version the document names (``AnyJobSpec``) or raises ``SpecError`` saying
precisely why not.

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

from eth_utils.crypto import keccak
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from gpumarket.containers.reference import ImageReference, parse_image_reference
from gpumarket.measure.metering import canonical_json

__all__ = [
    "CONTAINER_RESERVED_ENV",
    "CONTAINER_SPEC_VERSION",
    "CONTAINER_WORKDIR",
    "DEFAULT_CPU_MILLIS",
    "DEFAULT_NETWORK",
    "DEFAULT_PIDS",
    "DEFAULT_SHM_BYTES",
    "MAX_ARGS",
    "MAX_ARG_CHARS",
    "MAX_CPU_MILLIS",
    "MAX_ENV_VALUE_CHARS",
    "MAX_ENV_VARS",
    "MAX_GPUS",
    "MAX_MEMORY_BYTES",
    "MAX_OUTPUTS",
    "MAX_OUTPUT_BYTES",
    "MAX_PIDS",
    "MAX_SECONDS",
    "MAX_SPEC_BYTES",
    "MIN_CPU_MILLIS",
    "MIN_MEMORY_BYTES",
    "MIN_PIDS",
    "MIN_SHM_BYTES",
    "RESERVED_ENV",
    "SPEC_VERSION",
    "SPEC_VERSIONS",
    "AnyJobSpec",
    "ContainerJobSpec",
    "ContainerLimits",
    "JobSpec",
    "Limits",
    "SpecError",
    "canonical_spec",
    "parse_spec",
    "spec_hash",
]

SPEC_VERSION: Final = 1  # version 1, the process runtime (JobSpec)
CONTAINER_SPEC_VERSION: Final = 2  # version 2, the container runtime (ContainerJobSpec)
SPEC_VERSIONS: Final = (SPEC_VERSION, CONTAINER_SPEC_VERSION)
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

# Version 2. The provider gives the container its GPUs (and the CUDA/NVIDIA variables that name
# them); the engine sets PWD to the working directory. A spec may not set them.
_GPU_ENV_REASON = "is set by the provider from the GPUs it assigns to the container"
_CONTAINER_ENV_REASONS: Final = {
    "CUDA_VISIBLE_DEVICES": _GPU_ENV_REASON,
    "CUDA_DEVICE_ORDER": _GPU_ENV_REASON,
    "NVIDIA_VISIBLE_DEVICES": _GPU_ENV_REASON,
    "NVIDIA_DRIVER_CAPABILITIES": _GPU_ENV_REASON,
    "PWD": "is set by the container engine to the working directory (/work)",
}
CONTAINER_RESERVED_ENV = frozenset(_CONTAINER_ENV_REASONS)
CONTAINER_WORKDIR: Final = "/work"  # the job's work directory inside the container: outputs are read from it
MAX_GPUS = 64  # a container spec's gpu_count: the spec's own bound, not the contract's (chain.limits)
MIN_CPU_MILLIS = 10
MAX_CPU_MILLIS = 1_024_000  # 1000 = one CPU
DEFAULT_CPU_MILLIS = 1000
MIN_PIDS = 8  # fewer and not even a shell with one pipe starts
MAX_PIDS = 1_000_000
DEFAULT_PIDS = 1024
MIN_SHM_BYTES = 1024 * 1024
DEFAULT_SHM_BYTES = 64 * 1024 * 1024  # Docker's and Podman's default /dev/shm size
DEFAULT_NETWORK: Final = "none"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NETWORK = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


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


def _container_env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(f"{value[:40]!r} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
    if value in _CONTAINER_ENV_REASONS:
        raise ValueError(f"{value} {_CONTAINER_ENV_REASONS[value]}")
    return value


def _image(value: str) -> str:
    parse_image_reference(value)  # raises ValueError with the reason
    return value  # exactly as given: it is hashed


def _network(value: str) -> str:
    if value == "host":
        raise ValueError("'host' is refused: host networking would expose the provider's own services")
    if not _NETWORK.fullmatch(value):
        raise ValueError(f"{value[:70]!r} is not a network name ([a-z0-9][a-z0-9_.-]{{0,63}})")
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
ContainerEnvName = Annotated[
    str, Field(min_length=1, max_length=MAX_ENV_NAME_CHARS), AfterValidator(_container_env_name)
]
Image = Annotated[str, AfterValidator(_image)]
Network = Annotated[str, AfterValidator(_network)]


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
        _check_outputs_and_size(self)
        return self

    @property
    def runtime(self) -> Literal["process"]:
        """How the agent runs it: a process of the agent's own user (the development runtime)."""
        return "process"

    def canonical_bytes(self) -> bytes:
        return canonical_spec(self)

    def hash(self) -> bytes:
        return spec_hash(self)


class ContainerLimits(BaseModel):
    """What a container job may use. ``max_seconds`` and ``max_output_bytes`` mean what they do
    in version 1 (wall time, then SIGTERM and SIGKILL; the stdout + stderr and bundle cap). The
    rest are the container's cgroup limits: ``max_memory_bytes`` (memory, required: a container
    without a memory limit can take the provider's machine), ``cpu_millis`` (CPU quota, 1000 =
    one CPU), ``max_pids`` (processes and threads), and ``shm_bytes`` (the size of /dev/shm,
    which is memory and so at most ``max_memory_bytes``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_seconds: int = Field(ge=1, le=MAX_SECONDS)
    max_output_bytes: int = Field(ge=1, le=MAX_OUTPUT_BYTES)
    max_memory_bytes: int = Field(ge=MIN_MEMORY_BYTES, le=MAX_MEMORY_BYTES)
    cpu_millis: int = Field(default=DEFAULT_CPU_MILLIS, ge=MIN_CPU_MILLIS, le=MAX_CPU_MILLIS)
    max_pids: int = Field(default=DEFAULT_PIDS, ge=MIN_PIDS, le=MAX_PIDS)
    shm_bytes: int = Field(default=DEFAULT_SHM_BYTES, ge=MIN_SHM_BYTES, le=MAX_MEMORY_BYTES)

    @model_validator(mode="after")
    def _shm_within_memory(self) -> ContainerLimits:
        if self.shm_bytes > self.max_memory_bytes:
            default = " (the default)" if self.shm_bytes == DEFAULT_SHM_BYTES else ""
            raise ValueError(
                f"shm_bytes {self.shm_bytes}{default} exceeds max_memory_bytes {self.max_memory_bytes}: "
                "/dev/shm is memory and counts against the container's memory limit; set shm_bytes at most that"
            )
        return self


class ContainerJobSpec(BaseModel):
    """One job in an OCI container: the image (pinned by digest), its entrypoint and arguments,
    the whole environment, the GPU count, the container's limits, the files it leaves as its
    result (read from its work directory, /work in the container), and its network.

    ``command`` replaces the image's entrypoint when it is not empty; ``args`` follow it. When
    ``command`` is empty, ``args`` replace the image's default CMD (Docker's semantics), and
    both empty run the image's defaults. ``gpu_count`` must equal the job's on-chain
    ``gpu_count`` (the agent checks). Whether a network other than "none" is allowed is the
    provider's decision (the agent checks); "host" is never allowed."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    version: Literal[2] = CONTAINER_SPEC_VERSION
    image: Image
    command: list[Arg] = Field(default_factory=list, max_length=MAX_ARGS)
    args: list[Arg] = Field(default_factory=list, max_length=MAX_ARGS)
    env: dict[ContainerEnvName, EnvValue] = Field(default_factory=dict, max_length=MAX_ENV_VARS)
    gpu_count: int = Field(ge=0, le=MAX_GPUS)
    limits: ContainerLimits
    outputs: list[OutputPath] = Field(default_factory=list, max_length=MAX_OUTPUTS)
    network: Network = DEFAULT_NETWORK

    @model_validator(mode="after")
    def _whole_document(self) -> ContainerJobSpec:
        if self.command and not self.command[0]:
            raise ValueError("command[0] (the program that replaces the image's entrypoint) is empty")
        if len(self.command) + len(self.args) > MAX_ARGS:
            raise ValueError(
                f"command and args together have {len(self.command) + len(self.args)} items, more than {MAX_ARGS}"
            )
        _check_outputs_and_size(self)
        return self

    @property
    def runtime(self) -> Literal["container"]:
        """How the agent runs it: in an OCI container."""
        return "container"

    @property
    def argv(self) -> list[str]:
        """``command + args``: what follows the image's entrypoint, or replaces it (see the class)."""
        return [*self.command, *self.args]

    @property
    def image_reference(self) -> ImageReference:
        """The image reference, parsed (registry, repository, digest)."""
        return parse_image_reference(self.image)

    def canonical_bytes(self) -> bytes:
        return canonical_spec(self)

    def hash(self) -> bytes:
        return spec_hash(self)


AnyJobSpec = JobSpec | ContainerJobSpec
_MODELS: Final[dict[int, type[JobSpec] | type[ContainerJobSpec]]] = {
    SPEC_VERSION: JobSpec,
    CONTAINER_SPEC_VERSION: ContainerJobSpec,
}


def _check_outputs_and_size(spec: AnyJobSpec) -> None:
    """What every version checks of the whole document: no output path twice, and a canonical
    encoding within MAX_SPEC_BYTES."""
    if len(set(spec.outputs)) != len(spec.outputs):
        raise ValueError("outputs repeat a path")
    size = len(canonical_spec(spec))
    if size > MAX_SPEC_BYTES:
        raise ValueError(f"the canonical encoding is {size} bytes, more than {MAX_SPEC_BYTES}")


def canonical_spec(spec: AnyJobSpec) -> bytes:
    """The one encoding that is hashed: every field, sorted keys, no spaces, ASCII."""
    return canonical_json(spec.model_dump(mode="json"))


def spec_hash(spec: AnyJobSpec) -> bytes:
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


def parse_spec(raw: bytes | bytearray | str) -> AnyJobSpec:
    """A spec from its JSON document (bytes as sent): a JobSpec for version 1, a ContainerJobSpec
    for version 2. SpecError says precisely why not.

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
    version = data.get("version")
    model = _MODELS.get(version) if type(version) is int else None  # not True, not 1.0
    if model is None:
        raise SpecError("invalid_spec", f"unsupported version {version!r} (this agent reads versions 1 and 2)")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise SpecError("invalid_spec", _describe(error)) from None
