"""Choosing a provider: who is registered, who can take this job now, and in what order.

    offers = list_providers(market)                         # every registered provider
    ranked = choose_providers(market, JobRequirements(gpu_class=1, gpu_count=1,
                              max_price_per_gpu_second=10**15, max_duration=600))
    best = choose_provider(market, requirements)            # NoProviderAvailable if none

Providers come from the chain's ProviderRegistered/ProviderUpdated events; each one's
current standing from `Market.providers`, `gpus_in_use`, `is_verified` and `stake_of`, and its
measured throughput from its latest HardwareVerified event. A provider is a candidate only
when `accept_job` would succeed for it: its class, enough free GPUs (gpu_count less the GPUs
its running jobs hold: `gpus_in_use + job.gpu_count <= gpu_count`, the contract's rule),
verified now, not jailed, price at or below the job's max, and free stake >= MIN_STAKE + the
job's collateral (gpumarket.chain.arithmetic, as escrow.vy computes it). Candidates are ranked by price, then
measured throughput (higher first), then address.

The chain cannot say whether the provider's agent runs, nor whether the machine itself has
the GPUs free (an agent may allow fewer than it claims): with `probe` (the default for
choose_providers) each chain-qualified candidate's agent is asked at GET /health, in parallel
with short timeouts, and one that does not answer or has too few free GPUs for the job now is
left out (a client would otherwise pay into escrow and wait in vain). A provider the chain
already shows too busy is left out before any agent is asked. `list_providers(...,
probe=PROBE_TIMEOUTS)` shows every provider's agent the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gpumarket.agentapi.client import PROBE_TIMEOUTS, AgentHealth, HttpTimeouts, probe_agents
from gpumarket.chain.arithmetic import job_collateral
from gpumarket.chain.events import HardwareVerified, ProviderRegistered, ProviderUpdated, scan_events
from gpumarket.chain.market import Market
from gpumarket.client.errors import NoProviderAvailable

__all__ = [
    "JobRequirements",
    "ProviderOffer",
    "choose_provider",
    "choose_providers",
    "list_providers",
    "with_agents",
]


@dataclass(frozen=True)
class JobRequirements:
    """What the job needs: the terms `create_job` is called with."""

    gpu_class: int
    gpu_count: int
    max_price_per_gpu_second: int
    max_duration: int

    def __post_init__(self) -> None:
        if self.gpu_count < 1 or self.max_duration < 1 or self.max_price_per_gpu_second < 1:
            raise ValueError("gpu_count, max_duration and max_price_per_gpu_second must be positive")


@dataclass(frozen=True)
class ProviderOffer:
    """A registered provider as the chain shows it now."""

    address: str
    gpu_class: int
    gpu_count: int
    gpus_in_use: int  # held by its running jobs
    price_per_gpu_second: int
    endpoint: str
    verified: bool
    verified_until: int
    jailed: bool
    free_stake: int
    measured_throughput: int  # of the latest HardwareVerified (GOPS, whole machine); 0 if never
    agent: AgentHealth | None = None  # its agent's GET /health; None: not asked

    @property
    def free_gpus(self) -> int:
        """GPUs a new job may still take on chain."""
        return self.gpu_count - self.gpus_in_use

    def to_json(self) -> dict[str, object]:
        return {
            "address": self.address,
            "gpu_class": self.gpu_class,
            "gpu_count": self.gpu_count,
            "gpus_in_use": self.gpus_in_use,
            "price_per_gpu_second": str(self.price_per_gpu_second),
            "endpoint": self.endpoint,
            "verified": self.verified,
            "verified_until": self.verified_until,
            "jailed": self.jailed,
            "free_stake": str(self.free_stake),
            "measured_throughput": self.measured_throughput,
            "agent": None if self.agent is None else self.agent.to_json(),
        }


def with_agents(offers: list[ProviderOffer], timeouts: HttpTimeouts = PROBE_TIMEOUTS) -> list[ProviderOffer]:
    """The offers with their agents' health (those not asked yet are asked, in parallel)."""
    health = probe_agents((offer.endpoint for offer in offers if offer.agent is None), timeouts)
    return [offer if offer.agent is not None else replace(offer, agent=health[offer.endpoint]) for offer in offers]


