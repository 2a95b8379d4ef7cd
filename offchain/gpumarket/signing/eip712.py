"""EIP-712 encoding, signing and recovery of the reports the oracle committee signs.

The contract verifies exactly these types; any change here MUST be mirrored there:

    EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)
    JobReport(uint256 job_id,address provider,uint8 outcome,uint256 gpu_seconds,
              bytes32 result_hash,bytes32 evidence_hash,uint256 epoch)
    HardwareReport(address provider,uint16 gpu_class,uint16 gpu_count,uint64 claim_version,
                   uint256 measured_throughput,uint64 valid_until,uint256 epoch)
    JobReportBatch(bytes32 root,uint256 epoch)

A JobReportBatch signs many JobReports at once: ``root`` is the Merkle root over their struct
hashes (gpumarket.signing.batch); the market's BatchSettler checks it under the same domain.

All structs have only static members, so ``encodeData`` is the plain ABI encoding of
the members in declaration order, and

    structHash = keccak256(typeHash || abi.encode(members...))
    digest     = keccak256(0x1901 || domainSeparator || structHash)

Signatures are 65 bytes ``r || s || v`` with ``v`` in {27, 28} and a low ``s``
(``s <= n / 2``), the only form the contract's signature check accepts. A quorum
is passed to the contract sorted strictly ascending by recovered signer address.

An oracle hashes and checks every report several times, so the hot path is written for speed,
with the same bytes as the reference (tests/offchain/test_eip712.py holds it to eth_account's
``encode_typed_data`` and to eth_abi): the type hashes are computed once, a domain's separator
once per domain, ``encodeData`` is the members' 32-byte words joined (every member is static,
so that *is* the ABI encoding), and pure functions are memoized: a digest per (domain, report)
value, an EIP-55 checksum per address string, a recovery per (digest, signature). Signing and
recovery call libsecp256k1 through coincurve directly (the backend eth-keys would pick anyway).
"""

from __future__ import annotations

import enum
import functools
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import coincurve
from eth_hash.auto import keccak as keccak256
from eth_keys.datatypes import PrivateKey
from eth_utils.crypto import keccak

__all__ = [
    "DOMAIN_TYPE",
    "DOMAIN_TYPEHASH",
    "HARDWARE_REPORT_TYPE",
    "HARDWARE_REPORT_TYPEHASH",
    "JOB_REPORT_BATCH_TYPE",
    "JOB_REPORT_BATCH_TYPEHASH",
    "JOB_REPORT_TYPE",
    "JOB_REPORT_TYPEHASH",
    "SECP256K1_N",
    "Domain",
    "HardwareReport",
    "JobReport",
    "JobReportBatch",
    "Outcome",
    "Report",
    "address_of",
    "checksum_address",
    "digest",
    "domain_separator",
    "from_json",
    "quorum_signatures",
    "recover",
    "sign",
    "struct_hash",
    "to_json",
    "to_tuple",
    "typed_data",
]

# Order of the secp256k1 group; a valid ``s`` is in [1, SECP256K1_N // 2] (EIP-2).
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_SECP256K1_HALF_N = SECP256K1_N // 2

_UINT_BITS = {"uint8": 8, "uint16": 16, "uint64": 64, "uint256": 256}

_DOMAIN_FIELDS: tuple[tuple[str, str], ...] = (
    ("name", "string"),
    ("version", "string"),
    ("chainId", "uint256"),
    ("verifyingContract", "address"),
)


# Memo sizes: far above the addresses and the (digest, signature) pairs one oracle sees at once.
_ADDRESS_MEMO = 4096
_DIGEST_MEMO = 4096
_RECOVERY_MEMO = 8192
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _type_string(type_name: str, members: tuple[tuple[str, str], ...]) -> str:
    return f"{type_name}({','.join(f'{abi_type} {name}' for name, abi_type in members)})"


DOMAIN_TYPE = _type_string("EIP712Domain", _DOMAIN_FIELDS)
DOMAIN_TYPEHASH = keccak(text=DOMAIN_TYPE)


