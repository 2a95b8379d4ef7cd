"""Who holds what: each account's tokens in its wallet and in the market, and the books' check.

An account's *holdings* of a token are its wallet balance plus what the market owes it: its
claimable balance and, for the stake token, its stake (free + locked + unbonding). Moving
tokens into the market (staking, escrow) or out (claim) does not change holdings; only the
protocol's payments, refunds and slashes do, which is what the demo compares with the rules.

The conservation check (as gpumarket.chain.walkthrough does it): for each token, the market's
balance equals what it owes: stakes, claimable balances, and the escrow of every job still
OPEN or RUNNING; and the token's supply equals the accounts' wallets plus the market's balance
(no token minted in the story is anywhere else).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from gpumarket.chain.market import Market, Token
from gpumarket.chain.models import JobState

__all__ = ["TOKENS", "Holding", "Snapshot", "conservation_problems", "snapshot"]

TOKENS = ("stake", "payment")


@dataclass(frozen=True)
class Holding:
    """One account's holding of one token, in base units."""

    wallet: int
    claimable: int
    stake: int  # free + locked + unbonding (stake token only)

    @property
    def total(self) -> int:
        return self.wallet + self.claimable + self.stake

    def to_json(self) -> dict[str, str]:
        return {name: str(value) for name, value in {**asdict(self), "total": self.total}.items()}


Snapshot = dict[str, dict[str, Holding]]  # account name -> token ("stake"/"payment") -> holding


def _tokens(market: Market) -> dict[str, Token]:
    return {"stake": market.stake_token, "payment": market.payment_token}


def snapshot(market: Market, accounts: Mapping[str, str]) -> Snapshot:
    """Every named account's holdings, read at one block."""
    block = market.w3.eth.block_number
    tokens = _tokens(market)
    result: Snapshot = {}
    for name, address in accounts.items():
        stake = market.stake_of(address, block=block)
        result[name] = {
            kind: Holding(
                wallet=token.balance_of(address, block=block),
                claimable=market.claimable(token, address, block=block),
                stake=stake.free + stake.locked + stake.unbonding if kind == "stake" else 0,
            )
            for kind, token in tokens.items()
        }
    return result


def conservation_problems(market: Market, accounts: Mapping[str, str]) -> list[str]:
    """What does not add up (empty when the books balance), read at one block."""
    block = market.w3.eth.block_number
    held = snapshot(market, accounts)
    live_escrow = 0
    for job_id in range(1, market.job_count(block=block) + 1):
        job = market.get_job(job_id, block=block)
        if job.state in (JobState.OPEN, JobState.RUNNING):
            live_escrow += job.escrow
    problems = []
    for kind, token in _tokens(market).items():
        owed = sum(row[kind].claimable + row[kind].stake for row in held.values())
        if kind == "payment":
            owed += live_escrow
        balance = token.balance_of(market.address, block=block)
        if balance != owed:
            problems.append(f"{kind} token: the market holds {balance}, it owes {owed}")
        wallets = sum(row[kind].wallet for row in held.values())
        supply = token.total_supply(block=block)
        if supply != wallets + balance:
            problems.append(f"{kind} token: supply {supply} != wallets {wallets} + market {balance}")
    return problems
