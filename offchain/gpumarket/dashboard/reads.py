"""The market's live state, read from the chain at the block the index has reached, so a page
never shows a state newer (or older) than the events beside it.

    reads = ChainReads(market)
    reads.tokens                          -> (stake Token, payment Token)   read once: immutable
    reads.governance(block)               -> Governance (parameters, committee, pause, owner, ...)
    reads.provider(address, block)        -> ProviderState (claim, stake, GPUs in use, verified)
    reads.job(job_id, block)              -> gpumarket.chain.models.Job
    reads.class_floor(gpu_class, block)   -> the class's floor per GPU then (GOPS)

Governance changes only through its own events, and reading it costs a dozen calls, so it is
cached under a key the caller gives (the newest governance event the index holds): a new
ParameterChanged, CommitteeChanged, Paused, ... reads it again.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass
from functools import cached_property

from gpumarket.chain.market import Market, Token
from gpumarket.chain.models import Job, ProviderRecord, StakeInfo
from gpumarket.chain.params import PARAMETER_BOUNDS
from gpumarket.dashboard import units

__all__ = ["GOVERNANCE_EVENTS", "ChainReads", "Governance", "Parameter", "ProviderState"]

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


def _token(token: Token) -> units.Token:
    return units.Token(token.address, token.name(), token.symbol(), token.decimals())


class ChainReads:
    """Reads of one market at given blocks; see the module docstring. Thread-safe."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self._lock = threading.Lock()
        self._governance: tuple[Hashable, Governance] | None = None

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