class Outcome(enum.IntEnum):
    """Outcome of a job as the committee reports it (``uint8`` on chain)."""

    COMPLETED = 1
    FAILED = 2


# --------------------------------------------------------------------------- validation


def _check_uint(where: str, value: Any, bits: int) -> int:
    # bool is an int subclass; True as a job id is always a bug.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: expected an int (uint{bits}), got {type(value).__name__}")
    if not 0 <= value < 2**bits:
        raise ValueError(f"{where}: {value} is out of range for uint{bits} (0 .. 2**{bits} - 1)")
    return value


def _eip55(body: str) -> str:
    """EIP-55 of 40 lowercase hex digits: each letter upper-cased where keccak256(digits) has a nibble >= 8."""
    nibbles = keccak256(body.encode("ascii")).hex()
    # The hash has 64 nibbles; only the first 40 (one per address digit) decide the case.
    return "0x" + "".join(c.upper() if h >= "8" else c for c, h in zip(body, nibbles, strict=False))


@functools.lru_cache(maxsize=_ADDRESS_MEMO)
def _checksummed(value: str) -> str:
    # Errors carry no "where": the caller adds it (and lru_cache keeps no failure).
    if not value.startswith(("0x", "0X")) or len(value) != 42 or not _HEX_DIGITS.issuperset(value[2:]):
        raise ValueError(f"{value!r} is not a 20-byte 0x-prefixed hex address")
    body = value[2:]
    checksummed = _eip55(body.lower())
    if body != body.lower() and body != body.upper() and value != checksummed:
        raise ValueError(f"{value!r} has mixed case but an invalid EIP-55 checksum")
    return checksummed


def checksum_address(value: str) -> str:
    """The EIP-55 form of a 0x-prefixed hex address; ValueError for anything else (or a bad mixed-case checksum)."""
    if not isinstance(value, str):
        raise ValueError(f"expected a 0x-prefixed hex address string, got {type(value).__name__}")
    return _checksummed(value)


def _check_address(where: str, value: Any) -> str:
    try:
        return checksum_address(value)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _check_bytes32(where: str, value: Any) -> bytes:
    if not isinstance(value, (bytes, bytearray)):
        raise ValueError(f"{where}: expected 32 bytes, got {type(value).__name__}")
    if len(value) != 32:
        raise ValueError(f"{where}: expected exactly 32 bytes, got {len(value)}")
    return bytes(value)


def _normalize(where: str, abi_type: str, value: Any) -> Any:
    if abi_type in _UINT_BITS:
        return _check_uint(where, value, _UINT_BITS[abi_type])
    if abi_type == "address":
        return _check_address(where, value)
    if abi_type == "bytes32":
        return _check_bytes32(where, value)
    raise AssertionError(f"unsupported member type {abi_type}")  # schema bug, not input


# --------------------------------------------------------------------------- ABI words
# abi.encode of a static member is one 32-byte word; a validated member is always in range.


def _uint_word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address_word(value: str) -> bytes:
    return b"\x00" * 12 + bytes.fromhex(value[2:])


def _bytes32_word(value: bytes) -> bytes:
    return value


_WORD_ENCODERS: dict[str, Callable[[Any], bytes]] = {
    **dict.fromkeys(_UINT_BITS, _uint_word),
    "address": _address_word,
    "bytes32": _bytes32_word,
}


# --------------------------------------------------------------------------- types


@dataclass(frozen=True)
class Domain:
    """The EIP-712 domain: one deployment of the market on one chain."""

    chain_id: int
    verifying_contract: str
    name: str = "gpumarket"
    version: str = "1"

    def __post_init__(self) -> None:
        chain_id = _check_uint("Domain.chain_id", self.chain_id, 256)
        if chain_id == 0:
            raise ValueError("Domain.chain_id: must be >= 1")
        object.__setattr__(
            self, "verifying_contract", _check_address("Domain.verifying_contract", self.verifying_contract)
        )
        for attr in ("name", "version"):
            if not isinstance(getattr(self, attr), str):
                raise ValueError(f"Domain.{attr}: expected a str, got {type(getattr(self, attr)).__name__}")


