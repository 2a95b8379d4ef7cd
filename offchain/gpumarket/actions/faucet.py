"""Mock tokens for local chains: `gpumarket market mint` gives an account stake or payment
tokens, so a tour of the market on anvil needs nothing but the deployment.

Only on a local chain (gpumarket.chain.connection.is_local_chain), and only for the market's
own tokens: `ape run deploy --deploy-mock-tokens` deploys MockTokens whose `mint` is open to
anyone. A real ERC-20 has no `mint`: the call reverts and the refusal says so.
"""

from __future__ import annotations

from typing import Literal

from gpumarket.actions import render
from gpumarket.actions.common import ActionResult, TxRecord, checksum, require_gas, require_signer, token_info
from gpumarket.actions.errors import ActionError, guard
from gpumarket.chain.connection import is_local_chain
from gpumarket.chain.market import Market

__all__ = ["mint"]


def mint(market: Market, which: Literal["stake", "payment"], to: str, amount: int) -> ActionResult:
    """Mint `amount` of the market's stake or payment token to `to` (local chains, mock tokens)."""
    require_signer(market)
    if amount <= 0:
        raise ActionError(
            "the amount to mint must be positive", "give an amount in base units, or '<n> tokens'", code="bad_amount"
        )
    if not is_local_chain(market.w3):
        raise ActionError(
            f"minting is for local chains only, not chain {market.w3.eth.chain_id}",
            "get tokens the way this network provides them",
            code="not_local_chain",
        )
    recipient = checksum(to, "recipient")
    token = market.stake_token if which == "stake" else market.payment_token
    info = token_info(token)
    require_gas(market)
    try:
        with guard():
            sent = TxRecord.of("mint", token.mint(recipient, amount))
    except ActionError as error:
        if error.code != "reverted":
            raise
        raise ActionError(
            f"{info.symbol} at {info.address} cannot be minted ({error.message})",
            "this deployment's tokens are not mock tokens: deploy with --deploy-mock-tokens",
            code="not_mintable",
        ) from None
    summary = f"minted {render.amount(amount, info.decimals, info.symbol)} to {recipient}"
    return ActionResult("mint", summary, (sent,), {"token": info.address, "to": recipient, "amount": amount})
