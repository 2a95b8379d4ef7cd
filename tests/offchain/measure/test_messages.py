"""Protocol messages: round trips, and a precise refusal for every malformed input."""

from __future__ import annotations

import json

import pytest

from gpumarket.measure.messages import (
    Challenge,
    Commitment,
    MessageError,
    Opening,
    OpeningRequest,
    TileOpening,
)

CHALLENGE_ID = bytes(range(16))


@pytest.fixture
def challenge():
    return Challenge(
        challenge_id=CHALLENGE_ID,
        seed=bytes(range(32)),
        gpu_class=1,
        m=64,
        n=64,
        p=64,
        rounds=2,
        tile=8,
        tiles_per_leaf=4,
    )


def _opening(tiles: int = 1, values: bytes = bytes(256)) -> Opening:
    tile = TileOpening(index=3, values=values, leaf_fingerprints=bytes(32), proof=[bytes(32)] * 5)
    return Opening(challenge_id=CHALLENGE_ID, root=bytes(32), tiles=[tile] * tiles)


@pytest.mark.parametrize(
    "message",
    [
        lambda: Commitment(challenge_id=CHALLENGE_ID, root=b"\x01" * 32),
        lambda: OpeningRequest(challenge_id=CHALLENGE_ID, tiles=[5, 0, 99]),
        lambda: _opening(3),
    ],
)
def test_round_trip_through_wire_bytes(message):
    original = message()
    assert type(original).parse(original.to_bytes()) == original


def test_challenge_round_trip_and_wire_form(challenge):
    raw = challenge.to_bytes()
    assert Challenge.parse(raw) == challenge
    data = json.loads(raw)
    assert data["type"] == "challenge" and data["version"] == 1
    assert data["seed"] == bytes(range(32)).hex()
    assert (challenge.tiles_per_round, challenge.total_tiles, challenge.leaf_count) == (64, 128, 32)
    assert challenge.ops == 2 * 64**3 * 2


def test_truncated_messages_are_refused(challenge):
    raw = challenge.to_bytes()
    for cut in (1, len(raw) // 2, len(raw) - 1):
        with pytest.raises(MessageError, match=r"^challenge: truncated: the JSON ends at byte \d+"):
            Challenge.parse(raw[:cut])


def test_oversized_messages_are_refused_before_decoding():
    with pytest.raises(MessageError, match="commitment: oversized: 1025 bytes exceed the 1024-byte limit"):
        Commitment.parse(b" " * 1025)
    with pytest.raises(MessageError, match="opening_request: oversized"):
        OpeningRequest.parse(b"[" * (16 * 1024 + 1))


def test_building_an_oversized_message_is_refused():
    huge = TileOpening(index=0, values=bytes(128 * 128 * 4), leaf_fingerprints=bytes(8 * 65536), proof=[])
    with pytest.raises(MessageError, match=r"opening of \d+ bytes exceeds its 16777216-byte limit"):
        Opening(challenge_id=CHALLENGE_ID, root=bytes(32), tiles=[huge] * 40).to_bytes()


def test_wrong_version_and_wrong_type_are_refused(challenge):
    data = json.loads(challenge.to_bytes())
    with pytest.raises(MessageError, match=r"challenge: unsupported version 2 \(this build speaks version 1\)"):
        Challenge.parse(json.dumps({**data, "version": 2}).encode())
    with pytest.raises(MessageError, match="challenge: unsupported version None"):
        Challenge.parse(json.dumps({k: v for k, v in data.items() if k != "version"}).encode())
    with pytest.raises(MessageError, match="wrong type: expected 'commitment', got 'challenge'"):
        Commitment.parse(challenge.to_bytes())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "challenge: empty message"),
        (b"\xff\xfe", "challenge: not UTF-8 at byte 0"),
        (b"[1, 2]", "challenge: expected a JSON object, got list"),
        (b'{"a": 1} trailing', "challenge: malformed JSON at byte 9: Extra data"),
    ],
)
def test_undecodable_input_is_refused(raw, message):
    with pytest.raises(MessageError, match=message):
        Challenge.parse(raw)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("m", "64", "m: Input should be a valid integer"),
        ("m", True, "m: Input should be a valid integer"),
        ("m", 48, "m=48 is not a power of two"),
        ("m", 2**21, "m: Input should be less than or equal to 1048576"),
        ("tile", 128, "tile=128 is larger than m=64 or p=64"),
        ("tiles_per_leaf", 128, "tiles_per_leaf=128 exceeds the 64 tiles of a round"),
        ("rounds", 0, "rounds: Input should be greater than or equal to 1"),
        ("seed", "00" * 31, "seed: must be 32 bytes, got 31"),
        ("seed", "0x" + "00" * 32, "seed: must be lowercase hex without 0x"),
        ("seed", "AB" * 32, "seed: must be lowercase hex"),
        ("seed", "zz" * 32, "seed: is not hex"),
        ("challenge_id", 7, "challenge_id: must be a hex string, got int"),
        ("extra", 1, "extra: Extra inputs are not permitted"),
    ],
)
def test_bad_challenge_fields_are_named(challenge, field, value, message):
    data = json.loads(challenge.to_bytes())
    data[field] = value
    with pytest.raises(MessageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Challenge.parse(json.dumps(data).encode())


def test_opening_request_needs_distinct_tiles():
    raw = OpeningRequest(challenge_id=CHALLENGE_ID, tiles=[1, 2]).to_bytes().replace(b"[1,2]", b"[2,2]")
    with pytest.raises(MessageError, match="opening_request: tile indices repeat"):
        OpeningRequest.parse(raw)
    with pytest.raises(MessageError, match="tiles: List should have at least 1 item"):
        OpeningRequest.parse(raw.replace(b"[2,2]", b"[]"))


def test_opening_fields_are_checked():
    data = json.loads(_opening().to_bytes())
    data["tiles"][0]["values"] = "not base64!"
    with pytest.raises(MessageError, match="opening: tiles.0.values: is not base64"):
        Opening.parse(json.dumps(data).encode())
    data["tiles"][0]["values"] = "AAAA"  # 3 bytes: not whole int32s
    with pytest.raises(MessageError, match="tiles.0.values: must hold a whole number of 4-byte items, got 3 bytes"):
        Opening.parse(json.dumps(data).encode())