class _Report:
    """Shared behaviour of the signed report structs (not a dataclass itself)."""

    TYPE_NAME: ClassVar[str]
    # (member name, solidity type) in declaration order: the single source of the schema.
    MEMBERS: ClassVar[tuple[tuple[str, str], ...]]

    # Set once per subclass from MEMBERS: the type hash, and each member's name and 32-byte word encoder.
    _TYPEHASH: ClassVar[bytes]
    _WORDS: ClassVar[tuple[tuple[str, Callable[[Any], bytes]], ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._TYPEHASH = keccak(text=cls.type_string())
        cls._WORDS = tuple((name, _WORD_ENCODERS[abi_type]) for name, abi_type in cls.MEMBERS)

    def __post_init__(self) -> None:
        for name, abi_type in self.MEMBERS:
            where = f"{self.TYPE_NAME}.{name}"
            object.__setattr__(self, name, _normalize(where, abi_type, getattr(self, name)))

    @classmethod
    def type_string(cls) -> str:
        return _type_string(cls.TYPE_NAME, cls.MEMBERS)

    @classmethod
    def typehash(cls) -> bytes:
        return cls._TYPEHASH


@dataclass(frozen=True)
class JobReport(_Report):
    """The committee's verdict on one job; settles it on chain."""

    TYPE_NAME: ClassVar[str] = "JobReport"
    MEMBERS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("job_id", "uint256"),
        ("provider", "address"),
        ("outcome", "uint8"),
        ("gpu_seconds", "uint256"),
        ("result_hash", "bytes32"),
        ("evidence_hash", "bytes32"),
        ("epoch", "uint256"),
    )

    job_id: int
    provider: str
    outcome: Outcome
    gpu_seconds: int
    result_hash: bytes
    evidence_hash: bytes
    epoch: int

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            outcome = Outcome(self.outcome)
        except ValueError:
            allowed = ", ".join(f"{o.name}={o.value}" for o in Outcome)
            raise ValueError(f"JobReport.outcome: {self.outcome} is not one of {allowed}") from None
        object.__setattr__(self, "outcome", outcome)


@dataclass(frozen=True)
class HardwareReport(_Report):
    """The committee's measurement of a provider's hardware: the claim it measured (class,
    count and the registry's claim version, which counts the provider's claim changes) and
    the canonical result."""

    TYPE_NAME: ClassVar[str] = "HardwareReport"
    MEMBERS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("provider", "address"),
        ("gpu_class", "uint16"),
        ("gpu_count", "uint16"),
        ("claim_version", "uint64"),
        ("measured_throughput", "uint256"),
        ("valid_until", "uint64"),
        ("epoch", "uint256"),
    )

    provider: str
    gpu_class: int
    gpu_count: int
    claim_version: int
    measured_throughput: int
    valid_until: int
    epoch: int


@dataclass(frozen=True)
class JobReportBatch(_Report):
    """The committee's signature over many job reports at once: the Merkle root of their struct
    hashes (gpumarket.signing.batch), for the epoch every one of them carries."""

    TYPE_NAME: ClassVar[str] = "JobReportBatch"
    MEMBERS: ClassVar[tuple[tuple[str, str], ...]] = (("root", "bytes32"), ("epoch", "uint256"))

    root: bytes
    epoch: int


Report = JobReport | HardwareReport | JobReportBatch

JOB_REPORT_TYPE = JobReport.type_string()
JOB_REPORT_TYPEHASH = JobReport.typehash()
HARDWARE_REPORT_TYPE = HardwareReport.type_string()
HARDWARE_REPORT_TYPEHASH = HardwareReport.typehash()
JOB_REPORT_BATCH_TYPE = JobReportBatch.type_string()
JOB_REPORT_BATCH_TYPEHASH = JobReportBatch.typehash()