def list_providers(market: Market, *, from_block: int = 0, probe: HttpTimeouts | None = None) -> list[ProviderOffer]:
    """Every provider that ever registered and still is, with its standing now (and, given
    `probe` timeouts, its agent's health)."""
    addresses: dict[str, None] = {}
    throughput: dict[str, int] = {}
    names = (ProviderRegistered.name, ProviderUpdated.name, HardwareVerified.name)
    for event in scan_events(market, names, from_block=from_block):
        if isinstance(event, HardwareVerified):
            throughput[event.provider] = event.measured_throughput  # later events overwrite
        elif isinstance(event, (ProviderRegistered, ProviderUpdated)):
            addresses[event.provider] = None
    block = market.w3.eth.block_number  # one block for every read: a consistent picture
    offers = []
    for address in addresses:
        record = market.providers(address, block=block)
        if not record.registered:
            continue
        offers.append(
            ProviderOffer(
                address=address,
                gpu_class=record.gpu_class,
                gpu_count=record.gpu_count,
                gpus_in_use=market.gpus_in_use(address, block=block),
                price_per_gpu_second=record.price_per_gpu_second,
                endpoint=record.endpoint,
                verified=market.is_verified(address, block=block),
                verified_until=record.verified_until,
                jailed=record.jailed,
                free_stake=market.stake_of(address, block=block).free,
                measured_throughput=throughput.get(address, 0),
            )
        )
    return offers if probe is None else with_agents(offers, probe)


def _rank(offer: ProviderOffer) -> tuple[int, int, str]:
    return (offer.price_per_gpu_second, -offer.measured_throughput, offer.address.lower())


def choose_providers(
    market: Market,
    requirements: JobRequirements,
    *,
    offers: list[ProviderOffer] | None = None,
    from_block: int = 0,
    probe: HttpTimeouts | None = PROBE_TIMEOUTS,
) -> list[ProviderOffer]:
    """The providers that could accept and start this job now, best first (see the module
    docstring); `probe` None judges by the chain alone."""
    offers = list_providers(market, from_block=from_block) if offers is None else offers
    parameters = market.parameters()
    candidates = []
    for offer in offers:
        job_value = offer.price_per_gpu_second * requirements.gpu_count * requirements.max_duration
        collateral = job_collateral(job_value, parameters["collateral_bps"], parameters["collateral_rate"])
        if (
            offer.gpu_class == requirements.gpu_class
            and offer.free_gpus >= requirements.gpu_count
            and offer.verified
            and not offer.jailed
            and offer.price_per_gpu_second <= requirements.max_price_per_gpu_second
            and offer.free_stake >= parameters["min_stake"] + collateral
        ):
            candidates.append(offer)
    if probe is not None:
        candidates = [
            offer
            for offer in with_agents(candidates, probe)
            if offer.agent is not None and offer.agent.can_run(requirements.gpu_count)
        ]
    return sorted(candidates, key=_rank)


def choose_provider(
    market: Market, requirements: JobRequirements, *, from_block: int = 0, probe: HttpTimeouts | None = PROBE_TIMEOUTS
) -> ProviderOffer:
    """The best candidate; NoProviderAvailable when none can take the job."""
    ranked = choose_providers(market, requirements, from_block=from_block, probe=probe)
    if not ranked:
        agent = " whose agent answers with enough free GPUs" if probe is not None else ""
        raise NoProviderAvailable(
            f"no verified, unjailed provider of class {requirements.gpu_class} with {requirements.gpu_count} free"
            f" GPU(s) at <= {requirements.max_price_per_gpu_second} per GPU-second with enough free stake{agent}"
        )
    return ranked[0]
