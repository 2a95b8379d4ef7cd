"""gpumarket.agentapi.spec version 2 (a job in a container): validation, canonical encoding,
spec_hash, the hostile documents it refuses, the docs' example, and version 1 left as it was."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from eth_utils import keccak

from gpumarket.agentapi.spec import (
    DEFAULT_CPU_MILLIS,
    DEFAULT_PIDS,
    DEFAULT_SHM_BYTES,
    MAX_ARGS,
    MAX_SPEC_BYTES,
    MIN_MEMORY_BYTES,
    SPEC_VERSIONS,
    ContainerJobSpec,
    ContainerLimits,
    JobSpec,
    canonical_spec,
    parse_spec,
    spec_hash,
)
from gpumarket.containers.reference import ImageReference

from .test_spec import BASE as V1
from .test_spec import encode, refused

DOCS = Path(__file__).resolve().parents[2] / "docs" / "job-spec.md"
HEX = hashlib.sha256(b"gpumarket example image").hexdigest()
OTHER_HEX = hashlib.sha256(b"another image").hexdigest()
IMAGE = f"registry.example.org/team/train@sha256:{HEX}"

BASE = {
    "version": 2,
    "image": IMAGE,
    "command": ["python3", "train.py"],
    "args": ["--epochs", "3"],
    "env": {"PATH": "/usr/local/bin:/usr/bin:/bin"},
    "gpu_count": 1,
    "limits": {
        "max_seconds": 3600,
        "max_output_bytes": 1048576,
        "max_memory_bytes": 8589934592,
        "cpu_millis": 4000,
        "max_pids": 512,
        "shm_bytes": 67108864,
    },
    "outputs": ["model.bin"],
    "network": "none",
}


def changed(**top: object) -> dict:
    document = json.loads(json.dumps(BASE))
    document.update(top)
    return document


def limits(**fields: object) -> dict:
    """BASE's limits with ``fields`` changed; a field set to ... is left out."""
    result = dict(BASE["limits"]) | fields
    return {key: value for key, value in result.items() if value is not ...}


def test_canonical_bytes_are_exact():
    spec = parse_spec(encode(BASE))
    assert isinstance(spec, ContainerJobSpec)
    assert canonical_spec(spec) == (
        b'{"args":["--epochs","3"],"command":["python3","train.py"],"env":{"PATH":"/usr/local/bin:/usr/bin:/bin"},'
        b'"gpu_count":1,"image":"registry.example.org/team/train@sha256:' + HEX.encode() + b'",'
        b'"limits":{"cpu_millis":4000,"max_memory_bytes":8589934592,"max_output_bytes":1048576,"max_pids":512,'
        b'"max_seconds":3600,"shm_bytes":67108864},"network":"none","outputs":["model.bin"],"version":2}'
    )
    assert spec_hash(spec) == keccak(canonical_spec(spec)) == spec.hash()
    assert spec.canonical_bytes() == canonical_spec(spec)
    assert len(spec.hash()) == 32


def test_hash_is_a_fixed_vector():
    # Changes only if the encoding rules change, which would break every spec_hash on chain.
    assert parse_spec(encode(BASE)).hash().hex() == "9e218bab76d274e9474f4ccfc42a9a3e34f9866ce2f33f8ae4ff60cba559670b"


def test_properties():
    spec = parse_spec(encode(BASE))
    assert isinstance(spec, ContainerJobSpec)
    assert spec.runtime == "container"
    assert spec.argv == ["python3", "train.py", "--epochs", "3"]
    assert spec.image == IMAGE
    assert spec.image_reference == ImageReference("registry.example.org", "team/train", f"sha256:{HEX}")
    assert spec.gpu_count == 1 and spec.network == "none"
    v1 = parse_spec(encode(V1))
    assert type(v1) is JobSpec and v1.runtime == "process"
    assert SPEC_VERSIONS == (1, 2)


def test_version_1_is_unchanged():
    # The same vector as tests/provider/test_spec.py: version 2 changed nothing in version 1's encoding.
    spec = parse_spec(encode(V1))
    assert spec.hash().hex() == "1fe34ca76981249de8ef03cbc3417552540aa8247c5aca52afe9eacb1877e912"
    assert JobSpec.model_validate(V1).hash() == spec.hash()


def test_image_digest_changes_the_hash():
    other = changed(image=f"registry.example.org/team/train@sha256:{OTHER_HEX}")
    assert parse_spec(encode(other)).hash() != parse_spec(encode(BASE)).hash()


