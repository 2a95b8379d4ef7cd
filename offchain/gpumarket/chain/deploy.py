"""Deploy a GpuMarket from validated parameters, check it, and record the deployment.

Shared by `ape run deploy` (scripts/deploy.py), the walkthrough and the tests. Runs
inside an ape network context: the caller connects (a ConnectedProviderCommand does).
It deploys the contracts the package ships (gpumarket.chain.artifacts), the same bytecode
`gpumarket market deploy` deploys, unless the caller hands it an ape project (the tests do).
Order: every check that can fail without the chain (the YAML) or with read-only calls
(the network's kind, token code) runs before the first transaction.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gpumarket.chain.artifacts import load_artifacts
from gpumarket.chain.params import (
    DEPLOYER,
    MOCK,
    PARAMETER_BOUNDS,
    DeployParams,
    ParamsError,
    check_for_network,
)

__all__ = [
    "MOCK_TOKEN_DECIMALS",
    "Deployment",
    "DeploymentError",
    "deploy_market",
    "deployment_path",
    "read_back",
    "shipped_contracts",
    "write_deployment",
]

log = logging.getLogger(__name__)

MOCK_TOKEN_DECIMALS = 18
# name, symbol of the MockTokens deployed for "mock" (contracts/mocks/MockToken.vy).
_MOCK_TOKENS = {"stake_token": ("Mock Stake", "mSTK"), "payment_token": ("Mock Payment", "mPAY")}


class DeploymentError(RuntimeError):
    """The chain refused the deployment, or the deployed contract differs from the params."""


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


def _has_code(provider: Any, address: str) -> bool:
    return len(provider.get_code(address)) > 0


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

    `deployer` is an ape account; `deploy_mock_tokens` replaces both tokens with fresh
    MockTokens (local networks only); `project` supplies the contracts (default: the shipped
    ones, `shipped_contracts()`). Returns the Deployment record and the ape contract.
    Raises ParamsError before any transaction when the params do not fit this network,
    DeploymentError when the deployed contract does not read back as the params say.
    """
    from ape import chain, networks

    if project is None:
        project = shipped_contracts()

    provider = networks.provider
    network = provider.network
    check_for_network(params, dev_network=network.is_dev, deploy_mock_tokens=deploy_mock_tokens, network=network.name)
    token_refs = {
        "stake_token": MOCK if deploy_mock_tokens else params.stake_token,
        "payment_token": MOCK if deploy_mock_tokens else params.payment_token,
    }
    missing_code = [
        f"{field}: no contract code at {address} on {network.ecosystem.name}:{network.name}"
        for field, address in token_refs.items()
        if address != MOCK and not _has_code(provider, address)
    ]
    if missing_code:
        raise ParamsError("\n".join(missing_code))

    tokens: dict[str, str] = {}
    for field, ref in token_refs.items():
        if ref == MOCK:
            name, symbol = _MOCK_TOKENS[field]
            token = project.MockToken.deploy(name, symbol, MOCK_TOKEN_DECIMALS, sender=deployer)
            report(f"{field}: deployed MockToken {symbol} at {token.address}")
            tokens[field] = token.address
        else:
            tokens[field] = ref
    treasury = deployer.address if params.treasury == DEPLOYER else params.treasury

    market = project.GpuMarket.deploy(
        tokens["stake_token"],
        tokens["payment_token"],
        treasury,
        params.committee.members,
        params.committee.threshold,
        sender=deployer,
    )
    deploy_receipt = chain.get_receipt(market.txn_hash)
    report(f"GpuMarket deployed at {market.address} (block {deploy_receipt.block_number})")

    for gpu_class in params.gpu_classes:
        market.set_gpu_class(gpu_class.id, gpu_class.floor_per_gpu_gops, sender=deployer)
        report(f"gpu class {gpu_class.id} {gpu_class.name}: floor {gpu_class.floor_per_gpu_gops:,} GOPS per GPU")
    for name, value in params.overrides().items():
        current = getattr(market, name)()
        if current != value:
            getattr(market, f"set_{name}")(value, sender=deployer)
            report(f"{name}: {current:,} -> {value:,}")
    if params.owner is not None and params.owner != deployer.address:
        market.transfer_ownership(params.owner, sender=deployer)
        report(f"ownership offered to {params.owner} (it must call accept_ownership)")

    # The record is read back from the contract, so the file says what the chain holds.
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
        chain_id=chain.chain_id,
        block=deploy_receipt.block_number,
        deployer=deployer.address,
        market=market.address,
        stake_token=tokens["stake_token"],
        payment_token=tokens["payment_token"],
        mock_tokens=MOCK in token_refs.values(),
        params=resolved,
        params_file=None if params_file is None else str(params_file),
    )
    mismatches = _mismatches(market, params, tokens=tokens, treasury=treasury, deployer=deployer.address)
    if mismatches:
        raise DeploymentError("the deployed market differs from the params:\n" + "\n".join(mismatches))
    return deployment, market


def read_back(market: Any) -> dict[str, Any]:
    """What the contract holds for everything a deployment sets (for checks and tests)."""
    return {
        "stake_token": str(market.STAKE_TOKEN()),
        "payment_token": str(market.PAYMENT_TOKEN()),
        "treasury": str(market.treasury()),
        "owner": str(market.owner()),
        "pending_owner": str(market.pending_owner()),
        "committee": {"members": [str(m) for m in market.members()], "threshold": market.threshold()},
        "epoch": market.epoch(),
        "parameters": {name: getattr(market, name)() for name in PARAMETER_BOUNDS},
    }


def _mismatches(
    market: Any, params: DeployParams, *, tokens: dict[str, str], treasury: str, deployer: str
) -> list[str]:
    """Every field whose on-chain value differs from what the params asked for."""
    on_chain = read_back(market)
    expected: dict[str, Any] = {
        **tokens,
        "treasury": treasury,
        "committee": params.committee.model_dump(),
        "epoch": 1,
        "owner": deployer,
    }
    if params.owner is not None and params.owner != deployer:
        expected["pending_owner"] = params.owner
    problems = [
        f"{key}: expected {value!r}, contract has {on_chain[key]!r}"
        for key, value in expected.items()
        if on_chain[key] != value
    ]
    for name, value in params.overrides().items():
        if on_chain["parameters"][name] != value:
            problems.append(f"parameters.{name}: expected {value}, contract has {on_chain['parameters'][name]}")
    for gpu_class in params.gpu_classes:
        floor = market.class_floor(gpu_class.id)
        if floor != gpu_class.floor_per_gpu_gops:
            problems.append(
                f"gpu class {gpu_class.id}: expected floor {gpu_class.floor_per_gpu_gops}, contract has {floor}"
            )
    return problems


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
