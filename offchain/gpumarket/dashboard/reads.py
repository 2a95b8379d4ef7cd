"""The market's live state, read from the chain at the block the index has reached, so a page
never shows a state newer (or older) than the events beside it.

    reads = ChainReads(market)
    reads.tokens                          -> (stake Token, payment Token)   read once: immutable
    reads.governance(block)               -> Governance (parameters, committee, pause, owner, ...)
    reads.provider(address, block)        -> ProviderState (claim, stake, GPUs in use, verified)
    reads.job(job_id, block)              -> gpumarket.chain.models.Job
    reads.class_floor(gpu_class, block)   -> the class's floor per GPU then (GOPS)
    reads.timelock(owner, block)          -> TimelockState (delay, pending operations), None: owner is an account

Governance changes only through its own events, and reading it costs a dozen calls, so it is
cached under a key the caller gives (the newest governance event the index holds): a new
ParameterChanged, CommitteeChanged, Paused, ... reads it again.

The Timelock's operations are its own events, which the index does not hold: they are read once
per block a page is read at (concurrent pages wait for that one read), and each read scans only
from the oldest operation still pending (or the block after the last read), never the whole
history again. The wrapper reads operations at the chain's latest block; those scheduled after
the page's block are left out, so a page never shows a change newer than its block.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass
from functools import cached_property

from gpumarket.chain.market import Market, Token
from gpumarket.chain.models import Job, ProviderRecord, StakeInfo
from gpumarket.chain.params import PARAMETER_BOUNDS
from gpumarket.chain.timelock import Operation, Timelock, owner_timelock
from gpumarket.dashboard import units

__all__ = ["GOVERNANCE_EVENTS", "ChainReads", "Governance", "Parameter", "ProviderState", "TimelockState"]

# The events after which Governance must be read again.
GOVERNANCE_EVENTS = frozenset(
    {
        "ParameterChanged",
        "CommitteeChanged",
        "GpuClassSet",
        "Paused",
        "Unpaused",
        "TreasuryChanged",
        "OwnershipTransferred",
        "OwnershipTransferStarted",
    }
)


@dataclass(frozen=True)
class Parameter:
    """A governance parameter, its value and the bounds its setter enforces."""

    name: str
    value: int
    lower: int
    upper: int


@dataclass(frozen=True)
class Governance:
    block: int
    parameters: tuple[Parameter, ...]
    epoch: int
    members: tuple[str, ...]
    threshold: int
    paused: bool
    owner: str
    pending_owner: str
    treasury: str


@dataclass(frozen=True)
class ProviderState:
    record: ProviderRecord
    stake: StakeInfo
    gpus_in_use: int
    verified: bool


@dataclass(frozen=True)
class TimelockState:
    """The Timelock that owns the market: its minimum delay and the operations not yet executed
    nor cancelled (``pending``, oldest first; ``Operation.state`` as of the chain's latest block)."""

    address: str
    minimum_delay: int
    pending: tuple[Operation, ...]


def _token(token: Token) -> units.Token:
    return units.Token(token.address, token.name(), token.symbol(), token.decimals())


class ChainReads:
    """Reads of one market at given blocks; see the module docstring. Thread-safe."""

    def __init__(self, market: Market, *, start_block: int = 0) -> None:
        """``start_block``: where a Timelock's events may start (the market's deployment block)."""
        self.market = market
        self._lock = threading.Lock()
        self._governance: tuple[Hashable, Governance] | None = None
        # Held across a Timelock read, so concurrent pages of one block read it once.
        self._timelock_lock = threading.Lock()
        self._timelock: tuple[tuple[str, int], TimelockState | None] | None = None
        self._owner_timelocks: dict[str, Timelock | None] = {}
        self._scan_from: dict[str, int] = {}  # Timelock address -> the block its next read scans from
        self._start_block = start_block

    @cached_property
    def tokens(self) -> tuple[units.Token, units.Token]:
        """(stake token, payment token): fixed at deployment."""
        return _token(self.market.stake_token), _token(self.market.payment_token)

    def governance(self, block: int, cache_key: Hashable = None) -> Governance:
        """Governance at ``block``; the cached one while ``cache_key`` is the same (None: no cache)."""
        with self._lock:
            cached = self._governance
        if cache_key is not None and cached is not None and cached[0] == cache_key:
            return cached[1]
        market = self.market
        values = market.parameters(block=block)
        governance = Governance(
            block=block,
            parameters=tuple(Parameter(name, values[name], *PARAMETER_BOUNDS[name]) for name in PARAMETER_BOUNDS),
            epoch=market.epoch(block=block),
            members=tuple(market.members(block=block)),
            threshold=market.threshold(block=block),
            paused=market.paused(block=block),
            owner=market.owner(block=block),
            pending_owner=market.pending_owner(block=block),
            treasury=market.treasury(block=block),
        )
        with self._lock:
            self._governance = (cache_key, governance)
        return governance

    def timelock(self, owner: str, block: int) -> TimelockState | None:
        """The Timelock ``owner`` (the market's owner at ``block``) as of ``block``; None when the
        owner is an account, or a contract that is not this market's Timelock (a multisig)."""
        with self._timelock_lock:
            if self._timelock is not None and self._timelock[0] == (owner, block):
                return self._timelock[1]
            timelock = self._owning_timelock(owner, block)
            state = None if timelock is None else self._read_timelock(timelock, block)
            self._timelock = ((owner, block), state)
            return state

    def _owning_timelock(self, owner: str, block: int) -> Timelock | None:
        # Asked once per owner: an address's code, and a Timelock's MARKET, never change.
        if owner not in self._owner_timelocks:
            self._owner_timelocks[owner] = owner_timelock(self.market, block=block)
        return self._owner_timelocks[owner]

    def _read_timelock(self, timelock: Timelock, block: int) -> TimelockState:
        scan_from = self._scan_from.get(timelock.address, self._start_block)
        operations = timelock.operations(self.market, from_block=scan_from)
        pending = [operation for operation in operations if operation.pending]
        # An operation done or cancelled stays so: the next read starts at the oldest one still
        # pending, or after this page's block (confirmed; later ones are read again).
        self._scan_from[timelock.address] = min((op.scheduled_block for op in pending), default=block + 1)
        return TimelockState(
            address=timelock.address,
            minimum_delay=timelock.minimum_delay(block=block),
            pending=tuple(operation for operation in pending if operation.scheduled_block <= block),
        )

    def class_floor(self, gpu_class: int, block: int) -> int:
        """The class's floor per GPU (GOPS) at ``block``; 0 for a class not listed then."""
        return self.market.class_floor(gpu_class, block=block)

    def provider(self, address: str, block: int) -> ProviderState:
        market = self.market
        return ProviderState(
            record=market.providers(address, block=block),
            stake=market.stake_of(address, block=block),
            gpus_in_use=market.gpus_in_use(address, block=block),
            verified=market.is_verified(address, block=block),
        )

    def job(self, job_id: int, block: int) -> Job:
        return self.market.get_job(job_id, block=block)

    def timestamp(self, block: int) -> int:
        return self.market.block_timestamp(block)
