"""`ape run deploy`'s way into the one deploy, and the record it writes.

`deploy_market` is a thin adapter for ape callers (scripts/deploy.py, the walkthrough, the
gas benchmark, tests): inside an ape network context (a ConnectedProviderCommand connects),
it takes the web3 connection of ape's provider and the ape account as a Signer
(gpumarket.chain.ape_bridge), and runs gpumarket.chain.market_deploy.deploy_market_web3,
the deploy `gpumarket market deploy` runs: the same checks before any transaction, the
same transactions, the same read-back. From the result it builds the `Deployment` record
(`deployments/<network>.json`: ape's ecosystem, network and provider names, the params as
the contract holds them) and an ape contract for the caller's own calls.

It deploys the contracts the package ships (gpumarket.chain.artifacts) unless the caller
hands it an ape project (the tests do), whose freshly compiled contracts are deployed instead.
Titanoboa (ethereum:local:boa) runs in process with no JSON-RPC connection to send through:
BridgeError says which network to use instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from web3 import Web3

from gpumarket.chain.ape_bridge import ApeSigner, connected_web3
from gpumarket.chain.artifacts import CONTRACTS, Artifact, Artifacts, load_artifacts
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import (
    MOCK_TOKEN_DECIMALS,
    DeploymentError,
    MarketDeployment,
    deploy_market_web3,
    read_back,
)
from gpumarket.chain.params import DeployParams

__all__ = [
    "MOCK_TOKEN_DECIMALS",
    "Deployment",
    "DeploymentError",
    "deploy_market",
    "deployment_path",
    "shipped_contracts",
    "write_deployment",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deployment:
    """One deployed market: what `deployments/<network>.json` records."""

    ecosystem: str
    network: str
    provider: str
    chain_id: int
    block: int
    deployer: str
    market: str
    stake_token: str
    payment_token: str
    mock_tokens: bool
    # The params with symbols resolved ("mock", "deployer") and every parameter's
    # effective value, read back from the contract.
    params: dict[str, Any]
    params_file: str | None
    # The market's owner when the params asked for a timelock; each contract's address and code
    # hash; every transaction of the deploy (see MarketDeployment).
    timelock: str | None = None
    contracts: dict[str, dict[str, str]] = field(default_factory=dict)
    transactions: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "ecosystem": self.ecosystem,
            "network": self.network,
            "provider": self.provider,
            "chain_id": self.chain_id,
            "block": self.block,
            "deployer": self.deployer,
            "market": self.market,
            "stake_token": self.stake_token,
            "payment_token": self.payment_token,
            "mock_tokens": self.mock_tokens,
            "params_file": self.params_file,
            "params": self.params,
            "timelock": self.timelock,
            "contracts": self.contracts,
            "transactions": self.transactions,
        }


def _default_report(message: str) -> None:
    log.info(message)


def shipped_contracts() -> SimpleNamespace:
    """The shipped contracts as ape contract containers: `.GpuMarket` and `.MockToken`, as on a project."""
    from ape.contracts import ContractContainer
    from ethpm_types import ContractType

    return SimpleNamespace(
        **{
            name: ContractContainer(
                ContractType.model_validate(
                    {
                        "contractName": name,
                        "abi": artifact.abi,
                        "deploymentBytecode": {"bytecode": artifact.bytecode},
                        "runtimeBytecode": {"bytecode": artifact.runtime_bytecode},
                    }
                )
            )
            for name, artifact in load_artifacts().contracts.items()
        }
    )


def _project_artifacts(project: Any) -> Artifacts:
    """An ape project's compiled contracts as Artifacts (what deploy_market_web3 deploys)."""
    contracts = {}
    for name in CONTRACTS:
        contract_type = getattr(project, name).contract_type
        contracts[name] = Artifact(
            name=name,
            abi=[entry.model_dump(mode="json", by_alias=True) for entry in contract_type.abi],
            bytecode=contract_type.deployment_bytecode.bytecode,
            runtime_bytecode=contract_type.runtime_bytecode.bytecode,
        )
    # Compiled by ape from its project's sources; nothing reads the hash on this path.
    return Artifacts(source_hash="", contracts=contracts)