_REPORT_CLASSES: tuple[type[Report], ...] = (JobReport, HardwareReport, JobReportBatch)
_REPORT_TYPES: dict[str, type[Report]] = {
    "job": JobReport,
    "jobreport": JobReport,
    "hardware": HardwareReport,
    "hardwarereport": HardwareReport,
    "batch": JobReportBatch,
    "jobreportbatch": JobReportBatch,
}


def _require_report(report: Any) -> Report:
    if not isinstance(report, _REPORT_CLASSES):
        raise TypeError(f"expected a JobReport, HardwareReport or JobReportBatch, got {type(report).__name__}")
    return report


def _require_domain(domain: Any) -> Domain:
    if not isinstance(domain, Domain):
        raise TypeError(f"expected a Domain, got {type(domain).__name__}")
    return domain


# --------------------------------------------------------------------------- hashing


def to_tuple(report: Report) -> tuple[Any, ...]:
    """The ABI tuple of ``report`` in member order (what an ape contract call takes)."""
    report = _require_report(report)
    return tuple(
        int(getattr(report, name)) if abi_type in _UINT_BITS else getattr(report, name)
        for name, abi_type in report.MEMBERS
    )


def domain_separator(domain: Domain) -> bytes:
    """``hashStruct(EIP712Domain)`` of ``domain`` (32 bytes)."""
    return _domain_separator(_require_domain(domain))


@functools.lru_cache(maxsize=64)  # a Domain is frozen and hashable; an oracle has one
def _domain_separator(domain: Domain) -> bytes:
    # The strings are hashed (EIP-712 encodes a string member as its keccak256).
    return keccak256(
        DOMAIN_TYPEHASH
        + keccak256(domain.name.encode("utf-8"))
        + keccak256(domain.version.encode("utf-8"))
        + _uint_word(domain.chain_id)
        + _address_word(domain.verifying_contract)
    )


def struct_hash(report: Report) -> bytes:
    """``hashStruct(report)`` = keccak256(typeHash || abi.encode(members)) (32 bytes)."""
    report = _require_report(report)
    return keccak256(report._TYPEHASH + b"".join(word(getattr(report, name)) for name, word in report._WORDS))


def digest(domain: Domain, report: Report) -> bytes:
    """The EIP-712 digest the committee signs: keccak256(0x1901 || separator || structHash)."""
    _require_report(report)
    return _digest(_require_domain(domain), report)


@functools.lru_cache(maxsize=_DIGEST_MEMO)
def _digest(domain: Domain, report: Report) -> bytes:
    # Memoized by value (both are frozen dataclasses, equal exactly when their fields are): an
    # oracle hashes one report when it decides, signs, and checks each signature over it.
    return keccak256(b"\x19\x01" + _domain_separator(domain) + struct_hash(report))


def typed_data(domain: Domain, report: Report) -> dict[str, Any]:
    """The full typed-data message (``eth_signTypedData_v4`` shape) for wallets and tools."""
    domain = _require_domain(domain)
    report = _require_report(report)
    message: dict[str, Any] = {}
    for name, value in zip((n for n, _ in report.MEMBERS), to_tuple(report), strict=True):
        message[name] = value
    return {
        "types": {
            "EIP712Domain": [{"name": n, "type": t} for n, t in _DOMAIN_FIELDS],
            report.TYPE_NAME: [{"name": n, "type": t} for n, t in report.MEMBERS],
        },
        "primaryType": report.TYPE_NAME,
        "domain": {
            "name": domain.name,
            "version": domain.version,
            "chainId": domain.chain_id,
            "verifyingContract": domain.verifying_contract,
        },
        "message": message,
    }


# --------------------------------------------------------------------------- signatures


