"""Judging the story: what happened on chain, against what the protocol's rules say.

For each job the client ran: its outcome against the expected one (FAILED for the lazy
provider, caught by a challenge; COMPLETED for an honest one), and its money from the
JobSettled and Slashed events against gpumarket.demo.rules: gpu_seconds (from the usage
record the provider serves, whose hash must be the settled evidence_hash), payment, fee,
refund, collateral, slash and the client's share; a completed job's result must have been
fetched and checked by the client. Then each account's holdings before and after against
the sum of the expected settlements, and the conservation of both tokens.

Every difference is a line in DemoResult.deviations; an empty list is a story that went
exactly as the protocol says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from eth_utils.crypto import keccak

from gpumarket.agentapi.client import ProviderApi
from gpumarket.agentapi.errors import ClientError
from gpumarket.chain.events import HardwareRejected, JobSettled, Slashed, scan_events
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment
from gpumarket.demo import rules
from gpumarket.demo.client import ClientJobReport
from gpumarket.demo.ledger import TOKENS, Snapshot, conservation_problems, snapshot
from gpumarket.measure.metering import UsageRecord

__all__ = ["AccountRow", "DemoResult", "JobRow", "Roles", "judge"]

_MAX_USAGE_BYTES = 4 * 1024 * 1024
# JobRow's fields in token base units, written as decimal strings in JSON.
_AMOUNTS = (
    "price_per_gpu_second",
    "paid",
    "fee",
    "provider_received",
    "refunded",
    "slashed",
    "client_share",
    "escrow",
    "collateral",
)


@dataclass(frozen=True)
class Roles:
    """Who is who: the treasury, the client and the providers (address -> their role)."""

    treasury: str
    client: str
    providers: Mapping[str, Any]  # address -> gpumarket.demo.story.ProviderRole

    def accounts(self) -> dict[str, str]:
        """name -> address of every account that holds tokens in the story."""
        return {
            "treasury": self.treasury,
            "client": self.client,
            **{role.name: address for address, role in self.providers.items()},
        }

    def names(self) -> dict[str, str]:
        return {address: name for name, address in self.accounts().items()}

    def name(self, address: str) -> str:
        return self.names().get(address, address)


@dataclass
class JobRow:
    """One job as settled, with what the rules expected. Amounts in base units; paid is the
    client's payment (provider_received + fee)."""

    job_id: int
    workload: str
    directed: bool
    provider: str
    provider_address: str
    state: str
    expected_outcome: str
    price_per_gpu_second: int
    gpu_seconds: int
    paid: int
    fee: int
    provider_received: int
    refunded: int
    slashed: int
    client_share: int
    escrow: int
    collateral: int
    result: str | None
    expected: dict[str, Any] | None
    runtime: str | None  # how the provider's agent ran it, as it answered the spec
    node: str | None  # the cluster node it ran on, as the provider's agent said (cluster runtime only)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = data.pop("state")
        for name in _AMOUNTS:
            data[name] = str(data[name])
        if self.expected is not None:
            data["expected"] = {k: v if k == "outcome" else str(v) for k, v in self.expected.items()}
        return data


@dataclass
class AccountRow:
    """One account's holdings of each token (wallet + claimable + stake) before and after."""

    name: str
    address: str
    before: dict[str, int]
    after: dict[str, int]
    expected_change: dict[str, int]

    @property
    def change(self) -> dict[str, int]:
        return {token: self.after[token] - self.before[token] for token in TOKENS}

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            **{
                f"{kind}_{token}": str(value)
                for kind, values in (
                    ("before", self.before),
                    ("after", self.after),
                    ("change", self.change),
                    ("expected_change", self.expected_change),
                )
                for token, value in values.items()
            },
        }


