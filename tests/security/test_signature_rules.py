"""No duplicate signer, and only well-formed signatures of current members count.

Every rule is checked on both report kinds (settle and submit_hardware_report share the
quorum check) through the `case` fixture. Each hostile signature list is built from a
valid quorum by one change, so the revert can only come from that change.
"""

from __future__ import annotations

import ape
import pytest
from eth_keys import keys

from gpumarket.signing.eip712 import SECP256K1_N, digest
from helpers.committee import oracle_key

OUTSIDER_KEY = oracle_key(1_000)  # not a member of any committee in these tests


def split(signature: bytes) -> tuple[int, int, int]:
    """(r, s, v) of a 65-byte r || s || v signature."""
    return int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big"), signature[64]


def join(r: int, s: int, v: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])


def test_a_quorum_of_members_is_accepted(case, committee):
    # The baseline every test below breaks in one way.
    case.assert_accepted(case.sign(committee.keys[: committee.threshold]))


def test_the_same_signature_twice_counts_once(case, committee):
    signature = case.sign(committee.keys[:1])[0]
    with ape.reverts("committee: signers not ascending"):
        case.submit([signature] * committee.threshold)


@pytest.mark.parametrize("signers", [2, 3], ids=["threshold", "all-members"])
def test_unsorted_signers_are_rejected(case, committee, signers):
    descending = list(reversed(case.sign(committee.keys[:signers])))
    with ape.reverts("committee: signers not ascending"):
        case.submit(descending)


@pytest.mark.parametrize(
    "member_count", [1, 3], ids=["threshold-minus-one-members-plus-outsider", "all-members-plus-outsider"]
)
def test_an_outsider_signature_is_rejected(case, committee, member_count):
    # Sorted by signer, so the outsider is refused for not being a member, wherever it sorts.
    signatures = case.sign([*committee.keys[:member_count], OUTSIDER_KEY])
    with ape.reverts("committee: signer not a member"):
        case.submit(signatures)


@pytest.mark.parametrize("signers", [0, 1])
def test_fewer_signatures_than_the_threshold_are_rejected(case, committee, signers):
    assert signers < committee.threshold
    with ape.reverts("committee: not enough signatures"):
        case.submit(case.sign(committee.keys[:signers]))


def test_a_high_s_twin_of_a_valid_signature_is_rejected(case, committee):
    signatures = case.sign(committee.keys[: committee.threshold])
    r, s, v = split(signatures[0])
    twin = join(r, SECP256K1_N - s, 55 - v)  # 27 <-> 28
    # The twin is a real signature by the same member (ecrecover alone would accept it).
    recovered = keys.Signature(vrs=(twin[64] - 27, r, SECP256K1_N - s)).recover_public_key_from_msg_hash(
        digest(case.kit.domain, case.report)
    )
    assert recovered.to_checksum_address() in committee.addresses
    with ape.reverts("committee: high-s signature"):
        case.submit([twin, *signatures[1:]])


@pytest.mark.parametrize("field", ["r-zero", "v-not-27-or-28"])
def test_a_signature_recovering_the_zero_address_is_rejected(case, committee, field):
    signatures = case.sign(committee.keys[: committee.threshold])
    r, s, v = split(signatures[0])
    broken = join(0, s, v) if field == "r-zero" else join(r, s, 29)
    with ape.reverts("committee: invalid signature"):
        case.submit([broken, *signatures[1:]])


def test_a_64_byte_compact_signature_is_rejected(case, committee):
    signatures = case.sign(committee.keys[: committee.threshold])
    r, s, v = split(signatures[0])
    compact = r.to_bytes(32, "big") + (s | ((v - 27) << 255)).to_bytes(32, "big")  # EIP-2098
    with ape.reverts("committee: bad signature length"):
        case.submit([compact, *signatures[1:]])