def _secret(private_key: bytes | str | PrivateKey) -> bytes:
    # Error messages here never include the key material.
    if isinstance(private_key, PrivateKey):
        return private_key.to_bytes()
    if isinstance(private_key, str):
        text = private_key[2:] if private_key.startswith(("0x", "0X")) else private_key
        try:
            private_key = bytes.fromhex(text)
        except ValueError:
            raise ValueError("private key: not a hex string") from None
    if not isinstance(private_key, (bytes, bytearray)) or len(private_key) != 32:
        raise ValueError("private key: expected 32 bytes (or 64 hex digits)")
    if not 1 <= int.from_bytes(private_key, "big") < SECP256K1_N:
        raise ValueError("private key: not a valid secp256k1 private key")
    return bytes(private_key)


def _address_of_public_key(public_key: coincurve.PublicKey) -> str:
    # The address is the last 20 bytes of keccak256 of the 64-byte uncompressed key (no 0x04 prefix);
    # a committee's few addresses recover again and again, so their checksums come from the memo.
    return _checksummed("0x" + keccak256(public_key.format(compressed=False)[1:])[12:].hex())


def address_of(private_key: bytes | str | PrivateKey) -> str:
    """Checksummed address of ``private_key``."""
    return _address_of_public_key(coincurve.PrivateKey(_secret(private_key)).public_key)


def sign(private_key: bytes | str | PrivateKey, domain: Domain, report: Report) -> bytes:
    """Sign ``report`` under ``domain``: 65 bytes ``r || s || v``, v in {27, 28}, low s.

    libsecp256k1 (coincurve, the backend eth-keys uses too) signs deterministically (RFC 6979)
    and always with a low s.
    """
    recoverable = coincurve.PrivateKey(_secret(private_key)).sign_recoverable(digest(domain, report), hasher=None)
    if not 1 <= int.from_bytes(recoverable[32:64], "big") <= _SECP256K1_HALF_N:
        raise AssertionError("libsecp256k1 produced a high-s signature")
    return recoverable[:64] + bytes([recoverable[64] + 27])  # recovery id 0/1 -> v 27/28


def _parse_signature(signature: bytes | str) -> bytes:
    """The 65 signature bytes, once they pass the contract's rules."""
    if isinstance(signature, str):
        text = signature[2:] if signature.startswith(("0x", "0X")) else signature
        try:
            signature = bytes.fromhex(text)
        except ValueError:
            raise ValueError("signature: not a hex string") from None
    if not isinstance(signature, (bytes, bytearray)):
        raise ValueError(f"signature: expected bytes or a hex string, got {type(signature).__name__}")
    if len(signature) != 65:
        raise ValueError(f"signature: expected 65 bytes (r || s || v), got {len(signature)}")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28):
        raise ValueError(f"signature: v must be 27 or 28, got {v}")
    if not 1 <= r < SECP256K1_N:
        raise ValueError("signature: r is out of range")
    if not 1 <= s <= _SECP256K1_HALF_N:
        raise ValueError("signature: s is zero or high (s > n/2 is malleable and rejected on chain)")
    return bytes(signature)


def recover(domain: Domain, report: Report, signature: bytes | str) -> str:
    """Checksummed address that signed ``report`` under ``domain``.

    Applies the contract's rules: v in {27, 28}, 1 <= r < n, 1 <= s <= n/2.
    Raises ValueError for a malformed signature or one no key could have made.
    """
    return _recover_signer(digest(domain, report), _parse_signature(signature))


@functools.lru_cache(maxsize=_RECOVERY_MEMO)
def _recover_signer(msg_hash: bytes, signature: bytes) -> str:
    # Memoized: an oracle checks one signature again when it assembles the quorum (a failure is not kept).
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes([signature[64] - 27]), msg_hash, hasher=None
        )
    except Exception as exc:  # noqa: BLE001  (coincurve raises a bare Exception when no key recovers)
        raise ValueError(f"signature: no public key recovers from it ({exc})") from None
    return _address_of_public_key(public_key)


