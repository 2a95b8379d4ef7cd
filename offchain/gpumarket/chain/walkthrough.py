"""The whole protocol in one story, on a local chain, with every number checked.

A provider registers and stakes, the 2-of-3 test committee verifies its hardware, a
client escrows a job, the provider accepts it, the committee reports it COMPLETED and a
keeper settles it; then everyone claims, the provider unstakes, and the books are
checked: each payout against docs/PROTOCOL.md's rules, and each token's supply against the
wallets and the market's internal accounts. Any deviation raises WalkthroughError.

Run it with `ape run walkthrough` (scripts/walkthrough.py); it needs ape's connected
provider, test accounts and time travel, so it is for local networks only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from eth_utils.crypto import keccak

from gpumarket.chain.arithmetic import RATE_SCALE, ceil_bps, job_collateral
from gpumarket.chain.deploy import MOCK_TOKEN_DECIMALS, deploy_market
from gpumarket.chain.params import DeployParams
from gpumarket.signing.eip712 import Domain, Outcome
from gpumarket.testing.committee import Committee, hardware_report, job_report

__all__ = ["Actors", "WalkthroughError", "run_walkthrough"]

TOKEN = 10**MOCK_TOKEN_DECIMALS
JOB_STATES = {1: "OPEN", 2: "RUNNING", 3: "COMPLETED", 4: "FAILED", 5: "CANCELLED", 6: "EXPIRED"}
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

# The story's numbers (cpu-dev class: floor 10 GOPS per GPU in default.yaml).
CPU_DEV = 1
PROVIDER_STAKE_MINT = 2_000 * TOKEN
CLIENT_PAYMENT_MINT = 100 * TOKEN
PRICE_PER_GPU_SECOND = 10**15  # 0.001 PAY
MAX_PRICE_PER_GPU_SECOND = 15 * 10**14  # the client accepts up to 0.0015 PAY
MAX_DURATION = 3_600
GPU_SECONDS_RUN = 2_700  # the job ran 45 minutes on its one GPU
MEASURED_GOPS = 42


class WalkthroughError(RuntimeError):
    """A step did not do what the protocol says it must."""


@dataclass(frozen=True)
class Actors:
    """The ape accounts that play each role."""

    owner: Any
    treasury: Any
    provider: Any
    client: Any
    keeper: Any

    def named(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ("owner", "treasury", "provider", "client", "keeper")}


def tokens(amount: int) -> str:
    """Base units as tokens, without trailing zeros (18 decimals)."""
    text = f"{Decimal(amount) / TOKEN:,.6f}".rstrip("0").rstrip(".")
    return text if Decimal(amount) % (TOKEN // 10**6) == 0 else f"~{text}"


def _expect(label: str, actual: Any, expected: Any) -> None:
    if actual != expected:
        raise WalkthroughError(f"{label}: expected {expected!r}, got {actual!r}")


class _Story:
    """Numbered steps with their gas, printed as they happen."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.number = 0
        self.total_gas = 0

    def step(self, title: str, receipt: Any = None, *details: str) -> None:
        self.number += 1
        gas = ""
        if receipt is not None:
            _expect(f"step {self.number} ({title}) status", receipt.status, 1)
            self.total_gas += receipt.gas_used
            gas = f"gas {receipt.gas_used:>9,}"
        self.echo(f"{self.number:>2}. {title:<70}{gas}")
        for line in details:
            self.echo(f"      {line}")


