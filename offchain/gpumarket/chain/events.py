"""The market's events as typed dataclasses, and their decoding from raw logs.

Every event GpuMarket emits has a frozen dataclass here whose fields are the event's
arguments by name (tests check them against the ABI), plus `meta` (block, transaction
and log index). `EventDecoder` turns a raw log of the market into one of them; the
follower (`gpumarket.chain.follower.EventFollower`) and `Market`'s transaction results
both use it. `scan_events` reads a market's past events of some names, in block ranges a
public node accepts.

Types: addresses are checksummed str, bytes32 are bytes, address[] is a tuple of str,
JobSettled.outcome is an Outcome and JobExpired.previous_state a JobState.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, cast

from eth_typing import ABIEvent
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3

from gpumarket.chain.models import JobState
from gpumarket.signing.eip712 import Outcome

if TYPE_CHECKING:  # chain.market imports this module: the reverse edge exists for the types only
    from gpumarket.chain.market import BlockId, Market

__all__ = [
    "EVENT_TYPES",
    "Claimed",
    "CommitteeChanged",
    "CompanionsSet",
    "EventDecoder",
    "GpuClassSet",
    "HardwareRejected",
    "HardwareVerified",
    "JobAccepted",
    "JobCancelled",
    "JobCreated",
    "JobExpired",
    "JobSettled",
    "LogMeta",
    "MarketEvent",
    "OwnershipTransferStarted",
    "OwnershipTransferred",
    "ParameterChanged",
    "Paused",
    "ProviderJailed",
    "ProviderRegistered",
    "ProviderUnjailed",
    "ProviderUpdated",
    "Slashed",
    "Staked",
    "TreasuryChanged",
    "UnstakeRequested",
    "Unpaused",
    "Withdrawn",
    "field_names",
    "scan_events",
]

log = logging.getLogger(__name__)
LOG_CHUNK_BLOCKS = 5_000  # eth_getLogs ranges stay below what public nodes accept


@dataclass(frozen=True)
class LogMeta:
    """Where a log was emitted. `key` identifies it uniquely on one chain."""

    address: str
    block_number: int
    block_hash: bytes
    tx_hash: str  # 0x-prefixed hex
    log_index: int

    @property
    def key(self) -> tuple[str, int]:
        return (self.tx_hash, self.log_index)


@dataclass(frozen=True, kw_only=True)
class MarketEvent:
    """Base of every market event; `name` is the event's name in the ABI."""

    name: ClassVar[str] = ""
    meta: LogMeta

    @property
    def key(self) -> tuple[str, int]:
        return self.meta.key


def _event(cls: type[MarketEvent]) -> type[MarketEvent]:
    cls.name = cls.__name__
    return cls


# --- escrow ------------------------------------------------------------------------------


@_event
@dataclass(frozen=True, kw_only=True)
class JobCreated(MarketEvent):
    job_id: int
    client: str
    provider: str
    gpu_class: int
    gpu_count: int
    max_price_per_gpu_second: int
    max_duration: int
    accept_deadline: int
    escrow: int
    spec_hash: bytes


@_event
@dataclass(frozen=True, kw_only=True)
class JobAccepted(MarketEvent):
    job_id: int
    provider: str
    price_per_gpu_second: int
    collateral: int
    started_at: int


@_event
@dataclass(frozen=True, kw_only=True)
class JobSettled(MarketEvent):
    job_id: int
    provider: str
    outcome: Outcome
    gpu_seconds: int
    provider_payment: int
    protocol_fee: int
    client_refund: int
    slashed: int
    result_hash: bytes
    evidence_hash: bytes


@_event
@dataclass(frozen=True, kw_only=True)
class JobCancelled(MarketEvent):
    job_id: int
    client: str
    refund: int


@_event
@dataclass(frozen=True, kw_only=True)
class JobExpired(MarketEvent):
    job_id: int
    previous_state: JobState
    refund: int
    collateral_released: int


# --- registry and verification -------------------------------------------------------------


