"""Where an action runs: the deployment record, and the market on the node it names.

    deployment = load_deployment("deployments/local.json")        # ActionError if unreadable
    market = open_market(w3, deployment, signer=key)              # ActionError on the wrong chain

The chain id check (MarketDeployment.market_at's ChainMismatch) happens before any read,
so a deployment file of another network is refused with a message, not with calls to an
address that holds nothing (or something else) on this chain.
"""

from __future__ import annotations

import json
from pathlib import Path

from web3 import Web3

from gpumarket.actions.errors import ActionError, guard
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment
from gpumarket.chain.transactions import Signer

__all__ = ["load_deployment", "open_market"]


def load_deployment(path: str | Path) -> MarketDeployment:
    """Read a deployment record (as `ape run deploy` or deploy_market_web3 writes it)."""
    try:
        return MarketDeployment.read(path)
    except OSError as error:
        raise ActionError(
            f"cannot read the deployment file {path}: {error.strerror}",
            "give the deployment record written by the deploy step (deployments/<network>.json)",
            code="bad_deployment",
        ) from None
    except ValueError as error:  # json.JSONDecodeError too
        what = "not JSON" if isinstance(error, json.JSONDecodeError) else str(error)
        raise ActionError(
            f"{path} is not a deployment record: {what}",
            "give the deployment record written by the deploy step (deployments/<network>.json)",
            code="bad_deployment",
        ) from None


def open_market(w3: Web3, deployment: MarketDeployment, signer: Signer | None = None) -> Market:
    """The deployment's market on `w3` (ActionError "wrong_network" when `w3` is another chain)."""
    with guard():
        market = deployment.market_at(w3, signer=signer)
    with guard():
        if not w3.eth.get_code(market.address):
            raise ActionError(
                f"no contract at {market.address} on chain {deployment.chain_id}",
                "the node may have been reset since the deployment: deploy again",
                code="no_market",
            )
    return market