def test_defaults_filled_give_the_same_hash_as_explicit_defaults():
    minimal = {
        "version": 2,
        "image": IMAGE,
        "gpu_count": 0,
        "limits": {"max_seconds": 60, "max_output_bytes": 4096, "max_memory_bytes": 1 << 30},
    }
    explicit = minimal | {
        "command": [],
        "args": [],
        "env": {},
        "outputs": [],
        "network": "none",
        "limits": minimal["limits"]
        | {"cpu_millis": DEFAULT_CPU_MILLIS, "max_pids": DEFAULT_PIDS, "shm_bytes": DEFAULT_SHM_BYTES},
    }
    reordered = {key: explicit[key] for key in reversed(list(explicit))}
    spec = parse_spec(encode(minimal))
    assert spec.hash() == parse_spec(encode(explicit)).hash() == parse_spec(json.dumps(reordered, indent=2)).hash()
    assert canonical_spec(spec) == (
        b'{"args":[],"command":[],"env":{},"gpu_count":0,"image":"' + IMAGE.encode() + b'",'
        b'"limits":{"cpu_millis":1000,"max_memory_bytes":1073741824,"max_output_bytes":4096,"max_pids":1024,'
        b'"max_seconds":60,"shm_bytes":67108864},"network":"none","outputs":[],"version":2}'
    )
    # Built in Python or parsed from the wire: the same hash.
    built = ContainerJobSpec(
        image=IMAGE,
        gpu_count=0,
        limits=ContainerLimits(max_seconds=60, max_output_bytes=4096, max_memory_bytes=1 << 30),
    )
    assert built.hash() == spec.hash()
    assert spec.argv == [] and spec.runtime == "container"


@pytest.mark.parametrize(
    "change",
    [
        {"image": f"registry.example.org/team/train@sha256:{OTHER_HEX}"},
        {"image": f"registry.example.org:443/team/train@sha256:{HEX}"},
        {"image": f"team/train@sha256:{HEX}"},
        {"command": ["python3", "train.py", "--epochs", "3"], "args": []},  # same argv, other meaning
        {"command": [], "args": ["python3", "train.py", "--epochs", "3"]},
        {"args": ["--epochs", "4"]},
        {"env": {"PATH": "/usr/bin:/bin"}},
        {"gpu_count": 2},
        {"limits": limits(max_seconds=3601)},
        {"limits": limits(max_output_bytes=1048577)},
        {"limits": limits(max_memory_bytes=8589934593)},
        {"limits": limits(cpu_millis=4001)},
        {"limits": limits(max_pids=513)},
        {"limits": limits(shm_bytes=67108865)},
        {"outputs": ["model.bin", "log.txt"]},
        {"network": "bridge"},
    ],
    ids=lambda change: json.dumps(change)[:70],
)
def test_hash_changes_with_every_field(change):
    assert parse_spec(encode(changed(**change))).hash() != parse_spec(encode(BASE)).hash()


@pytest.mark.parametrize(
    "change",
    [
        {"command": [], "args": []},  # the image's entrypoint and CMD
        {"command": [], "args": ["--help"]},  # the image's entrypoint, other CMD
        {"command": ["sh"], "args": []},
        {"gpu_count": 0},
        {"gpu_count": 64},
        {"network": "bridge"},  # allowed by the spec; the provider's agent decides
        {"network": "gpumarket_jobs-1.net"},
        {"limits": limits(max_memory_bytes=MIN_MEMORY_BYTES, shm_bytes=MIN_MEMORY_BYTES)},
        {"limits": limits(shm_bytes=8589934592)},  # equal to max_memory_bytes
        {"limits": limits(cpu_millis=10, max_pids=8, shm_bytes=1 << 20)},
        {"limits": limits(cpu_millis=1_024_000, max_pids=1_000_000)},
        {"env": {"NVIDIA_REQUIRE_CUDA": "cuda>=12.0", "HOME": "/work"}},
        {"image": f"localhost/gpumarket-python@sha256:{HEX}"},
        {"command": ["x"] * 200, "args": ["y"] * (MAX_ARGS - 200)},
    ],
    ids=lambda change: json.dumps(change)[:70],
)
def test_valid_variants_are_accepted(change):
    spec = parse_spec(encode(changed(**change)))
    assert isinstance(spec, ContainerJobSpec)