def deploy_market(
    params: DeployParams,
    deployer: Any,
    *,
    deploy_mock_tokens: bool = False,
    params_file: str | Path | None = None,
    project: Any = None,
    report: Callable[[str], None] = _default_report,
) -> tuple[Deployment, Any]:
    """Deploy tokens (if mock), the market, its classes and overrides; check it; return it.

    Runs deploy_market_web3 on ape's connection (see the module docstring). `deployer` is
    an ape account (a test account or a keyfile alias, which asks its passphrase as ape
    always does); `deploy_mock_tokens` replaces both tokens with fresh MockTokens (local
    networks only); `project` supplies the contracts (default: the shipped ones); `report`
    hears each step. Returns the Deployment record and the market as an ape contract.
    Raises ParamsError before any transaction when the params do not fit this network,
    ContractRevert when a transaction reverts, DeploymentError when the deployed contract
    does not read back as the params say, BridgeError on a provider without JSON-RPC.
    """
    from ape import networks

    provider = networks.provider
    network = provider.network
    w3 = connected_web3()
    artifacts = None if project is None else _project_artifacts(project)
    deployed = deploy_market_web3(
        w3,
        ApeSigner(deployer),
        params,
        deploy_mock_tokens=deploy_mock_tokens,
        artifacts=artifacts,
        network=f"{network.ecosystem.name}:{network.name}",
        local_chain=network.is_dev,
        report=report,
    )

    # The record is read back from the contract, so the file says what the chain holds.
    market = Market(w3, deployed.market, artifacts=artifacts)
    on_chain = read_back(market)
    resolved = params.model_dump(mode="json")
    resolved.update(
        stake_token=on_chain["stake_token"],
        payment_token=on_chain["payment_token"],
        treasury=on_chain["treasury"],
        committee=on_chain["committee"],
        parameters=on_chain["parameters"],
        gpu_classes=[
            {"id": c.id, "name": c.name, "floor_per_gpu_gops": market.class_floor(c.id)} for c in params.gpu_classes
        ],
    )
    deployment = Deployment(
        ecosystem=network.ecosystem.name,
        network=network.name,
        provider=provider.name,
        chain_id=deployed.chain_id,
        block=deployed.block,
        deployer=deployed.deployer,
        market=deployed.market,
        stake_token=deployed.stake_token,
        payment_token=deployed.payment_token,
        mock_tokens=deployed.mock_tokens,
        params=resolved,
        params_file=None if params_file is None else str(params_file),
        timelock=deployed.timelock,
        contracts=deployed.contracts,
        transactions=deployed.transactions,
    )
    contracts = shipped_contracts() if project is None else project
    contract = contracts.GpuMarket.at(
        deployed.market, txn_hash=_creation_tx(w3, deployed), fetch_from_explorer=False, detect_proxy=False
    )
    return deployment, contract


def _creation_tx(w3: Web3, deployed: MarketDeployment) -> str | None:
    """The hash of the transaction that created the market, found in its block (callers read
    its receipt through the ape contract's txn_hash; the deployment record holds no hash)."""
    block: Any = w3.eth.get_block(deployed.block, full_transactions=True)
    for transaction in block["transactions"]:
        if transaction.get("to") or Web3.to_checksum_address(transaction["from"]) != deployed.deployer:
            continue
        receipt: Any = w3.eth.get_transaction_receipt(transaction["hash"])
        if receipt.get("contractAddress") == deployed.market:
            return Web3.to_hex(transaction["hash"])
    return None


def deployment_path(ecosystem: str, network: str, out_dir: str | Path = "deployments") -> Path:
    """`<out_dir>/<network>.json` on ethereum, `<out_dir>/<ecosystem>-<network>.json` elsewhere
    (so arbitrum:sepolia and ethereum:sepolia do not overwrite each other)."""
    name = network if ecosystem == "ethereum" else f"{ecosystem}-{network}"
    return Path(out_dir) / f"{name}.json"


def write_deployment(deployment: Deployment, out_dir: str | Path = "deployments") -> Path:
    """Write the deployment record as JSON; returns the file's path."""
    path = deployment_path(deployment.ecosystem, deployment.network, out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(deployment.to_json(), indent=2) + "\n")
    return path