def run_walkthrough(
    actors: Actors,
    params: DeployParams,
    *,
    echo: Callable[[str], None] = print,
    project: Any = None,
) -> dict[str, dict[str, int]]:
    """Play the story on the connected local chain; return the final wallet balances."""
    from ape import chain

    story = _Story(echo)
    committee = Committee.of_size(3, threshold=2)
    _expect("committee in the params", list(params.committee.members), committee.addresses)
    params = params.model_copy(update={"treasury": actors.treasury.address})

    deployment, market = deploy_market(
        params, actors.owner, deploy_mock_tokens=True, project=project, report=lambda _: None
    )
    if project is None:
        from ape import project as ape_project

        project = ape_project
    stake_token = project.MockToken.at(deployment.stake_token)
    payment_token = project.MockToken.at(deployment.payment_token)
    domain = Domain(chain_id=chain.chain_id, verifying_contract=market.address)
    story.step(
        "owner deploys GpuMarket with two mock tokens",
        chain.get_receipt(market.txn_hash),
        f"market {market.address}, stake token mSTK, payment token mPAY, chain {chain.chain_id}",
        f"committee 2-of-3 test oracles {', '.join(m[:10] for m in committee.addresses)}",
        "classes: "
        + ", ".join(f"{c.name} (id {c.id}, floor {c.floor_per_gpu_gops:,} GOPS/GPU)" for c in params.gpu_classes),
    )
    fee_bps = market.protocol_fee_bps()
    collateral_bps = market.collateral_bps()
    collateral_rate = market.collateral_rate()
    min_stake = market.min_stake()

    # Funding: the mock tokens mint to anyone (local chains only).
    stake_token.mint(actors.provider, PROVIDER_STAKE_MINT, sender=actors.provider)
    stake_token.approve(market, 2**256 - 1, sender=actors.provider)
    payment_token.mint(actors.client, CLIENT_PAYMENT_MINT, sender=actors.client)
    payment_token.approve(market, 2**256 - 1, sender=actors.client)
    story.step(
        "faucet: provider and client mint and approve",
        None,
        f"provider {tokens(PROVIDER_STAKE_MINT)} mSTK, client {tokens(CLIENT_PAYMENT_MINT)} mPAY",
    )

    endpoint = "http://127.0.0.1:8700"
    receipt = market.register(CPU_DEV, 1, PRICE_PER_GPU_SECOND, endpoint, sender=actors.provider)
    story.step(
        "provider registers 1 cpu-dev GPU",
        receipt,
        f"price {tokens(PRICE_PER_GPU_SECOND)} mPAY per GPU-second, endpoint {endpoint}",
    )

    staked = min_stake + 100 * TOKEN
    receipt = market.stake(staked, sender=actors.provider)
    story.step(f"provider stakes {tokens(staked)} mSTK (minimum {tokens(min_stake)})", receipt)
    _expect("free stake", market.stake_of(actors.provider).free, staked)

    valid_until = chain.pending_timestamp + 6 * 3_600
    hardware = hardware_report(actors.provider, CPU_DEV, 1, MEASURED_GOPS, valid_until, epoch=market.epoch())
    receipt = market.submit_hardware_report(hardware, committee.sign(domain, hardware), sender=actors.keeper)
    story.step(
        "committee measures the hardware; keeper submits the 2-of-3 report",
        receipt,
        f"measured {MEASURED_GOPS} GOPS >= floor {market.class_floor(CPU_DEV)} GOPS x 1 GPU: verified",
    )
    _expect("provider verified", market.is_verified(actors.provider), True)

    spec = b'{"image":"gpumarket/matmul-demo","args":["--size","512"]}'
    accept_deadline = chain.pending_timestamp + 3_600
    receipt = market.create_job(
        CPU_DEV,
        1,
        MAX_PRICE_PER_GPU_SECOND,
        MAX_DURATION,
        keccak(spec),
        ZERO_ADDRESS,
        accept_deadline,
        sender=actors.client,
    )
    # From the event: a receipt's return_value is re-derived by some providers after the fact.
    job_id = receipt.decode_logs(market.JobCreated)[0].job_id
    escrow = MAX_PRICE_PER_GPU_SECOND * 1 * MAX_DURATION
    story.step(
        f"client creates open job {job_id} (1 GPU, up to 1 hour)",
        receipt,
        f"escrow = max price {tokens(MAX_PRICE_PER_GPU_SECOND)} x 1 GPU x {MAX_DURATION:,} s = {tokens(escrow)} mPAY",
    )
    _expect("job escrow", market.get_job(job_id).escrow, escrow)

    receipt = market.accept_job(job_id, sender=actors.provider)
    job_value = PRICE_PER_GPU_SECOND * 1 * MAX_DURATION
    collateral = job_collateral(job_value, collateral_bps, collateral_rate)
    job = market.get_job(job_id)
    story.step(
        f"provider accepts job {job_id} at its price",
        receipt,
        f"collateral = {collateral_bps / 100:g}% of {tokens(job_value)} mPAY x rate"
        f" {Decimal(collateral_rate) / RATE_SCALE:f} mSTK/mPAY = {tokens(collateral)} mSTK locked",
    )
    _expect("job state", JOB_STATES[job.state], "RUNNING")
    _expect("job collateral", job.collateral, collateral)
    _expect("locked stake", market.stake_of(actors.provider).locked, collateral)

    report = job_report(
        job_id,
        actors.provider,
        Outcome.COMPLETED,
        GPU_SECONDS_RUN,
        epoch=market.epoch(),
        result_hash=keccak(b"result"),
        evidence_hash=keccak(b"nvml samples"),
    )
    receipt = market.settle(report, committee.sign(domain, report), sender=actors.keeper)
    payment = PRICE_PER_GPU_SECOND * GPU_SECONDS_RUN
    fee = ceil_bps(payment, fee_bps)
    refund = escrow - payment
    story.step(
        f"committee reports {GPU_SECONDS_RUN:,} GPU-seconds COMPLETED; keeper settles",
        receipt,
        f"payment {tokens(payment)} mPAY: provider {tokens(payment - fee)}, treasury fee {tokens(fee)}"
        f" ({fee_bps / 100:g}%), client refund {tokens(refund)}; collateral unlocked",
    )
    _expect("job state", JOB_STATES[market.get_job(job_id).state], "COMPLETED")
    _expect("locked stake after settle", market.stake_of(actors.provider).locked, 0)

    expected_claims = [(actors.provider, payment - fee), (actors.treasury, fee), (actors.client, refund)]
    for account, amount in expected_claims:
        role = next(name for name, a in actors.named().items() if a == account)
        receipt = market.claim(payment_token, sender=account)
        story.step(f"{role} claims {tokens(amount)} mPAY", receipt)
        _expect(f"{role} claim", receipt.decode_logs(market.Claimed)[0].amount, amount)

    receipt = market.request_unstake(staked, sender=actors.provider)
    release_at = market.stake_of(actors.provider).release_at
    story.step(
        f"provider requests to unstake {tokens(staked)} mSTK",
        receipt,
        f"unbonding: withdrawable after the {market.unbonding_period():,} s unbonding period",
    )
    chain.pending_timestamp = release_at
    receipt = market.withdraw(sender=actors.provider)
    story.step("the unbonding period passes; provider withdraws its stake", receipt)
    _expect("withdrawn", receipt.decode_logs(market.Withdrawn)[0].amount, staked)

    balances = {
        name: {"mSTK": stake_token.balanceOf(account), "mPAY": payment_token.balanceOf(account)}
        for name, account in actors.named().items()
    }
    balances["market"] = {"mSTK": stake_token.balanceOf(market), "mPAY": payment_token.balanceOf(market)}
    _print_balances(echo, balances)

    # What docs/PROTOCOL.md says everyone ends with.
    expected_wallets = {
        "provider": {"mSTK": PROVIDER_STAKE_MINT, "mPAY": payment - fee},
        "treasury": {"mSTK": 0, "mPAY": fee},
        "client": {"mSTK": 0, "mPAY": CLIENT_PAYMENT_MINT - payment},
        "market": {"mSTK": 0, "mPAY": 0},
    }
    for name, expected in expected_wallets.items():
        _expect(f"{name} balances", balances[name], expected)
    _check_conservation(market, [stake_token, payment_token], actors, balances, job_id)
    echo("")
    echo("conservation: OK (every token minted is in a wallet; the market owes nothing and holds nothing)")
    echo(f"gas used by the {story.number - 1} steps with transactions: {story.total_gas:,}")
    return balances