@_event
@dataclass(frozen=True, kw_only=True)
class ProviderRegistered(MarketEvent):
    provider: str
    gpu_class: int
    gpu_count: int
    price_per_gpu_second: int
    endpoint: str


@_event
@dataclass(frozen=True, kw_only=True)
class ProviderUpdated(MarketEvent):
    provider: str
    gpu_class: int
    gpu_count: int
    claim_version: int
    price_per_gpu_second: int
    endpoint: str


@_event
@dataclass(frozen=True, kw_only=True)
class ProviderJailed(MarketEvent):
    provider: str
    recent_failures: int


@_event
@dataclass(frozen=True, kw_only=True)
class ProviderUnjailed(MarketEvent):
    provider: str


@_event
@dataclass(frozen=True, kw_only=True)
class HardwareVerified(MarketEvent):
    provider: str
    gpu_class: int
    gpu_count: int
    claim_version: int
    measured_throughput: int
    verified_until: int
    epoch: int


@_event
@dataclass(frozen=True, kw_only=True)
class HardwareRejected(MarketEvent):
    provider: str
    gpu_class: int
    gpu_count: int
    claim_version: int
    measured_throughput: int
    required_throughput: int
    slashed: int
    epoch: int


# --- staking and ledger --------------------------------------------------------------------


@_event
@dataclass(frozen=True, kw_only=True)
class Staked(MarketEvent):
    provider: str
    amount: int


@_event
@dataclass(frozen=True, kw_only=True)
class UnstakeRequested(MarketEvent):
    provider: str
    amount: int
    unbonding_total: int
    release_at: int


@_event
@dataclass(frozen=True, kw_only=True)
class Withdrawn(MarketEvent):
    provider: str
    amount: int


@_event
@dataclass(frozen=True, kw_only=True)
class Slashed(MarketEvent):
    provider: str
    amount: int
    beneficiary: str
    beneficiary_share: int


@_event
@dataclass(frozen=True, kw_only=True)
class Claimed(MarketEvent):
    account: str
    token: str
    amount: int


# --- committee and governance --------------------------------------------------------------


@_event
@dataclass(frozen=True, kw_only=True)
class CommitteeChanged(MarketEvent):
    epoch: int
    members: tuple[str, ...]
    threshold: int


@_event
@dataclass(frozen=True, kw_only=True)
class ParameterChanged(MarketEvent):
    # `name` is the ClassVar of every event, so the parameter's name is `parameter`.
    parameter: str
    old_value: int
    new_value: int


@_event
@dataclass(frozen=True, kw_only=True)
class TreasuryChanged(MarketEvent):
    old_treasury: str
    new_treasury: str


@_event
@dataclass(frozen=True, kw_only=True)
class GpuClassSet(MarketEvent):
    gpu_class: int
    floor_per_gpu: int


@_event
@dataclass(frozen=True, kw_only=True)
class Paused(MarketEvent):
    account: str


@_event
@dataclass(frozen=True, kw_only=True)
class Unpaused(MarketEvent):
    account: str


@_event
@dataclass(frozen=True, kw_only=True)
class OwnershipTransferred(MarketEvent):
    previous_owner: str
    new_owner: str


@_event
@dataclass(frozen=True, kw_only=True)
class OwnershipTransferStarted(MarketEvent):
    previous_owner: str
    new_owner: str


@_event
@dataclass(frozen=True, kw_only=True)
class CompanionsSet(MarketEvent):
    batch_settler: str
    oracle_bonds: str


EVENT_TYPES: dict[str, type[MarketEvent]] = {
    cls.name: cls
    for cls in (
        JobCreated, JobAccepted, JobSettled, JobCancelled, JobExpired,
        ProviderRegistered, ProviderUpdated, ProviderJailed, ProviderUnjailed,
        HardwareVerified, HardwareRejected,
        Staked, UnstakeRequested, Withdrawn, Slashed, Claimed,
        CommitteeChanged, ParameterChanged, TreasuryChanged, GpuClassSet,
        Paused, Unpaused, OwnershipTransferred, OwnershipTransferStarted, CompanionsSet,
    )
}  # fmt: skip