@dataclass
class DemoResult:
    chain: str
    market: str
    jobs: list[JobRow] = field(default_factory=list)
    accounts: list[AccountRow] = field(default_factory=list)
    slashed_providers: list[str] = field(default_factory=list)
    conservation_problems: list[str] = field(default_factory=list)
    deviations: list[str] = field(default_factory=list)

    @property
    def conservation_ok(self) -> bool:
        return not self.conservation_problems

    @property
    def ok(self) -> bool:
        return not self.deviations

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "chain": self.chain,
            "market": self.market,
            "jobs": [job.to_json() for job in self.jobs],
            "accounts": [account.to_json() for account in self.accounts],
            "slashed_providers": self.slashed_providers,
            "conservation_ok": self.conservation_ok,
            "conservation_problems": self.conservation_problems,
            "deviations": self.deviations,
        }


def _terms(market: Market, job: Any, parameters: dict[str, int]) -> rules.Terms:
    return rules.Terms(
        gpu_count=job.gpu_count,
        max_price_per_gpu_second=job.max_price_per_gpu_second,
        price_per_gpu_second=job.price_per_gpu_second,
        max_duration=job.max_duration,
        protocol_fee_bps=parameters["protocol_fee_bps"],
        collateral_bps=parameters["collateral_bps"],
        collateral_rate=parameters["collateral_rate"],
        slash_bps=parameters["slash_bps"],
        client_share_bps=parameters["client_share_bps"],
    )


def _usage(market: Market, provider: str, job_id: int) -> tuple[UsageRecord, bytes]:
    """The finished job's usage record from its provider's public API, and its hash."""
    raw = ProviderApi(market.providers(provider).endpoint).request(
        "GET", f"/jobs/{job_id}/usage", limit=_MAX_USAGE_BYTES
    )
    return UsageRecord.from_json(raw), keccak(raw)


def _compare(label: str, expected: rules.Money, actual: rules.Money, deviations: list[str]) -> None:
    for name, want in asdict(expected).items():
        got = getattr(actual, name)
        if got != want:
            deviations.append(f"{label}: {name} is {got}, the rules say {want}")


