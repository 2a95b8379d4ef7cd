"""JSON shapes the oracles exchange over HTTP, parsed with field-precise errors.

Served by ``GET /reports/job/<id>`` and
``GET /reports/hardware/<provider>/<claim_version>/<valid_until>``
(a :class:`~gpumarket.oracle.signer.SignedReport`)::

    {"kind": "job", "report": {<eip712.to_json(report)>}, "signature": "0x<130 hex>",
     "signer": "0x<checksummed>", "digest": "0x<64 hex>"}

Pushed to ``POST /signatures/job/<id>`` (or
``/signatures/hardware/<provider>/<claim_version>/<valid_until>``)::

    {"report": {<eip712.to_json(report)>}, "signature": "0x<130 hex>"}

Every parser raises :class:`WireError` with a machine code (``missing_field``,
``unknown_field``, ``invalid_field``, ``malformed_json``...), the offending ``field`` as a
dotted path (``report.gpu_seconds``) and a human ``detail``; the API turns it into a 400.
"""

from __future__ import annotations

import json
import re
from typing import Any

from eth_utils.address import is_checksum_address, to_checksum_address
from pydantic import BaseModel, ConfigDict, ValidationError

from gpumarket.oracle.store import ReportKind
from gpumarket.signing import eip712
from gpumarket.signing.eip712 import HardwareReport, JobReport, Report

__all__ = [
    "MAX_UINT_DIGITS",
    "SIGNATURE_PATTERN",
    "WireError",
    "loads_strict",
    "parse_address",
    "parse_push",
    "parse_report",
    "parse_served",
    "parse_signature",
    "parse_uint",
]

MAX_UINT_DIGITS = 78  # len(str(2**256 - 1))
SIGNATURE_PATTERN = re.compile(r"0x[0-9a-fA-F]{130}")
_DECIMAL = re.compile(rf"[0-9]{{1,{MAX_UINT_DIGITS}}}")
_ROOT = re.compile(r"0x[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")

_REPORT_TYPES: dict[ReportKind, type[JobReport] | type[HardwareReport]] = {
    "job": JobReport,
    "hardware": HardwareReport,
}


