"""The conservation invariant, computed from the contract's own views."""

from __future__ import annotations

from .constants import OPEN, RUNNING


def internal_total(market, token, providers, accounts) -> int:
    """What the market owes in `token`: stake, live escrow and claimable balances."""
    total = 0
    if str(token) == str(market.STAKE_TOKEN()):
        for provider in providers:
            stake = market.stake_of(provider)
            total += stake.free + stake.locked + stake.unbonding
    if str(token) == str(market.PAYMENT_TOKEN()):
        for job_id in range(1, market.job_count() + 1):
            job = market.get_job(job_id)
            if job.state in (OPEN, RUNNING):
                total += job.escrow
    for account in set(map(str, accounts)) | {str(market.treasury())}:
        total += market.claimable(token, account)
    return total


def assert_conserved(market, tokens, providers, accounts) -> None:
    """Each token's balance in the market equals the sum of all internal accounts."""
    for token in {str(t): t for t in tokens}.values():
        held = token.balanceOf(market)
        owed = internal_total(market, token, providers, accounts)
        assert held == owed, f"{token.symbol()}: market holds {held}, owes {owed}"