def _print_balances(echo: Callable[[str], None], balances: dict[str, dict[str, int]]) -> None:
    echo("")
    echo(f"{'account':<10}{'mSTK':>16}{'mPAY':>16}")
    for name, row in balances.items():
        echo(f"{name:<10}{tokens(row['mSTK']):>16}{tokens(row['mPAY']):>16}")


def _check_conservation(
    market: Any, token_contracts: list[Any], actors: Actors, balances: dict[str, dict[str, int]], last_job: int
) -> None:
    """Supply == wallets + market, and the market's balance == what it owes (stake, escrow, claims)."""
    for token in token_contracts:
        symbol = token.symbol()
        _expect(f"{symbol} supply vs wallets", token.totalSupply(), sum(row[symbol] for row in balances.values()))
        owed = sum(market.claimable(token, account) for account in actors.named().values())
        if str(token) == str(market.STAKE_TOKEN()):
            stake = market.stake_of(actors.provider)
            owed += stake.free + stake.locked + stake.unbonding
        if str(token) == str(market.PAYMENT_TOKEN()):
            owed += sum(
                market.get_job(job_id).escrow
                for job_id in range(1, last_job + 1)
                if JOB_STATES[market.get_job(job_id).state] in ("OPEN", "RUNNING")
            )
        _expect(f"{symbol} held by the market vs owed", token.balanceOf(market), owed)