class WireError(ValueError):
    """Refused input: ``code`` (machine), ``field`` (dotted path or None), ``detail`` (human)."""

    def __init__(self, code: str, detail: str, field: str | None = None) -> None:
        self.code = code
        self.detail = detail
        self.field = field
        super().__init__(f"{code}: {detail}" + (f" (field {field})" if field else ""))

    def to_json(self) -> dict[str, str]:
        body = {"error": self.code, "detail": self.detail}
        if self.field is not None:
            body["field"] = self.field
        return body


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise WireError("malformed_json", f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise WireError("malformed_json", f"{name} is not valid JSON")


def loads_strict(body: bytes) -> Any:
    """Parse a JSON body: UTF-8, no duplicate keys, no NaN/Infinity, bounded nesting."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError("malformed_json", f"body is not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise WireError("malformed_json", f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise WireError("malformed_json", "nested too deeply") from None


def parse_uint(text: str, bits: int, field: str) -> int:
    """A decimal path segment as a uint<bits>."""
    if not _DECIMAL.fullmatch(text):
        raise WireError("invalid_field", f"expected a decimal integer, got {text[:80]!r}", field)
    value = int(text)
    if value >= 2**bits:
        raise WireError("invalid_field", f"out of range for uint{bits}", field)
    return value


def parse_address(text: str, field: str) -> str:
    """A 0x-hex address path segment, checksummed; a mixed-case one must be valid EIP-55."""
    if not _ADDRESS.fullmatch(text):
        raise WireError("invalid_field", "expected 0x followed by 40 hex digits", field)
    body = text[2:]
    if body != body.lower() and body != body.upper() and not is_checksum_address(text):
        raise WireError("invalid_field", "mixed-case address with an invalid EIP-55 checksum", field)
    return to_checksum_address(text)


def parse_signature(value: Any, field: str = "signature") -> bytes:
    """A 65-byte signature as 0x-hex (its ECDSA validity is checked on recovery)."""
    if not isinstance(value, str):
        raise WireError("invalid_field", f"expected a 0x-hex string, got {type(value).__name__}", field)
    if not SIGNATURE_PATTERN.fullmatch(value):
        raise WireError("invalid_field", "expected 0x followed by 130 hex digits (65 bytes r || s || v)", field)
    return bytes.fromhex(value[2:])


def parse_report(kind: ReportKind, data: Any, field: str = "report") -> Report:
    """A report object as ``eip712.to_json`` writes it, naming the bad member precisely."""
    cls = _REPORT_TYPES[kind]
    if not isinstance(data, dict):
        raise WireError("invalid_field", f"expected an object, got {_json_type(data)}", field)
    names = [name for name, _ in cls.MEMBERS]
    for name in names:
        if name not in data:
            raise WireError("missing_field", f"{cls.TYPE_NAME} needs {name!r}", f"{field}.{name}")
    for name in data:
        if name not in names:
            raise WireError("unknown_field", f"{cls.TYPE_NAME} has no member {str(name)[:80]!r}", f"{field}.{name}")
    try:
        return eip712.from_json(data, cls)
    except ValueError as exc:
        message = str(exc)
        # eip712 prefixes each member error with "<Type>.<member>:"; name that member.
        member = next((n for n in names if message.startswith(f"{cls.TYPE_NAME}.{n}:")), None)
        raise WireError("invalid_field", message, f"{field}.{member}" if member else field) from None


class _Push(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    report: dict[str, Any]
    signature: str


def _pydantic_error(exc: ValidationError) -> WireError:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    code = {"missing": "missing_field", "extra_forbidden": "unknown_field"}.get(first["type"], "invalid_field")
    return WireError(code, first["msg"], field)


def parse_push(kind: ReportKind, data: Any) -> tuple[Report, bytes]:
    """The body of ``POST /signatures/<kind>/...``: (report, signature bytes)."""
    if not isinstance(data, dict):
        raise WireError("invalid_field", f"expected a JSON object, got {_json_type(data)}", None)
    try:
        push = _Push.model_validate(data)
    except ValidationError as exc:
        raise _pydantic_error(exc) from None
    return parse_report(kind, push.report), parse_signature(push.signature)


class _BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    epoch: int
    root: str
    job_ids: list[str]


def parse_batch_request(data: Any, max_jobs: int) -> tuple[int, bytes, list[int]]:
    """The body of ``POST /batches/job``: (epoch, root, job ids), at most ``max_jobs`` distinct ids."""
    if not isinstance(data, dict):
        raise WireError("invalid_field", f"expected a JSON object, got {_json_type(data)}", None)
    try:
        request = _BatchRequest.model_validate(data)
    except ValidationError as exc:
        raise _pydantic_error(exc) from None
    if not 0 < request.epoch < 2**63:
        raise WireError("invalid_field", "out of range", "epoch")
    if not _ROOT.fullmatch(request.root):
        raise WireError("invalid_field", "expected 0x followed by 64 hex digits", "root")
    if not 1 <= len(request.job_ids) <= max_jobs:
        raise WireError("invalid_field", f"1 to {max_jobs} job ids", "job_ids")
    ids = [parse_uint(text, 256, f"job_ids.{i}") for i, text in enumerate(request.job_ids)]
    if len(set(ids)) != len(ids):
        raise WireError("invalid_field", "a job id twice", "job_ids")
    return request.epoch, bytes.fromhex(request.root[2:]), ids


def parse_served(kind: ReportKind, data: Any) -> tuple[Report, bytes, str | None]:
    """A peer's ``GET /reports/...`` answer: (report, signature, claimed signer or None).

    The claimed signer is only a hint; the caller recovers the real one.
    """
    if not isinstance(data, dict):
        raise WireError("invalid_field", f"expected a JSON object, got {_json_type(data)}", None)
    if data.get("kind") != kind:
        raise WireError("invalid_field", f"expected kind {kind!r}", "kind")
    for name in ("report", "signature"):
        if name not in data:
            raise WireError("missing_field", f"the answer needs {name!r}", name)
    signer = data.get("signer")
    return (
        parse_report(kind, data["report"]),
        parse_signature(data["signature"]),
        signer if isinstance(signer, str) else None,
    )


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__
    )