@pytest.mark.parametrize(
    ("document", "where"),
    [
        # The image: pinned by a sha256 digest, without a tag, per the reference grammar.
        (changed(image="registry.example.org/team/train:latest"), "image: a tag alone (or no tag) does not fix"),
        (changed(image="registry.example.org/team/train"), "image: a tag alone (or no tag)"),
        (changed(image=f"team/train:v1@sha256:{HEX}"), "image: has a tag ('v1') as well as a digest"),
        (
            changed(image=f"registry.example.org/Team/train@sha256:{HEX}"),
            "image: repository 'Team/train' has uppercase",
        ),
        (changed(image=f"team/tr ain@sha256:{HEX}"), "image: contains whitespace"),
        (changed(image=f"team/train\x00@sha256:{HEX}"), "image: contains a NUL"),
        (changed(image=f"team/train;reboot@sha256:{HEX}"), "image: repository component 'train;reboot'"),
        (changed(image=f"team/$x@sha256:{HEX}"), "image: repository component '$x'"),
        (changed(image=f"team/trаin@sha256:{HEX}"), "image: contains a non-ASCII character"),  # Cyrillic а
        (changed(image="team/train@sha512:" + "0" * 128), "image: digest algorithm sha512 is not accepted"),
        (changed(image="team/train@sha256:" + HEX[:40]), "image: sha256 digest has 40 hex characters, expected 64"),
        (changed(image="team/train@sha256:" + HEX.upper()), "image: sha256 digest must be lowercase"),
        (changed(image=f"https://registry.example.org/team/train@sha256:{HEX}"), "image: has a URL scheme"),
        (changed(image=f"team/../train@sha256:{HEX}"), "image: contains '..'"),
        (changed(image=f"team//train@sha256:{HEX}"), "image: repository 'team//train' has an empty path component"),
        (changed(image=""), "image: is empty"),
        (changed(image=["team/train"]), "image: Input should be a valid string"),
        ({k: v for k, v in BASE.items() if k != "image"}, "image: Field required"),
        # command and args.
        (changed(command=["", "x"]), "command[0]"),
        (changed(command="python3 train.py"), "command: Input should be a valid list"),
        (changed(args=["a\x00b"]), "args.0: contains a NUL"),
        (changed(args=["x", 5]), "args.1"),
        (changed(command=["x"] * (MAX_ARGS + 1)), "command: List should have at most 256 items"),
        (changed(command=["x"] * 200, args=["y"] * 57), "command and args together have 257 items"),
        (changed(args=["x" * 4097]), "args.0: String should have at most 4096 characters"),
        # env.
        (changed(env={"NVIDIA_VISIBLE_DEVICES": "all"}), "NVIDIA_VISIBLE_DEVICES is set by the provider from the GPUs"),
        (changed(env={"NVIDIA_DRIVER_CAPABILITIES": "all"}), "NVIDIA_DRIVER_CAPABILITIES is set by the provider"),
        (changed(env={"CUDA_VISIBLE_DEVICES": "0"}), "CUDA_VISIBLE_DEVICES is set by the provider"),
        (changed(env={"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}), "CUDA_DEVICE_ORDER is set by the provider"),
        (changed(env={"PWD": "/"}), "PWD is set by the container engine"),
        (changed(env={"1BAD": "x"}), "environment variable name"),
        (changed(env={"A": 1}), "env.A"),
        # gpu_count.
        (changed(gpu_count=65), "gpu_count: Input should be less than or equal to 64"),
        (changed(gpu_count=-1), "gpu_count: Input should be greater than or equal to 0"),
        (changed(gpu_count=1.0), "gpu_count: Input should be a valid integer"),
        (changed(gpu_count="1"), "gpu_count: Input should be a valid integer"),
        (changed(gpu_count=True), "gpu_count: Input should be a valid integer"),
        ({k: v for k, v in BASE.items() if k != "gpu_count"}, "gpu_count: Field required"),
        # Absurd limits.
        (changed(limits=limits(max_pids=0)), "limits.max_pids: Input should be greater than or equal to 8"),
        (changed(limits=limits(max_pids=10**9)), "limits.max_pids: Input should be less than or equal to 1000000"),
        (changed(limits=limits(cpu_millis=0)), "limits.cpu_millis: Input should be greater than or equal to 10"),
        (changed(limits=limits(cpu_millis=2_000_000)), "limits.cpu_millis: Input should be less than or equal"),
        (changed(limits=limits(max_memory_bytes=1 << 20)), "limits.max_memory_bytes: Input should be greater"),
        (changed(limits=limits(max_memory_bytes=2**60)), "limits.max_memory_bytes: Input should be less"),
        (changed(limits=limits(max_memory_bytes=None)), "limits.max_memory_bytes: Input should be a valid integer"),
        (changed(limits=limits(max_memory_bytes=...)), "limits.max_memory_bytes: Field required"),
        (changed(limits=limits(shm_bytes=8589934593)), "limits: shm_bytes 8589934593 exceeds max_memory_bytes"),
        (
            changed(limits=limits(max_memory_bytes=MIN_MEMORY_BYTES, shm_bytes=...)),
            "shm_bytes 67108864 (the default) exceeds max_memory_bytes 16777216",
        ),
        (changed(limits=limits(shm_bytes=1024)), "limits.shm_bytes: Input should be greater than or equal to 1048576"),
        (
            changed(limits=limits(max_seconds=10**9)),
            "limits.max_seconds: Input should be less than or equal to 2592000",
        ),
        (changed(limits=limits(max_seconds=0)), "limits.max_seconds"),
        (changed(limits=limits(max_output_bytes=1 << 40)), "limits.max_output_bytes"),
        (changed(limits=limits(max_seconds=60.0)), "limits.max_seconds: Input should be a valid integer"),
        (changed(limits=limits(cpu_millis="4000")), "limits.cpu_millis: Input should be a valid integer"),
        (changed(limits=limits(max_pids=512.5)), "limits.max_pids: Input should be a valid integer"),
        (changed(limits=limits(shm_bytes=True)), "limits.shm_bytes: Input should be a valid integer"),
        # Outputs stay inside the work directory.
        (changed(outputs=["../x"]), "outputs.0: '../x' has an empty, '.' or '..' part"),
        (changed(outputs=["/etc/passwd"]), "outputs.0: '/etc/passwd' is absolute"),
        (changed(outputs=["a//b"]), "outputs.0: 'a//b' has an empty"),
        (changed(outputs=["a\\b"]), "backslash"),
        (changed(outputs=["a", "a"]), "outputs repeat a path"),
        # The network.
        (changed(network="host"), "network: 'host' is refused: host networking would expose the provider's own"),
        (changed(network="Bridge"), "network: 'Bridge' is not a network name"),
        (changed(network="container:abc"), "network: 'container:abc' is not a network name"),
        (changed(network=""), "network: '' is not a network name"),
        (changed(network="n" * 65), "is not a network name"),
        (changed(network=None), "network: Input should be a valid string"),
        # Unknown fields, at any level.
        (changed(privileged=True), "privileged: Extra inputs are not permitted"),
        (changed(limits=limits(devices=["/dev/kvm"])), "limits.devices: Extra inputs are not permitted"),
        (changed(limits=limits(cpu=2)), "limits.cpu: Extra inputs are not permitted"),
        # A version 1 document's fields in a version 2 document, and the reverse.
        (changed(limits={"max_seconds": 60, "max_output_bytes": 4096, "max_memory_bytes": None}), "max_memory_bytes"),
        (V1 | {"image": IMAGE}, "image: Extra inputs are not permitted"),
        (V1 | {"gpu_count": 1, "network": "none"}, "gpu_count: Extra inputs are not permitted"),
    ],
)
def test_hostile_documents_are_refused_with_the_reason(document, where):
    error = refused(document)
    assert error.code == "invalid_spec"
    assert where in error.detail, error.detail


@pytest.mark.parametrize(
    ("raw", "code", "where"),
    [
        (b'{"version": 3, "image": "x"}', "invalid_spec", "unsupported version 3 (this agent reads versions 1 and 2)"),
        (b'{"version": 0}', "invalid_spec", "unsupported version 0"),
        (b'{"version": "2"}', "invalid_spec", "unsupported version '2'"),
        (b'{"version": 2.0}', "invalid_spec", "unsupported version 2.0"),
        (b'{"version": true}', "invalid_spec", "unsupported version True"),
        (b'{"image": "x"}', "invalid_spec", "unsupported version None"),
        (b'{"version": 2, "version": 2}', "malformed_json", "twice"),
        (b'{"version": 2, "limits": {"max_seconds": Infinity}}', "malformed_json", "Infinity"),
    ],
)
def test_malformed_documents_are_refused(raw, code, where):
    error = refused(raw)
    assert (error.code, where in error.detail) == (code, True), error.detail


def test_size_limits():
    # The raw document: refused before it is decoded.
    huge = encode(changed(args=["x" * 4000] * 17))
    assert len(huge) > MAX_SPEC_BYTES
    error = refused(huge)
    assert error.code == "oversized" and str(MAX_SPEC_BYTES) in error.detail
    # Small as sent, too large once non-ASCII is escaped in the canonical form.
    raw = json.dumps(changed(args=["✓" * 4000] * 3), ensure_ascii=False).encode()
    assert len(raw) < MAX_SPEC_BYTES
    error = refused(raw)
    assert error.code == "invalid_spec" and "the canonical encoding is" in error.detail


def test_the_docs_example_and_its_hash():
    text = DOCS.read_text()
    section = text[text.index("## Schema (version 2)") :]
    document = re.search(r"```json\n(\{\"version\": 2,.*?)\n```", section, re.S).group(1)
    canonical = re.search(r"Its canonical bytes \(version 2\):\n\n```\n(.*?)\n```", section, re.S).group(1)
    stated = re.search(r"Its `spec_hash` \(version 2\):\n\n```\n(0x[0-9a-f]{64})\n```", section).group(1)
    spec = parse_spec(document.encode())
    assert isinstance(spec, ContainerJobSpec)
    assert canonical_spec(spec) == canonical.encode()
    assert "0x" + spec.hash().hex() == stated