def quorum_signatures(domain: Domain, report: Report, private_keys: Iterable[bytes | str | PrivateKey]) -> list[bytes]:
    """Sign with every key; return the signatures sorted strictly ascending by signer address.

    This is the order the contract requires (it rejects a duplicate signer that way).
    Raises ValueError when two keys are the same signer.
    """
    signed = []
    for key in private_keys:
        signature = sign(key, domain, report)
        signed.append((int(recover(domain, report, signature), 16), signature))
    signed.sort(key=lambda pair: pair[0])
    for (a, _), (b, _) in itertools.pairwise(signed):
        if a == b:
            raise ValueError(f"quorum: duplicate signer {_eip55(a.to_bytes(20, 'big').hex())}")
    return [signature for _, signature in signed]


# --------------------------------------------------------------------------- JSON


def to_json(report: Report) -> dict[str, Any]:
    """A JSON-ready dict of ``report``: ints as numbers, bytes32 as 0x-hex, addresses checksummed."""
    report = _require_report(report)
    out: dict[str, Any] = {}
    for (name, abi_type), value in zip(report.MEMBERS, to_tuple(report), strict=True):
        out[name] = "0x" + value.hex() if abi_type == "bytes32" else value
    return out


def _parse_json_uint(where: str, value: Any) -> Any:
    # Accept decimal or 0x-hex strings too: JSON numbers above 2**53 lose precision elsewhere.
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text, 16) if text.lower().startswith("0x") else int(text, 10)
        except ValueError:
            raise ValueError(f"{where}: {value!r} is not a decimal or 0x-hex integer") from None
    return value  # type and range checked by the dataclass


def _parse_json_bytes32(where: str, value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a 0x-prefixed hex string of 32 bytes, got {type(value).__name__}")
    if not value.startswith(("0x", "0X")):
        raise ValueError(f"{where}: expected a 0x-prefixed hex string, got {value!r}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise ValueError(f"{where}: {value!r} is not valid hex") from None


def _resolve_type(report_type: Any, data: Mapping[str, Any]) -> type[Report]:
    if report_type is None:
        keys_present = set(data)
        matches = [cls for cls in _REPORT_CLASSES if keys_present == {n for n, _ in cls.MEMBERS}]
        if len(matches) != 1:
            raise ValueError(f"cannot tell the report type from keys {sorted(keys_present)}; pass report_type")
        return matches[0]
    if isinstance(report_type, str):
        try:
            return _REPORT_TYPES[report_type.lower()]
        except KeyError:
            raise ValueError(f"unknown report type {report_type!r} (job, hardware or batch)") from None
    for cls in _REPORT_CLASSES:
        if cls == report_type:
            return cls
    raise ValueError(f"unknown report type {report_type!r} (job, hardware or batch)")


def from_json(data: Mapping[str, Any], report_type: Any = None) -> Report:
    """Build a report from a dict as ``to_json`` writes it.

    ``report_type`` is JobReport, HardwareReport, JobReportBatch, "job", "hardware" or "batch"; when None it is
    inferred from the keys. Integers may also be decimal or 0x-hex strings; ``outcome``
    may also be a name ("COMPLETED", "failed"). Unknown or missing keys raise ValueError.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"report JSON: expected an object, got {type(data).__name__}")
    cls = _resolve_type(report_type, data)
    names = [n for n, _ in cls.MEMBERS]
    missing = [n for n in names if n not in data]
    unknown = sorted(set(data) - set(names))
    if missing or unknown:
        raise ValueError(f"{cls.TYPE_NAME} JSON: missing keys {missing}, unknown keys {unknown}")
    kwargs: dict[str, Any] = {}
    for name, abi_type in cls.MEMBERS:
        where = f"{cls.TYPE_NAME}.{name}"
        value = data[name]
        if name == "outcome" and isinstance(value, str) and value.strip().upper() in Outcome.__members__:
            value = Outcome[value.strip().upper()]
        elif abi_type in _UINT_BITS:
            value = _parse_json_uint(where, value)
        elif abi_type == "bytes32":
            value = _parse_json_bytes32(where, value)
        kwargs[name] = value
    return cls(**kwargs)
