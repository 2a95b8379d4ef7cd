"""gpumarket.signing.eip712 against eth_account's independent EIP-712 implementation.

Plain pytest, no chain: the contract-side check of the same digests lives with the
contract tests.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import FrozenInstanceError, replace

import pytest
from click.testing import CliRunner
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys import keys
from eth_utils import is_checksum_address, keccak, to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

from gpumarket import __version__
from gpumarket.cli import main
from gpumarket.signing import eip712
from gpumarket.signing.eip712 import Domain, HardwareReport, JobReport, Outcome

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

# --------------------------------------------------------------------------- strategies

addresses = st.binary(min_size=20, max_size=20).map(to_checksum_address)
uint256 = st.integers(min_value=0, max_value=2**256 - 1)
bytes32 = st.binary(min_size=32, max_size=32)
private_keys = st.integers(min_value=1, max_value=SECP256K1_N - 1).map(lambda k: k.to_bytes(32, "big"))

domains = st.builds(
    Domain,
    chain_id=st.integers(min_value=1, max_value=2**256 - 1),
    verifying_contract=addresses,
    name=st.one_of(st.just("gpumarket"), st.text(max_size=40)),
    version=st.one_of(st.just("1"), st.text(max_size=10)),
)
job_reports = st.builds(
    JobReport,
    job_id=uint256,
    provider=addresses,
    outcome=st.sampled_from(list(Outcome)),
    gpu_seconds=uint256,
    result_hash=bytes32,
    evidence_hash=bytes32,
    epoch=uint256,
)
hardware_reports = st.builds(
    HardwareReport,
    provider=addresses,
    gpu_class=st.integers(min_value=0, max_value=2**16 - 1),
    gpu_count=st.integers(min_value=0, max_value=2**16 - 1),
    claim_version=st.integers(min_value=0, max_value=2**64 - 1),
    measured_throughput=uint256,
    valid_until=st.integers(min_value=0, max_value=2**64 - 1),
    epoch=uint256,
)
reports = st.one_of(job_reports, hardware_reports)


def _reference_message(domain: Domain, report) -> dict:
    """The typed-data message written out by hand from the spec (not from eip712.py)."""
    domain_types = [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ]
    if isinstance(report, JobReport):
        primary = "JobReport"
        types = [
            {"name": "job_id", "type": "uint256"},
            {"name": "provider", "type": "address"},
            {"name": "outcome", "type": "uint8"},
            {"name": "gpu_seconds", "type": "uint256"},
            {"name": "result_hash", "type": "bytes32"},
            {"name": "evidence_hash", "type": "bytes32"},
            {"name": "epoch", "type": "uint256"},
        ]
        message = {
            "job_id": report.job_id,
            "provider": report.provider,
            "outcome": int(report.outcome),
            "gpu_seconds": report.gpu_seconds,
            "result_hash": report.result_hash,
            "evidence_hash": report.evidence_hash,
            "epoch": report.epoch,
        }
    else:
        primary = "HardwareReport"
        types = [
            {"name": "provider", "type": "address"},
            {"name": "gpu_class", "type": "uint16"},
            {"name": "gpu_count", "type": "uint16"},
            {"name": "claim_version", "type": "uint64"},
            {"name": "measured_throughput", "type": "uint256"},
            {"name": "valid_until", "type": "uint64"},
            {"name": "epoch", "type": "uint256"},
        ]
        message = {
            "provider": report.provider,
            "gpu_class": report.gpu_class,
            "gpu_count": report.gpu_count,
            "claim_version": report.claim_version,
            "measured_throughput": report.measured_throughput,
            "valid_until": report.valid_until,
            "epoch": report.epoch,
        }
    return {
        "types": {"EIP712Domain": domain_types, primary: types},
        "primaryType": primary,
        "domain": {
            "name": domain.name,
            "version": domain.version,
            "chainId": domain.chain_id,
            "verifyingContract": domain.verifying_contract,
        },
        "message": message,
    }


def _reference_digest(domain: Domain, report) -> bytes:
    signable = encode_typed_data(full_message=_reference_message(domain, report))
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


DOMAIN = Domain(chain_id=1337, verifying_contract="0x" + "11" * 20)
JOB = JobReport(
    job_id=7,
    provider="0x" + "22" * 20,
    outcome=Outcome.COMPLETED,
    gpu_seconds=3600,
    result_hash=b"\xaa" * 32,
    evidence_hash=b"\xbb" * 32,
    epoch=1,
)
HARDWARE = HardwareReport(
    provider="0x" + "22" * 20,
    gpu_class=3,
    gpu_count=8,
    claim_version=2,
    measured_throughput=790 * 10**12,
    valid_until=1_900_000_000,
    epoch=1,
)
KEYS = [(i * 7919).to_bytes(32, "big") for i in range(1, 6)]

# --------------------------------------------------------------------------- type strings


def test_type_strings_are_exactly_what_the_contract_verifies():
    assert eip712.DOMAIN_TYPE == ("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    assert eip712.JOB_REPORT_TYPE == (
        "JobReport(uint256 job_id,address provider,uint8 outcome,uint256 gpu_seconds,"
        "bytes32 result_hash,bytes32 evidence_hash,uint256 epoch)"
    )
    assert eip712.HARDWARE_REPORT_TYPE == (
        "HardwareReport(address provider,uint16 gpu_class,uint16 gpu_count,uint64 claim_version,"
        "uint256 measured_throughput,uint64 valid_until,uint256 epoch)"
    )
    assert eip712.DOMAIN_TYPEHASH == keccak(text=eip712.DOMAIN_TYPE)
    assert eip712.JOB_REPORT_TYPEHASH == keccak(text=eip712.JOB_REPORT_TYPE)
    assert eip712.HARDWARE_REPORT_TYPEHASH == keccak(text=eip712.HARDWARE_REPORT_TYPE)


# --------------------------------------------------------------------------- differential


@given(domain=domains, report=reports)
def test_digest_matches_eth_account(domain, report):
    assert eip712.digest(domain, report) == _reference_digest(domain, report)


@given(domain=domains)
def test_domain_separator_matches_eth_account(domain):
    from eth_account.messages import hash_domain

    assert eip712.domain_separator(domain) == bytes(hash_domain(_reference_message(domain, JOB)["domain"]))


@given(domain=domains, report=reports)
def test_typed_data_is_the_reference_message(domain, report):
    assert eip712.typed_data(domain, report) == _reference_message(domain, report)


@given(key=private_keys, domain=domains, report=reports)
def test_sign_recover_round_trip_and_matches_eth_account(key, domain, report):
    signature = eip712.sign(key, domain, report)
    assert len(signature) == 65
    assert signature[64] in (27, 28)
    assert int.from_bytes(signature[32:64], "big") <= SECP256K1_N // 2
    expected = Account.from_key(key).address
    assert eip712.address_of(key) == expected
    assert eip712.recover(domain, report, signature) == expected
    assert eip712.recover(domain, report, "0x" + signature.hex()) == expected
    # eth_account signs the same digest deterministically (RFC 6979): same bytes.
    theirs = Account.sign_typed_data(key, full_message=_reference_message(domain, report))
    assert bytes(theirs.signature) == signature


# --------------------------------------------------------------------------- the fast path
# eip712.py hashes by joining 32-byte words and memoizes pure functions (its module doc): each
# shortcut is held to an independent reference here.


def _abi_struct_hash(report) -> bytes:
    """hashStruct by eth_abi's encoder (the encoding the contract's abi.encode produces)."""
    types = ["bytes32", *(abi_type for _, abi_type in report.MEMBERS)]
    return keccak(abi_encode(types, [keccak(text=report.type_string()), *eip712.to_tuple(report)]))


@given(report=reports)
def test_struct_hash_is_the_abi_encoding(report):
    assert eip712.struct_hash(report) == _abi_struct_hash(report)


@given(domain=domains, report=reports)
def test_a_memoized_digest_is_the_reference_digest(domain, report):
    expected = _reference_digest(domain, report)
    assert eip712.digest(domain, report) == expected
    assert eip712.digest(domain, report) == expected  # the memo's answer
    copy = eip712.from_json(eip712.to_json(report), type(report))  # an equal report, another object
    assert copy is not report and eip712.digest(domain, copy) == expected


def test_a_digest_follows_a_report_changed_behind_its_back():
    # Some contract tests bypass the frozen dataclass to sign what a buggy committee could sign:
    # the memo is keyed by value, so the changed report gets its own digest, never the old one.
    report = replace(JOB)
    before = eip712.digest(DOMAIN, report)
    object.__setattr__(report, "gpu_seconds", JOB.gpu_seconds + 1)
    assert eip712.digest(DOMAIN, report) == _reference_digest(DOMAIN, report) != before


@given(raw=st.binary(min_size=20, max_size=20), case=st.sampled_from(["lower", "upper", "checksum", "swapped"]))
def test_checksum_address_is_eip55(raw, case):
    checksummed = to_checksum_address(raw)
    body = checksummed[2:]
    text = "0x" + {"lower": body.lower(), "upper": body.upper(), "checksum": body, "swapped": body.swapcase()}[case]
    mixed = body.lower() != text[2:] != body.upper()
    if mixed and not is_checksum_address(text):
        with pytest.raises(ValueError, match="invalid EIP-55 checksum"):
            eip712.checksum_address(text)
    else:
        assert eip712.checksum_address(text) == checksummed


@pytest.mark.parametrize("text", ["0x" + "1" * 39, "0x" + "g" * 40, "11" * 21, "0X" + "aB" * 20, ""])
def test_checksum_address_refuses_what_is_no_address(text):
    with pytest.raises(ValueError):
        eip712.checksum_address(text)


@given(key=private_keys, other=private_keys, report=reports)
def test_recovery_memo_answers_what_the_curve_answers(key, other, report):
    signature = eip712.sign(key, DOMAIN, report)
    for _ in range(2):  # computed, then from the memo
        assert eip712.recover(DOMAIN, report, signature) == Account.from_key(key).address
    assert eip712.recover(DOMAIN, report, eip712.sign(other, DOMAIN, report)) == Account.from_key(other).address
    assert eip712.sign(keys.PrivateKey(key), DOMAIN, report) == signature  # an eth-keys key signs the same


def test_a_recovery_that_fails_fails_every_time():
    # r = 5 is no point's x coordinate (5**3 + 7 is not a square mod p): no key recovers.
    field_p = 2**256 - 2**32 - 977
    assert pow(5**3 + 7, (field_p - 1) // 2, field_p) == field_p - 1
    signature = (5).to_bytes(32, "big") + (12345).to_bytes(32, "big") + bytes([27])
    for _ in range(2):
        with pytest.raises(ValueError, match="no public key recovers"):
            eip712.recover(DOMAIN, JOB, signature)


# --------------------------------------------------------------------------- replay separation


def test_digest_changes_with_every_domain_field_and_report_field():
    base = eip712.digest(DOMAIN, JOB)
    for other in (
        Domain(chain_id=1, verifying_contract=DOMAIN.verifying_contract),
        Domain(chain_id=1337, verifying_contract="0x" + "12" * 20),
        Domain(chain_id=1337, verifying_contract=DOMAIN.verifying_contract, name="gpumarket2"),
        Domain(chain_id=1337, verifying_contract=DOMAIN.verifying_contract, version="2"),
    ):
        assert eip712.digest(other, JOB) != base
    for field, value in [
        ("job_id", 8),
        ("provider", "0x" + "23" * 20),
        ("outcome", Outcome.FAILED),
        ("gpu_seconds", 3601),
        ("result_hash", b"\xab" * 32),
        ("evidence_hash", b"\xbc" * 32),
        ("epoch", 2),
    ]:
        assert eip712.digest(DOMAIN, replace(JOB, **{field: value})) != base, field


def test_job_and_hardware_reports_never_share_a_struct_hash():
    assert eip712.JOB_REPORT_TYPEHASH != eip712.HARDWARE_REPORT_TYPEHASH
    assert eip712.struct_hash(JOB) != eip712.struct_hash(HARDWARE)


# --------------------------------------------------------------------------- quorum


def test_quorum_signatures_sorted_strictly_ascending_by_signer():
    signatures = eip712.quorum_signatures(DOMAIN, JOB, reversed(KEYS))
    signers = [int(eip712.recover(DOMAIN, JOB, s), 16) for s in signatures]
    assert signers == sorted(signers)
    assert len(set(signers)) == len(KEYS)
    assert {eip712.recover(DOMAIN, JOB, s) for s in signatures} == {eip712.address_of(k) for k in KEYS}


@given(keys=st.lists(private_keys, min_size=1, max_size=8, unique=True))
def test_quorum_order_is_independent_of_key_order(keys):
    forward = eip712.quorum_signatures(DOMAIN, HARDWARE, keys)
    backward = eip712.quorum_signatures(DOMAIN, HARDWARE, list(reversed(keys)))
    assert forward == backward
    signers = [int(eip712.recover(DOMAIN, HARDWARE, s), 16) for s in forward]
    assert all(a < b for a, b in itertools.pairwise(signers))


def test_quorum_rejects_a_duplicate_signer():
    # the same key as bytes and as hex is still one signer
    with pytest.raises(ValueError, match="duplicate signer"):
        eip712.quorum_signatures(DOMAIN, JOB, [KEYS[0], KEYS[1], "0x" + KEYS[0].hex()])


def test_quorum_of_no_keys_is_empty():
    assert eip712.quorum_signatures(DOMAIN, JOB, []) == []


# --------------------------------------------------------------------------- signatures


def test_recover_rejects_high_s_like_the_contract():
    signature = eip712.sign(KEYS[0], DOMAIN, JOB)
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    flipped = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])  # same signer, high s
    with pytest.raises(ValueError, match="high"):
        eip712.recover(DOMAIN, JOB, flipped)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s[:64], "expected 65 bytes"),
        (lambda s: s + b"\x00", "expected 65 bytes"),
        (lambda s: s[:64] + b"\x01", "v must be 27 or 28"),
        (lambda s: s[:64] + b"\x00", "v must be 27 or 28"),
        (lambda s: b"\x00" * 32 + s[32:], "r is out of range"),
        (lambda s: SECP256K1_N.to_bytes(32, "big") + s[32:], "r is out of range"),
        (lambda s: s[:32] + b"\x00" * 32 + s[64:], "s is zero or high"),
        (lambda s: "zz", "not a hex string"),
        (lambda s: 42, "expected bytes or a hex string"),
    ],
)
def test_recover_rejects_malformed_signatures(mutate, message):
    signature = eip712.sign(KEYS[0], DOMAIN, JOB)
    with pytest.raises(ValueError, match=message):
        eip712.recover(DOMAIN, JOB, mutate(signature))


def test_recover_of_another_report_gives_another_signer():
    signature = eip712.sign(KEYS[0], DOMAIN, JOB)
    other = replace(JOB, job_id=8)
    assert eip712.recover(DOMAIN, other, signature) != eip712.address_of(KEYS[0])


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (b"\x00" * 32, "not a valid secp256k1 private key"),
        (SECP256K1_N.to_bytes(32, "big"), "not a valid secp256k1 private key"),
        (b"\x01" * 31, "expected 32 bytes"),
        ("0xnothex", "not a hex string"),
        (12345, "expected 32 bytes"),
    ],
)
def test_sign_rejects_bad_keys_without_echoing_them(key, message):
    with pytest.raises(ValueError, match=message) as info:
        eip712.sign(key, DOMAIN, JOB)
    assert "nothex" not in str(info.value)


def test_sign_accepts_hex_keys_with_and_without_prefix():
    a = eip712.sign(KEYS[0], DOMAIN, JOB)
    assert eip712.sign("0x" + KEYS[0].hex(), DOMAIN, JOB) == a
    assert eip712.sign(KEYS[0].hex(), DOMAIN, JOB) == a


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"job_id": -1}, r"JobReport.job_id: -1 is out of range for uint256"),
        ({"job_id": 2**256}, r"JobReport.job_id: .* out of range for uint256"),
        ({"job_id": True}, r"JobReport.job_id: expected an int \(uint256\), got bool"),
        ({"job_id": "7"}, r"JobReport.job_id: expected an int \(uint256\), got str"),
        ({"gpu_seconds": 1.5}, r"JobReport.gpu_seconds: expected an int \(uint256\), got float"),
        ({"epoch": -5}, r"JobReport.epoch: -5 is out of range for uint256"),
        ({"outcome": 0}, r"JobReport.outcome: 0 is not one of COMPLETED=1, FAILED=2"),
        ({"outcome": 3}, r"JobReport.outcome: 3 is not one of COMPLETED=1, FAILED=2"),
        ({"outcome": 256}, r"JobReport.outcome: 256 is out of range for uint8"),
        ({"result_hash": b"\x00" * 31}, r"JobReport.result_hash: expected exactly 32 bytes, got 31"),
        ({"evidence_hash": b"\x00" * 33}, r"JobReport.evidence_hash: expected exactly 32 bytes, got 33"),
        ({"evidence_hash": "0x" + "00" * 32}, r"JobReport.evidence_hash: expected 32 bytes, got str"),
        ({"provider": "0x1234"}, r"JobReport.provider: '0x1234' is not a 20-byte 0x-prefixed hex address"),
        ({"provider": "22" * 20}, r"JobReport.provider: .* is not a 20-byte 0x-prefixed hex address"),
        ({"provider": b"\x22" * 20}, r"JobReport.provider: expected a 0x-prefixed hex address string"),
        (
            {"provider": "0x" + "aB" * 20},
            r"JobReport.provider: .* has mixed case but an invalid EIP-55 checksum",
        ),
    ],
)
def test_job_report_validation(kwargs, message):
    fields = {
        "job_id": JOB.job_id,
        "provider": JOB.provider,
        "outcome": JOB.outcome,
        "gpu_seconds": JOB.gpu_seconds,
        "result_hash": JOB.result_hash,
        "evidence_hash": JOB.evidence_hash,
        "epoch": JOB.epoch,
    }
    with pytest.raises(ValueError, match=message):
        JobReport(**{**fields, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gpu_class": 2**16}, r"HardwareReport.gpu_class: 65536 is out of range for uint16"),
        ({"gpu_count": -1}, r"HardwareReport.gpu_count: -1 is out of range for uint16"),
        ({"claim_version": 2**64}, r"HardwareReport.claim_version: .* out of range for uint64"),
        ({"valid_until": 2**64}, r"HardwareReport.valid_until: .* out of range for uint64"),
        ({"measured_throughput": 2**256}, r"HardwareReport.measured_throughput: .* uint256"),
        ({"epoch": None}, r"HardwareReport.epoch: expected an int \(uint256\), got NoneType"),
    ],
)
def test_hardware_report_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HardwareReport(**{**eip712.to_json(HARDWARE), **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chain_id": 0}, r"Domain.chain_id: must be >= 1"),
        ({"chain_id": -1}, r"Domain.chain_id: -1 is out of range for uint256"),
        ({"verifying_contract": "0x00"}, r"Domain.verifying_contract: '0x00' is not a 20-byte"),
        ({"name": 1}, r"Domain.name: expected a str, got int"),
        ({"version": None}, r"Domain.version: expected a str, got NoneType"),
    ],
)
def test_domain_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Domain(**{"chain_id": 1, "verifying_contract": "0x" + "11" * 20, **kwargs})


def test_values_are_normalized_and_frozen():
    lower = "0x" + "ab" * 20
    report = JobReport(
        job_id=1,
        provider=lower,
        outcome=2,
        gpu_seconds=0,
        result_hash=bytearray(32),
        evidence_hash=bytes(32),
        epoch=0,
    )
    assert report.provider == to_checksum_address(lower)
    assert report.outcome is Outcome.FAILED
    assert type(report.result_hash) is bytes
    assert Domain(chain_id=1, verifying_contract=lower.upper().replace("0X", "0x")).verifying_contract == (
        to_checksum_address(lower)
    )
    with pytest.raises(FrozenInstanceError):
        report.job_id = 2  # type: ignore[misc]


def test_functions_reject_wrong_types():
    with pytest.raises(TypeError, match="expected a JobReport, HardwareReport or JobReportBatch"):
        eip712.struct_hash({"job_id": 1})
    with pytest.raises(TypeError, match="expected a Domain"):
        eip712.domain_separator({"chainId": 1})


# --------------------------------------------------------------------------- tuples and JSON


def test_to_tuple_is_abi_order():
    assert eip712.to_tuple(JOB) == (
        7,
        JOB.provider,
        1,
        3600,
        b"\xaa" * 32,
        b"\xbb" * 32,
        1,
    )
    assert type(eip712.to_tuple(JOB)[2]) is int
    assert eip712.to_tuple(HARDWARE) == (HARDWARE.provider, 3, 8, 2, 790 * 10**12, 1_900_000_000, 1)


@given(report=reports)
def test_json_round_trip(report):
    data = eip712.to_json(report)
    assert json.loads(json.dumps(data)) == data
    assert eip712.from_json(data) == report
    assert eip712.from_json(data, type(report)) == report


def test_from_json_accepts_strings_and_outcome_names():
    data = eip712.to_json(JOB)
    data.update(job_id="0x7", gpu_seconds="3600", outcome="completed")
    assert eip712.from_json(data, "job") == JOB
    assert eip712.from_json({**eip712.to_json(HARDWARE), "epoch": "1"}, "hardware") == HARDWARE


@pytest.mark.parametrize(
    ("data", "report_type", "message"),
    [
        ({"job_id": 1}, None, "cannot tell the report type"),
        ({**eip712.to_json(JOB), "extra": 1}, "job", r"missing keys \[\], unknown keys \['extra'\]"),
        ({"job_id": 1}, "job", r"JobReport JSON: missing keys \['provider'"),
        (eip712.to_json(JOB), "nope", "unknown report type 'nope'"),
        ({**eip712.to_json(JOB), "job_id": "seven"}, "job", r"JobReport.job_id: 'seven' is not a decimal"),
        ({**eip712.to_json(JOB), "result_hash": "aa" * 32}, "job", r"JobReport.result_hash: expected a 0x"),
        ({**eip712.to_json(JOB), "result_hash": "0xzz"}, "job", r"JobReport.result_hash: '0xzz' is not valid"),
        ({**eip712.to_json(JOB), "result_hash": "0xaa"}, "job", r"expected exactly 32 bytes, got 1"),
        ({**eip712.to_json(JOB), "outcome": "done"}, "job", r"JobReport.outcome: 'done' is not a decimal"),
        ([1, 2], "job", "expected an object, got list"),
    ],
)
def test_from_json_errors(data, report_type, message):
    with pytest.raises(ValueError, match=message):
        eip712.from_json(data, report_type)


# --------------------------------------------------------------------------- CLI


def _write(tmp_path, report) -> str:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(eip712.to_json(report)))
    return str(path)


def _domain_args(report_type: str, path: str) -> list[str]:
    return ["--chain-id", "1337", "--contract", DOMAIN.verifying_contract, "--type", report_type, "--file", path]


def test_cli_version_and_help():
    runner = CliRunner()
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "report" in result.output


@pytest.mark.parametrize(("report", "report_type"), [(JOB, "job"), (HARDWARE, "hardware")])
def test_cli_digest(tmp_path, report, report_type):
    path = _write(tmp_path, report)
    result = CliRunner().invoke(main, ["report", "digest", *_domain_args(report_type, path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out == {
        "type": report.TYPE_NAME,
        "domain_separator": "0x" + eip712.domain_separator(DOMAIN).hex(),
        "struct_hash": "0x" + eip712.struct_hash(report).hex(),
        "digest": "0x" + _reference_digest(DOMAIN, report).hex(),
    }
    text = CliRunner().invoke(main, ["report", "digest", *_domain_args(report_type, path)])
    assert text.exit_code == 0
    assert out["digest"] in text.output


def test_cli_digest_from_stdin():
    data = json.dumps(eip712.to_json(JOB))
    result = CliRunner().invoke(main, ["report", "digest", *_domain_args("job", "-"), "--json"], input=data)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["digest"] == "0x" + eip712.digest(DOMAIN, JOB).hex()


def test_cli_recover(tmp_path):
    path = _write(tmp_path, JOB)
    signature = "0x" + eip712.sign(KEYS[2], DOMAIN, JOB).hex()
    args = ["report", "recover", *_domain_args("job", path), "--signature", signature]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["signer"] == eip712.address_of(KEYS[2])
    text = CliRunner().invoke(main, args)
    assert eip712.address_of(KEYS[2]) in text.output


def test_cli_errors_are_usage_errors(tmp_path):
    path = _write(tmp_path, JOB)
    runner = CliRunner()
    bad_sig = runner.invoke(main, ["report", "recover", *_domain_args("job", path), "--signature", "0x00"])
    assert bad_sig.exit_code == 2
    assert "expected 65 bytes" in bad_sig.output
    wrong_type = runner.invoke(main, ["report", "digest", *_domain_args("hardware", path)])
    assert wrong_type.exit_code == 2
    assert "HardwareReport JSON: missing keys" in wrong_type.output
    bad_contract = runner.invoke(
        main, ["report", "digest", "--chain-id", "1", "--contract", "0x12", "--type", "job", "--file", path]
    )
    assert bad_contract.exit_code == 2
    assert "Domain.verifying_contract" in bad_contract.output
    (tmp_path / "bad.json").write_text("{not json")
    bad_json = runner.invoke(main, ["report", "digest", *_domain_args("job", str(tmp_path / "bad.json"))])
    assert bad_json.exit_code == 2
    assert "not valid JSON" in bad_json.output
