"""gpumarket.agentapi.spec: validation, canonical encoding, spec_hash, size limits, the docs' example."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from eth_utils import keccak

from gpumarket.agentapi.spec import (
    MAX_ARG_CHARS,
    MAX_ARGS,
    MAX_ENV_VARS,
    MAX_SPEC_BYTES,
    JobSpec,
    SpecError,
    canonical_spec,
    parse_spec,
    spec_hash,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "job-spec.md"

BASE = {
    "version": 1,
    "command": ["python3", "-c", "print(1)"],
    "env": {"PATH": "/usr/bin:/bin", "SEED": "7"},
    "limits": {"max_seconds": 60, "max_output_bytes": 4096, "max_memory_bytes": None},
    "outputs": ["out.txt"],
}


def encode(document: object) -> bytes:
    return json.dumps(document).encode()


def refused(document: object | bytes) -> SpecError:
    raw = document if isinstance(document, bytes) else encode(document)
    with pytest.raises(SpecError) as caught:
        parse_spec(raw)
    return caught.value


def changed(**top: object) -> dict:
    document = json.loads(json.dumps(BASE))
    document.update(top)
    return document


def test_canonical_bytes_are_exact():
    spec = parse_spec(encode(BASE))
    assert canonical_spec(spec) == (
        b'{"command":["python3","-c","print(1)"],"env":{"PATH":"/usr/bin:/bin","SEED":"7"},'
        b'"limits":{"max_memory_bytes":null,"max_output_bytes":4096,"max_seconds":60},"outputs":["out.txt"],"version":1}'
    )
    assert spec_hash(spec) == keccak(canonical_spec(spec)) == spec.hash()
    assert len(spec.hash()) == 32


def test_hash_ignores_spelling():
    reordered = {key: BASE[key] for key in reversed(list(BASE))}
    spaced = json.dumps(BASE, indent=4).encode()
    defaults_left_out = {k: v for k, v in BASE.items() if k != "outputs"} | {"outputs": []}
    implicit = {k: v for k, v in BASE.items() if k != "outputs"}
    no_memory = changed(limits={"max_seconds": 60, "max_output_bytes": 4096})
    assert parse_spec(encode(reordered)).hash() == parse_spec(spaced).hash() == parse_spec(encode(BASE)).hash()
    assert parse_spec(encode(defaults_left_out)).hash() == parse_spec(encode(implicit)).hash()
    assert parse_spec(encode(no_memory)).hash() == parse_spec(encode(BASE)).hash()
    # Built in Python or parsed from the wire: the same hash.
    assert JobSpec.model_validate(BASE).hash() == parse_spec(encode(BASE)).hash()


@pytest.mark.parametrize(
    "change",
    [
        {"command": ["python3", "-c", "print(2)"]},
        {"command": ["python3", "-c", "print(1)", ""]},
        {"command": ["python", "-c", "print(1)"]},
        {"env": {"PATH": "/usr/bin:/bin", "SEED": "8"}},
        {"env": {"PATH": "/usr/bin:/bin", "SEEd": "7"}},
        {"env": {"PATH": "/usr/bin:/bin"}},
        {"limits": {"max_seconds": 61, "max_output_bytes": 4096}},
        {"limits": {"max_seconds": 60, "max_output_bytes": 4097}},
        {"limits": {"max_seconds": 60, "max_output_bytes": 4096, "max_memory_bytes": 1 << 30}},
        {"outputs": ["out.txt", "more.txt"]},
        {"outputs": ["Out.txt"]},
        {"outputs": []},
    ],
    ids=lambda change: json.dumps(change)[:60],
)
def test_hash_changes_with_every_field(change):
    assert parse_spec(encode(changed(**change))).hash() != parse_spec(encode(BASE)).hash()


def test_hash_is_a_fixed_vector():
    # Changes only if the encoding rules change, which would break every spec_hash on chain.
    assert parse_spec(encode(BASE)).hash().hex() == "1fe34ca76981249de8ef03cbc3417552540aa8247c5aca52afe9eacb1877e912"


def test_non_ascii_is_escaped_in_the_canonical_form():
    spec = parse_spec(encode(changed(command=["echo", "héllo ✓ 𝄞"])))
    canonical = canonical_spec(spec)
    assert canonical.isascii()
    assert b'"h\\u00e9llo \\u2713 \\ud834\\udd1e"' in canonical
    raw_utf8 = json.dumps(changed(command=["echo", "héllo ✓ 𝄞"]), ensure_ascii=False).encode()
    assert parse_spec(raw_utf8).hash() == spec.hash()


@pytest.mark.parametrize(
    ("document", "where"),
    [
        (changed(extra=1), "extra"),
        ({k: v for k, v in BASE.items() if k != "command"}, "command"),
        ({k: v for k, v in BASE.items() if k != "limits"}, "limits"),
        (changed(command=[]), "command"),
        (changed(command=["", "x"]), "command[0]"),
        (changed(command="python3 -c 1"), "command"),
        (changed(command=["a\x00b"]), "NUL"),
        (changed(command=["python3", 5]), "command.1"),
        (changed(env={"1BAD": "x"}), "environment variable name"),
        (changed(env={"A-B": "x"}), "environment variable name"),
        (changed(env={"CUDA_VISIBLE_DEVICES": "0"}), "set by the provider"),
        (changed(env={"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}), "set by the provider"),
        (changed(env={"PWD": "/"}), "set by the provider"),
        (changed(env={"A": 1}), "env.A"),
        (changed(env={"A": "x\x00"}), "NUL"),
        (changed(limits={"max_seconds": 0, "max_output_bytes": 1}), "max_seconds"),
        (changed(limits={"max_seconds": 60.0, "max_output_bytes": 1}), "max_seconds"),
        (changed(limits={"max_seconds": "60", "max_output_bytes": 1}), "max_seconds"),
        (changed(limits={"max_seconds": True, "max_output_bytes": 1}), "max_seconds"),
        (changed(limits={"max_seconds": 60, "max_output_bytes": 0}), "max_output_bytes"),
        (changed(limits={"max_seconds": 60, "max_output_bytes": 1 << 40}), "max_output_bytes"),
        (changed(limits={"max_seconds": 60, "max_output_bytes": 1, "max_memory_bytes": 1024}), "max_memory_bytes"),
        (changed(limits={"max_seconds": 60, "max_output_bytes": 1, "cpu": 2}), "cpu"),
        (changed(limits={"max_seconds": 31 * 86400, "max_output_bytes": 1}), "max_seconds"),
        (changed(outputs=["/etc/passwd"]), "absolute"),
        (changed(outputs=["../x"]), "'..'"),
        (changed(outputs=["a//b"]), "empty"),
        (changed(outputs=["./a"]), "'.'"),
        (changed(outputs=["a\\b"]), "backslash"),
        (changed(outputs=["a", "a"]), "repeat"),
        (changed(outputs=[""]), "outputs.0"),
    ],
)
def test_invalid_documents_are_refused_with_the_reason(document, where):
    error = refused(document)
    assert error.code == "invalid_spec"
    assert where in error.detail


@pytest.mark.parametrize(
    ("raw", "code", "where"),
    [
        (b"{", "malformed_json", "malformed JSON"),
        (b"", "malformed_json", "malformed JSON"),
        (b"\xff\xfe", "malformed_json", "UTF-8"),
        (b'{"version": 1, "version": 1}', "malformed_json", "twice"),
        (b'{"version": 1, "limits": {"max_seconds": NaN}}', "malformed_json", "NaN"),
        (b"[1, 2]", "invalid_spec", "JSON object"),
        (b'{"version": 3, "command": ["x"]}', "invalid_spec", "unsupported version 3"),
        (b'{"command": ["x"]}', "invalid_spec", "unsupported version None"),
        (b'{"version": "1"}', "invalid_spec", "unsupported version"),
    ],
)
def test_malformed_documents_are_refused(raw, code, where):
    error = refused(raw)
    assert (error.code, where in error.detail) == (code, True), error.detail


def test_size_limits():
    assert refused(changed(command=["x"] * (MAX_ARGS + 1))).code == "invalid_spec"
    parse_spec(encode(changed(command=["x"] * MAX_ARGS)))
    assert "command.0" in refused(changed(command=["x" * (MAX_ARG_CHARS + 1)])).detail
    parse_spec(encode(changed(command=["x" * MAX_ARG_CHARS])))
    too_many = {f"V{i}": "x" for i in range(MAX_ENV_VARS + 1)}
    assert "env" in refused(changed(env=too_many)).detail
    parse_spec(encode(changed(env={f"V{i}": "x" for i in range(MAX_ENV_VARS)})))
    # The raw document: refused before it is decoded.
    huge = encode(changed(command=["x" * 4000] * 17))
    assert len(huge) > MAX_SPEC_BYTES
    error = refused(huge)
    assert error.code == "oversized" and str(MAX_SPEC_BYTES) in error.detail
    # Small as sent, too large once non-ASCII is escaped in the canonical form.
    wide = changed(command=["✓" * 4000] * 3)
    raw = json.dumps(wide, ensure_ascii=False).encode()
    assert len(raw) < MAX_SPEC_BYTES
    error = refused(raw)
    assert error.code == "invalid_spec" and "canonical encoding" in error.detail


def test_the_docs_example_and_its_hash():
    text = DOCS.read_text()
    document = re.search(r"```json\n(\{\n  \"version\".*?)\n```", text, re.S).group(1)
    canonical = re.search(r"Its canonical bytes:\n\n```\n(.*?)\n```", text, re.S).group(1)
    stated = re.search(r"Its `spec_hash`:\n\n```\n(0x[0-9a-f]{64})\n```", text).group(1)
    spec = parse_spec(document.encode())
    assert canonical_spec(spec) == canonical.encode()
    assert "0x" + spec.hash().hex() == stated
