"""The challenge protocol's messages: typed, versioned, size-bounded, serialisable.

Four messages travel between the verifier (the oracle) and the prover (the provider agent):

    verifier -> prover   Challenge       fresh seed and sizes, sent at t0
    prover -> verifier   Commitment      Merkle root over the tile fingerprints, received at t1
    verifier -> prover   OpeningRequest  k tile indices, drawn AFTER the commitment
    prover -> verifier   Opening         those tiles' values, their leaves and Merkle proofs

On the wire each is one compact UTF-8 JSON object ``{"type": ..., "version": 1, ...}``: bytes
are lowercase hex (ids, seeds, hashes) or base64 (tile values as little-endian int32, leaf
fingerprints as little-endian uint64). ``to_bytes`` and ``parse`` are the only ways in and out,
so the HTTP services carry these bytes unchanged. ``parse`` checks the size limit before it
decodes anything, then the JSON, the type, the version and every field, and raises
MessageError with the precise reason (truncated, oversized, wrong version, wrong type, which
field). No message carries a time: the verifier times the challenge with its own clock.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, ClassVar, Final, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError, model_validator

from gpumarket.measure.classes import MAX_INNER_DIMENSION
from gpumarket.measure.fingerprint import MAX_TILE

__all__ = [
    "MAX_OPENED_TILES",
    "PROTOCOL_VERSION",
    "TURN_HEADER",
    "Challenge",
    "Commitment",
    "Message",
    "MessageError",
    "Opening",
    "OpeningRequest",
    "TileOpening",
]

PROTOCOL_VERSION: Final = 1
MAX_OPENED_TILES = 1024
MAX_SIDE = 2**20  # m and p
MAX_ROUNDS = 1_000_000
MAX_PROOF_HASHES = 64
MAX_TILES_PER_LEAF = 2**16
# The HTTP header that carries an oracle's turn at the prover with its Challenge
# (gpumarket.provider.challenges): the waiting for a turn happens before the clock starts.
TURN_HEADER = "X-Challenge-Turn"

M = TypeVar("M", bound="Message")


class MessageError(ValueError):
    """A message was refused; ``str(error)`` says precisely why."""


def _hex_exactly(size: int) -> BeforeValidator:
    def parse(value: Any) -> bytes:
        if isinstance(value, bytes):
            raw = value
        elif isinstance(value, str):
            if value != value.lower() or value.startswith("0x"):
                raise ValueError("must be lowercase hex without 0x")
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                raise ValueError("is not hex") from None
        else:
            raise ValueError(f"must be a hex string, got {type(value).__name__}")
        if len(raw) != size:
            raise ValueError(f"must be {size} bytes, got {len(raw)}")
        return raw

    return BeforeValidator(parse)


def _base64_items(item_size: int, max_bytes: int) -> BeforeValidator:
    def parse(value: Any) -> bytes:
        if isinstance(value, bytes):
            raw = value
        elif isinstance(value, str):
            try:
                raw = base64.b64decode(value.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                raise ValueError("is not base64") from None
        else:
            raise ValueError(f"must be a base64 string, got {type(value).__name__}")
        if not raw or len(raw) % item_size:
            raise ValueError(f"must hold a whole number of {item_size}-byte items, got {len(raw)} bytes")
        if len(raw) > max_bytes:
            raise ValueError(f"holds {len(raw)} bytes, more than {max_bytes}")
        return raw

    return BeforeValidator(parse)


_AS_HEX = PlainSerializer(lambda raw: raw.hex(), return_type=str)
_AS_BASE64 = PlainSerializer(lambda raw: base64.b64encode(raw).decode("ascii"), return_type=str)

ChallengeId = Annotated[bytes, _hex_exactly(16), _AS_HEX]
Hash32 = Annotated[bytes, _hex_exactly(32), _AS_HEX]
PowerOfTwo = Annotated[int, Field(ge=1)]


def _power_of_two(name: str, value: int) -> str | None:
    return None if value & (value - 1) == 0 else f"{name}={value} is not a power of two"


class Message(BaseModel):
    """Common envelope and wire codec; subclasses set ``type`` and ``MAX_BYTES``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    MAX_BYTES: ClassVar[int]
    version: Literal[1] = PROTOCOL_VERSION
    challenge_id: ChallengeId

    def to_bytes(self) -> bytes:
        raw = json.dumps(self.model_dump(mode="json"), separators=(",", ":"), sort_keys=True).encode()
        if len(raw) > self.MAX_BYTES:
            raise MessageError(f"{self.message_type()} of {len(raw)} bytes exceeds its {self.MAX_BYTES}-byte limit")
        return raw

    @classmethod
    def message_type(cls) -> str:
        kind: str = cls.model_fields["type"].default
        return kind

    @classmethod
    def parse(cls: type[M], raw: bytes) -> M:
        """Decode one message of this type from wire bytes; MessageError says why not."""
        kind = cls.message_type()
        if not isinstance(raw, (bytes, bytearray)):
            raise MessageError(f"{kind}: expected bytes, got {type(raw).__name__}")
        if len(raw) > cls.MAX_BYTES:
            raise MessageError(f"{kind}: oversized: {len(raw)} bytes exceed the {cls.MAX_BYTES}-byte limit")
        if not raw:
            raise MessageError(f"{kind}: empty message")
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as error:
            raise MessageError(f"{kind}: not UTF-8 at byte {error.start}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            if error.pos >= len(text.rstrip()) or error.msg.startswith("Unterminated"):
                raise MessageError(
                    f"{kind}: truncated: the JSON ends at byte {len(raw)} before the message is complete"
                ) from None
            raise MessageError(f"{kind}: malformed JSON at byte {error.pos}: {error.msg}") from None
        if not isinstance(data, dict):
            raise MessageError(f"{kind}: expected a JSON object, got {type(data).__name__}")
        if data.get("type") != kind:
            raise MessageError(f"wrong type: expected {kind!r}, got {data.get('type')!r}")
        if data.get("version") != PROTOCOL_VERSION:
            raise MessageError(
                f"{kind}: unsupported version {data.get('version')!r} (this build speaks version {PROTOCOL_VERSION})"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            reasons = "; ".join(_describe(problem) for problem in error.errors())
            raise MessageError(f"{kind}: {reasons}") from None


def _describe(problem: Any) -> str:
    """One pydantic error as ``field.path: reason`` (model-level errors have no path)."""
    reason = problem["msg"].removeprefix("Value error, ")
    where = ".".join(str(part) for part in problem["loc"])
    return f"{where}: {reason}" if where else reason


class Challenge(Message):
    """Sizes and a fresh 32-byte seed; the prover derives everything else from them."""

    MAX_BYTES: ClassVar[int] = 1024
    type: Literal["challenge"] = "challenge"
    seed: Hash32
    gpu_class: int = Field(ge=1, le=2**16 - 1)
    m: PowerOfTwo = Field(le=MAX_SIDE)
    n: PowerOfTwo = Field(le=MAX_INNER_DIMENSION)
    p: PowerOfTwo = Field(le=MAX_SIDE)
    rounds: int = Field(ge=1, le=MAX_ROUNDS)
    tile: PowerOfTwo = Field(le=MAX_TILE)
    tiles_per_leaf: PowerOfTwo = Field(le=MAX_TILES_PER_LEAF)

    @model_validator(mode="after")
    def _sizes_fit(self) -> Challenge:
        problems = [
            problem
            for problem in (
                _power_of_two("m", self.m),
                _power_of_two("n", self.n),
                _power_of_two("p", self.p),
                _power_of_two("tile", self.tile),
                _power_of_two("tiles_per_leaf", self.tiles_per_leaf),
            )
            if problem
        ]
        if not problems and self.tile > min(self.m, self.p):
            problems.append(f"tile={self.tile} is larger than m={self.m} or p={self.p}")
        if not problems and self.tiles_per_leaf > self.tiles_per_round:
            problems.append(f"tiles_per_leaf={self.tiles_per_leaf} exceeds the {self.tiles_per_round} tiles of a round")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def tiles_per_round(self) -> int:
        return (self.m // self.tile) * (self.p // self.tile)

    @property
    def tile_columns(self) -> int:
        return self.p // self.tile

    @property
    def total_tiles(self) -> int:
        return self.tiles_per_round * self.rounds

    @property
    def leaf_count(self) -> int:
        return self.total_tiles // self.tiles_per_leaf

    @property
    def ops(self) -> int:
        """Operations the challenge asks for: 2*m*n*p per round."""
        return 2 * self.m * self.n * self.p * self.rounds


class Commitment(Message):
    """The prover's Merkle root over every tile fingerprint."""

    MAX_BYTES: ClassVar[int] = 1024
    type: Literal["commitment"] = "commitment"
    root: Hash32


class OpeningRequest(Message):
    """The tiles the verifier wants opened: distinct global tile indices."""

    MAX_BYTES: ClassVar[int] = 16 * 1024
    type: Literal["opening_request"] = "opening_request"
    tiles: list[Annotated[int, Field(ge=0, lt=2**40)]] = Field(min_length=1, max_length=MAX_OPENED_TILES)

    @model_validator(mode="after")
    def _distinct(self) -> OpeningRequest:
        if len(set(self.tiles)) != len(self.tiles):
            raise ValueError("tile indices repeat")
        return self


class TileOpening(BaseModel):
    """One opened tile: its values (row-major), the fingerprints of its leaf, the leaf's proof."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    index: int = Field(ge=0, lt=2**40)
    values: Annotated[bytes, _base64_items(4, MAX_TILE * MAX_TILE * 4), _AS_BASE64]
    leaf_fingerprints: Annotated[bytes, _base64_items(8, MAX_TILES_PER_LEAF * 8), _AS_BASE64]
    proof: list[Hash32] = Field(max_length=MAX_PROOF_HASHES)


class Opening(Message):
    """The answer to an OpeningRequest; ``root`` restates the committed root."""

    MAX_BYTES: ClassVar[int] = 16 * 1024 * 1024
    type: Literal["opening"] = "opening"
    root: Hash32
    tiles: list[TileOpening] = Field(min_length=1, max_length=MAX_OPENED_TILES)
