"""The bridge from an ape script to the web3 side: a Web3, a Signer and a Market.

    market = market_for_script(account, deployment_file)   # inside a ConnectedProviderCommand
    market.stake(10**21)                                    # signed by the ape account

The ape scripts (scripts/provider.py, job.py, committee.py, params.py) run inside ape's
network context, but the role actions (gpumarket.actions) work on a
gpumarket.chain.market.Market over web3, so one implementation serves the scripts and
the `gpumarket` CLI. This module supplies what a Market needs from ape:

- `connected_web3()`: the Web3 of ape's connected provider. Every JSON-RPC provider has
  one (ethereum:local:test (eth-tester), ethereum:local:foundry (anvil), ethereum:local:node
  and any node URL); titanoboa (ethereum:local:boa, this project's default local provider)
  executes in process and has none, so it is refused with what to use instead.
- `ApeSigner`: an ape account as a gpumarket.chain.transactions.Signer. The Transactor
  builds the transaction dict (nonce, gas, fees, chain id); the ape account signs it the
  way it signs anything (a keyfile account asks its passphrase, as ape always does), and
  the raw signed bytes go to the node. No key is ever read here.
- `load_deployment(path, network)`: the record `ape run deploy` wrote
  (deployments/<network>.json unless the caller names a file).
- `market_for_script(account, path, network_name)`: all three, and the wrong-network
  check: the deployment's chain id against the connected node's (ChainMismatch becomes
  BridgeError), then the market's code (a restarted local node has none).

Every failure is a BridgeError whose message says what to do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from web3 import Web3

from gpumarket.chain.errors import ChainMismatch
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment

__all__ = [
    "DEPLOYMENTS_DIR",
    "ApeSigner",
    "BridgeError",
    "SignedRaw",
    "connected_web3",
    "default_deployment_path",
    "load_deployment",
    "market_for_script",
]

DEPLOYMENTS_DIR = Path("deployments")


class BridgeError(RuntimeError):
    """An ape script cannot reach the market: no web3, no deployment, another chain."""


@dataclass(frozen=True)
class SignedRaw:
    """What the Transactor sends: the signed transaction's raw bytes (as eth_account's
    SignedTransaction.raw_transaction)."""

    raw_transaction: bytes


class ApeSigner:
    """An ape account (TEST::i, a keyfile alias, ...) as a transactions.Signer."""

    def __init__(self, account: Any) -> None:
        self.account = account

    @property
    def address(self) -> str:
        return Web3.to_checksum_address(str(self.account.address))

    def __repr__(self) -> str:
        return f"ApeSigner({self.address})"

    def sign_transaction(self, transaction: dict[str, Any]) -> SignedRaw:
        from ape import networks

        fields = {key: value for key, value in transaction.items() if key != "from"}
        # ape names the fields as the JSON-RPC does (chainId, maxFeePerGas, data ...).
        txn = networks.provider.network.ecosystem.create_transaction(sender=self.address, **fields)
        signed = self.account.sign_transaction(txn)
        if signed is None or not getattr(signed, "signature", None):
            raise BridgeError(f"account {self.address} did not sign the transaction (declined?)")
        return SignedRaw(raw_transaction=bytes(signed.serialize_transaction()))


def connected_web3() -> Web3:
    """The Web3 of ape's connected provider; BridgeError when it has none."""
    from ape import networks

    provider = networks.provider
    w3 = getattr(provider, "_web3", None) or getattr(provider, "web3", None)
    if not isinstance(w3, Web3):
        choice = getattr(provider, "network_choice", provider.name)
        raise BridgeError(
            f"the provider of {choice} ({provider.name}) offers no JSON-RPC connection to send through; "
            "use a node: --network ethereum:local:foundry (anvil), ethereum:local:test, or a node URL"
        )
    return w3


def default_deployment_path(network_name: str) -> Path:
    """Where `ape run deploy` writes the record of a deployment on `network_name`."""
    return DEPLOYMENTS_DIR / f"{network_name}.json"


def load_deployment(path: Path | None, network_name: str) -> MarketDeployment:
    """The deployment record at `path` (default: deployments/<network_name>.json)."""
    path = path or default_deployment_path(network_name)
    try:
        return MarketDeployment.read(path)
    except FileNotFoundError:
        raise BridgeError(
            f"no deployment record at {path}: deploy first (ape run deploy --network ...) "
            "or name the record with --deployment FILE"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as error:
        raise BridgeError(
            f"{path} is not a deployment record ({error}); name the right file with --deployment FILE"
        ) from None


def market_for_script(account: Any, deployment_path: Path | None, network_name: str) -> Market:
    """A Market on ape's connected provider, signed by `account` (None: read only).

    BridgeError when the provider has no web3, the record is missing, or the record is of
    another chain than the node serves (the wrong --network).
    """
    w3 = connected_web3()
    deployment = load_deployment(deployment_path, network_name)
    signer = ApeSigner(account) if account is not None else None
    where = deployment_path or default_deployment_path(network_name)
    try:
        market = deployment.market_at(w3, signer=signer)
    except ChainMismatch:
        raise BridgeError(
            f"wrong network: the deployment {where} is on chain {deployment.chain_id}, "
            f"but --network {_network_choice()} serves chain {int(w3.eth.chain_id)}; "
            "pick the network it was deployed on, or the record of this network with --deployment FILE"
        ) from None
    if not w3.eth.get_code(market.address):
        # Same chain id, no market: a local node restarted since the deployment.
        raise BridgeError(
            f"no contract at {market.address} on {_network_choice()} (the market of {where}); "
            "the node may have been restarted since: deploy again (ape run deploy)"
        )
    return market


def _network_choice() -> str:
    from ape import networks

    network = networks.provider.network
    return f"{network.ecosystem.name}:{network.name}:{networks.provider.name}"