def judge(
    market: Market,
    deployment: MarketDeployment,
    roles: Roles,
    reports: list[ClientJobReport],
    before: Snapshot,
    runtime: str = "process",
) -> DemoResult:
    """The story's result; see the module docstring. ``runtime``: how every job whose spec was
    sent must have run ("process", "container" or "ray")."""
    result = DemoResult(chain=f"chain {deployment.chain_id}", market=deployment.market)
    deviations = result.deviations
    parameters = market.parameters()
    settled = {
        e.job_id: e
        for e in scan_events(market, [JobSettled.name], from_block=deployment.block)
        if isinstance(e, JobSettled)
    }
    slashes = [e for e in scan_events(market, [Slashed.name, HardwareRejected.name], from_block=deployment.block)]
    slash_by_tx = {e.meta.tx_hash: e for e in slashes if isinstance(e, Slashed)}
    expected_money: list[tuple[str, str, rules.Money]] = []

    for report in reports:
        if report.job_id is None:
            deviations.append(f"job #{report.index} ({report.workload}) was never created")
            continue
        job = market.get_job(report.job_id)
        role = roles.providers.get(job.provider)
        label = f"job {report.job_id} ({role.name if role else job.provider})"
        if role is None:
            deviations.append(
                f"job {report.job_id}: taken by {job.provider}, not one of the story's providers"
                if job.provider != "0x0000000000000000000000000000000000000000"
                else f"job {report.job_id}: no provider took it ({job.state.name})"
            )
            continue
        expected_outcome = "FAILED" if role.lazy else "COMPLETED"
        terms = _terms(market, job, parameters)
        if job.price_per_gpu_second != role.price:
            deviations.append(f"{label}: accepted at {job.price_per_gpu_second}, the provider's price is {role.price}")
        if job.escrow != terms.escrow:
            deviations.append(f"{label}: escrow {job.escrow}, the rules say {terms.escrow}")
        if job.collateral != rules.collateral(terms):
            deviations.append(f"{label}: collateral {job.collateral}, the rules say {rules.collateral(terms)}")
        expected: rules.Money | None = None
        if expected_outcome == "FAILED":
            expected = rules.failed(terms)
        else:
            try:
                usage, usage_hash = _usage(market, job.provider, job.job_id)
                expected = rules.completed(terms, rules.metered_gpu_seconds(usage, job.gpu_count))
                event = settled.get(job.job_id)
                if event is not None and event.evidence_hash != usage_hash:
                    deviations.append(f"{label}: the settled evidence_hash is not the usage record's hash")
            except (ClientError, ValueError) as error:
                deviations.append(f"{label}: no usage record to bill from: {error}")
            if report.result != "ok":
                deviations.append(f"{label}: result {report.result or 'not fetched'}")
        if expected is not None:
            expected_money.append((job.client, job.provider, expected))

        event = settled.get(job.job_id)
        if job.state.name != expected_outcome:
            deviations.append(f"{label}: ended {job.state.name}, expected {expected_outcome}")
        slash = slash_by_tx.get(event.meta.tx_hash) if event is not None else None
        actual = rules.Money(
            outcome=job.state.name,
            gpu_seconds=event.gpu_seconds if event else 0,
            payment=event.provider_payment + event.protocol_fee if event else 0,
            fee=event.protocol_fee if event else 0,
            provider_payment=event.provider_payment if event else 0,
            client_refund=event.client_refund if event else 0,
            slashed=event.slashed if event else 0,
            client_share=slash.beneficiary_share if slash else 0,
            treasury_share=slash.amount - slash.beneficiary_share if slash else 0,
        )
        if expected is not None and job.state.name == expected_outcome:
            _compare(label, expected, actual, deviations)
        result.jobs.append(
            JobRow(
                job_id=job.job_id,
                workload=report.workload,
                directed=report.directed_to is not None,
                provider=role.name,
                provider_address=job.provider,
                state=job.state.name,
                expected_outcome=expected_outcome,
                price_per_gpu_second=job.price_per_gpu_second,
                gpu_seconds=actual.gpu_seconds,
                paid=actual.payment,
                fee=actual.fee,
                provider_received=actual.provider_payment,
                refunded=actual.client_refund,
                slashed=actual.slashed,
                client_share=actual.client_share,
                escrow=job.escrow,
                collateral=job.collateral,
                result=report.result,
                expected=None if expected is None else asdict(expected),
                runtime=report.runtime,
                node=report.node,
            )
        )
        if report.spec == "sent" and report.runtime != runtime:
            deviations.append(f"{label}: ran in the {report.runtime} runtime, not the story's {runtime} runtime")

    spoofed: dict[str, int] = {}
    for slashing in slashes:
        if isinstance(slashing, HardwareRejected):
            deviations.append(f"{roles.name(slashing.provider)}: hardware rejected")
            spoofed[slashing.provider] = spoofed.get(slashing.provider, 0) + slashing.slashed
    result.slashed_providers = sorted({roles.name(e.provider) for e in slashes if isinstance(e, Slashed)})

    accounts = roles.accounts()
    after = snapshot(market, accounts)
    expected_change = rules.deltas(expected_money, roles.treasury, spoofed)
    for name, address in accounts.items():
        row = AccountRow(
            name=name,
            address=address,
            before={token: before[name][token].total for token in TOKENS},
            after={token: after[name][token].total for token in TOKENS},
            expected_change=expected_change.get(address, {token: 0 for token in TOKENS}),
        )
        if row.change != row.expected_change:
            deviations.append(f"{name}: holdings changed by {row.change}, the rules say {row.expected_change}")
        result.accounts.append(row)

    result.conservation_problems = conservation_problems(market, accounts)
    deviations.extend(f"conservation: {problem}" for problem in result.conservation_problems)
    return result