# ABI argument name -> dataclass field name, where they differ (see ParameterChanged).
_RENAMED = {("ParameterChanged", "name"): "parameter"}
# Arguments decoded into an enum.
_ENUMS: dict[tuple[str, str], Any] = {("JobSettled", "outcome"): Outcome, ("JobExpired", "previous_state"): JobState}


def field_names(cls: type[MarketEvent]) -> list[str]:
    """The event's argument fields, in declaration order (without `meta`)."""
    return [f.name for f in fields(cls) if f.name != "meta"]


def _plain(abi_type: str, value: Any) -> Any:
    if abi_type == "address":
        return to_checksum_address(value)
    if abi_type.endswith("[]"):
        return tuple(_plain(abi_type[:-2], item) for item in value)
    if isinstance(value, (bytes, bytearray, HexBytes)):
        return bytes(value)
    return value


class EventDecoder:
    """Decodes raw logs of one market (by its ABI) into MarketEvent dataclasses."""

    def __init__(self, w3: Web3, abi: list[dict[str, Any]]) -> None:
        self._contract = w3.eth.contract(abi=abi)
        self._by_topic: dict[bytes, dict[str, Any]] = {
            bytes(event_abi_to_log_topic(cast("ABIEvent", entry))): entry for entry in abi if entry["type"] == "event"
        }

    @property
    def topics(self) -> list[bytes]:
        """topic0 of every event in the ABI."""
        return list(self._by_topic)

    def event_name(self, topic: bytes) -> str | None:
        abi = self._by_topic.get(bytes(topic))
        return None if abi is None else str(abi["name"])

    def decode(self, raw_log: Any) -> MarketEvent | None:
        """The event of `raw_log`, or None for a log this ABI does not know (logged)."""
        topics = raw_log["topics"]
        abi = self._by_topic.get(bytes(topics[0])) if topics else None
        if abi is None or abi["name"] not in EVENT_TYPES:
            log.warning("skipping an unknown log at block %s index %s", raw_log["blockNumber"], raw_log["logIndex"])
            return None
        name = abi["name"]
        data = getattr(self._contract.events, name)().process_log(raw_log)
        arguments: dict[str, Any] = {}
        for item in abi["inputs"]:
            value = _plain(item["type"], data["args"][item["name"]])
            if (name, item["name"]) in _ENUMS:
                value = _ENUMS[(name, item["name"])](value)
            arguments[_RENAMED.get((name, item["name"]), item["name"])] = value
        meta = LogMeta(
            address=to_checksum_address(raw_log["address"]),
            block_number=int(raw_log["blockNumber"]),
            block_hash=bytes(raw_log["blockHash"]),
            tx_hash="0x" + bytes(raw_log["transactionHash"]).hex(),
            log_index=int(raw_log["logIndex"]),
        )
        return EVENT_TYPES[name](meta=meta, **arguments)


def scan_events(
    market: Market, names: Collection[str], *, from_block: int = 0, to_block: BlockId = "latest"
) -> Iterator[MarketEvent]:
    """The market's events of these names in [from_block, to_block], oldest first."""
    wanted = {market.decoder.event_name(topic): "0x" + topic.hex() for topic in market.decoder.topics}
    topics = [wanted[name] for name in names]
    last = market.w3.eth.block_number if to_block == "latest" else int(to_block)
    for low, high in block_ranges(from_block, last):
        logs = market.w3.eth.get_logs(
            {"address": market.address, "fromBlock": low, "toBlock": high, "topics": [topics]}
        )
        for raw in logs:
            event = market.decoder.decode(raw)
            if event is not None:
                yield event


def block_ranges(first: int, last: int) -> Iterator[tuple[int, int]]:
    """[first, last] in consecutive inclusive ranges of at most LOG_CHUNK_BLOCKS blocks (for eth_getLogs)."""
    low = first
    while low <= last:
        high = min(last, low + LOG_CHUNK_BLOCKS - 1)
        yield low, high
        low = high + 1
