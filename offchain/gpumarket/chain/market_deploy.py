"""Deploy a GpuMarket over web3 from validated params: the one deploy behind every entry point.

    params = load_params("deploy/params/default.yaml")
    deployment = deploy_market_web3(w3, deployer_key, params)     # -> MarketDeployment
    market = deployment.market_at(w3, signer=key)                  # -> Market
    deployment.write(path); MarketDeployment.read(path)            # shared with other processes

`gpumarket market deploy`, the demo, devnet and soak call it directly; `ape run deploy`,
the walkthrough and the gas benchmark through gpumarket.chain.deploy, which hands it ape's
connection and account. The order: check the params for this chain (mock tokens and test
oracles only on a local chain) and that every named token has code, all before the first
transaction; deploy MockTokens where the params say "mock" (or everywhere with
deploy_mock_tokens), the blueprints of the market's companions (BatchSettler, OracleBonds),
the market (which creates both from them), its GPU classes, the overrides, offer ownership
if asked;
then read everything back (`read_back`) and raise DeploymentError on any difference.
`report` hears each step ("GpuMarket deployed at ..."); by default they are logged. The
params model (gpumarket.chain.params) holds every bound; nothing is re-checked here.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from web3 import Web3

from gpumarket.chain.artifacts import Artifact, Artifacts, load_artifacts
from gpumarket.chain.connection import is_local_chain
from gpumarket.chain.errors import ChainMismatch
from gpumarket.chain.market import Market, TxResult
from gpumarket.chain.models import ZERO_ADDRESS
from gpumarket.chain.params import DEPLOYER, MOCK, DeployParams, ParamsError, check_for_network
from gpumarket.chain.timelock import Timelock, deploy_arguments
from gpumarket.chain.transactions import Signer, Transactor, TxSettings

__all__ = [
    "BLUEPRINT_PREAMBLE",
    "MOCK_TOKEN_DECIMALS",
    "DeploymentError",
    "MarketDeployment",
    "blueprint_initcode",
    "deploy_market_web3",
    "deploy_mock_token",
    "read_back",
]

log = logging.getLogger(__name__)

MOCK_TOKEN_DECIMALS = 18
# name, symbol of the MockTokens deployed for "mock" (contracts/mocks/MockToken.vy).
_MOCK_TOKENS = {"stake_token": ("Mock Stake", "mSTK"), "payment_token": ("Mock Payment", "mPAY")}
# The contracts the market creates from blueprints, in its constructor's argument order.
_COMPANIONS = ("BatchSettler", "OracleBonds")
# ERC-5202: the blueprint marker 0xFE71 and version byte 0 (no data section).
BLUEPRINT_PREAMBLE = bytes.fromhex("fe7100")
CONFIRMATION_POLL_S = 2.0


class DeploymentError(RuntimeError):
    """The deployed contract differs from the params."""


@dataclass(frozen=True)
class MarketDeployment:
    """Where a market lives: what a service needs to connect to it."""

    chain_id: int
    market: str
    stake_token: str
    payment_token: str
    deployer: str
    block: int
    mock_tokens: bool
    # The market's owner when the params asked for a timelock (public networks).
    timelock: str | None = None
    # Contract name -> {"address", "code_hash"}: keccak-256 of the runtime code at the address
    # right after the deploy (what `gpumarket market verify-deployment` compares).
    contracts: dict[str, dict[str, str]] = field(default_factory=dict)
    # Every transaction of the deploy, in order: {"label", "hash", "block"}.
    transactions: list[dict[str, Any]] = field(default_factory=list)
    # The parameters file it was deployed from (what verify-deployment compares with), when known.
    params_file: str | None = None

    def market_at(
        self,
        w3: Web3,
        *,
        signer: Signer | None = None,
        artifacts: Artifacts | None = None,
        tx_settings: TxSettings | None = None,
    ) -> Market:
        """A Market for this deployment on `w3`; ChainMismatch when `w3` serves another chain."""
        chain_id = int(w3.eth.chain_id)
        if chain_id != self.chain_id:
            raise ChainMismatch(f"deployment is on chain {self.chain_id}, the node serves chain {chain_id}")
        return Market(w3, self.market, signer=signer, artifacts=artifacts, tx_settings=tx_settings)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MarketDeployment:
        """Also reads the record `ape run deploy` writes (deployments/<network>.json)."""
        try:
            return cls(
                chain_id=int(data["chain_id"]),
                market=Web3.to_checksum_address(data["market"]),
                stake_token=Web3.to_checksum_address(data["stake_token"]),
                payment_token=Web3.to_checksum_address(data["payment_token"]),
                deployer=Web3.to_checksum_address(data["deployer"]),
                block=int(data["block"]),
                mock_tokens=bool(data.get("mock_tokens", False)),
                timelock=None if data.get("timelock") is None else Web3.to_checksum_address(data["timelock"]),
                contracts={str(name): dict(entry) for name, entry in (data.get("contracts") or {}).items()},
                transactions=[dict(entry) for entry in data.get("transactions") or []],
                params_file=data.get("params_file"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a deployment record: {error}") from None

    def write(self, path: str | Path) -> Path:
        """Write as JSON, atomically (readers in other processes never see half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".tmp-", delete=False) as out:
            json.dump(self.to_json(), out, indent=2)
            out.write("\n")
        os.replace(out.name, path)
        return path

    @classmethod
    def read(cls, path: str | Path) -> MarketDeployment:
        return cls.from_json(json.loads(Path(path).read_text()))


def _log(message: str) -> None:
    log.info("%s", message)


class _Journal:
    """The deploy's transactions, in order, for the deployment record."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def add(self, label: str, tx_hash: str, block: int) -> None:
        self.entries.append({"label": label, "hash": tx_hash, "block": block})


def _deploy(
    sender: Transactor, bytecode: str, abi: list[dict[str, Any]], args: list[Any], label: str, journal: _Journal
) -> tuple[str, int]:
    data = sender.w3.eth.contract(abi=abi, bytecode=bytecode).constructor(*args).data_in_transaction
    return _create(sender, data, label, journal)


def _create(sender: Transactor, data: str, label: str, journal: _Journal) -> tuple[str, int]:
    """Send a contract-creating transaction; (the new contract's address, its block)."""
    receipt = sender.send(to=None, data=data, label=label)
    journal.add(label, "0x" + bytes(receipt["transactionHash"]).hex(), int(receipt["blockNumber"]))
    return Web3.to_checksum_address(receipt["contractAddress"]), int(receipt["blockNumber"])


def code_hash(w3: Web3, address: str) -> str:
    """keccak-256 of the runtime code at ``address`` (0x-prefixed hex)."""
    return "0x" + Web3.keccak(bytes(w3.eth.get_code(Web3.to_checksum_address(address)))).hex()


def blueprint_initcode(initcode: str | bytes) -> bytes:
    """A transaction's data that stores `initcode` as an ERC-5202 blueprint (version 0, no data
    section): a 10-byte deployer that returns the preamble 0xFE7100 and the initcode. Nothing can
    call a blueprint (0xFE is INVALID); `create_from_blueprint` runs the initcode after it."""
    code = bytes.fromhex(initcode.removeprefix("0x")) if isinstance(initcode, str) else initcode
    blueprint = BLUEPRINT_PREAMBLE + code
    if len(blueprint) > 0xFFFF:
        raise ValueError(f"initcode of {len(code):,} bytes is too large for a blueprint")
    # PUSH2 len, RETURNDATASIZE, DUP2, PUSH1 10, RETURNDATASIZE, CODECOPY, RETURN
    return b"\x61" + len(blueprint).to_bytes(2, "big") + bytes.fromhex("3d81600a3d39f3") + blueprint


def _deploy_blueprint(sender: Transactor, artifact: Artifact, label: str, journal: _Journal) -> str:
    address, _ = _create(sender, "0x" + blueprint_initcode(artifact.bytecode).hex(), label, journal)
    return address


def _deploy_mock_token(
    sender: Transactor, artifacts: Artifacts, name: str, symbol: str, decimals: int, journal: _Journal
) -> str:
    artifact = artifacts["MockToken"]
    address, _ = _deploy(
        sender, artifact.bytecode, artifact.abi, [name, symbol, decimals], f"deploy MockToken {symbol}", journal
    )
    return address


def deploy_mock_token(
    w3: Web3,
    deployer: Signer,
    name: str,
    symbol: str,
    *,
    decimals: int = MOCK_TOKEN_DECIMALS,
    artifacts: Artifacts | None = None,
) -> str:
    """Deploy one open-mint MockToken (local chains only); returns its address."""
    if not is_local_chain(w3):
        raise ParamsError("a MockToken (open mint) is only allowed on a local chain")
    return _deploy_mock_token(
        Transactor.for_signer(w3, deployer), artifacts or load_artifacts(), name, symbol, decimals, _Journal()
    )


def deploy_market_web3(
    w3: Web3,
    deployer: Signer,
    params: DeployParams,
    *,
    deploy_mock_tokens: bool = False,
    artifacts: Artifacts | None = None,
    network: str | None = None,
    local_chain: bool | None = None,
    report: Callable[[str], None] = _log,
) -> MarketDeployment:
    """Deploy and configure a market as `params` say; see the module docstring.

    `artifacts`: the contracts to deploy (default: the shipped ones). `network` names the
    chain in refusals (default "chain <id>"); `local_chain` says whether mock tokens and
    test oracles are allowed (default: is_local_chain(w3); ape passes its network's is_dev,
    which also counts forks). Raises ParamsError (before any transaction) when the params
    do not fit this chain, ContractRevert when a transaction reverts, DeploymentError when
    the market does not read back as the params say.
    """
    artifacts = artifacts or load_artifacts()
    chain_id = int(w3.eth.chain_id)
    where = network or f"chain {chain_id}"
    local = is_local_chain(w3) if local_chain is None else local_chain
    check_for_network(params, dev_network=local, deploy_mock_tokens=deploy_mock_tokens, network=where)
    refs = {field: MOCK if deploy_mock_tokens else getattr(params, field) for field in _MOCK_TOKENS}
    missing_code = [
        f"{field}: no contract code at {ref} on {where}"
        for field, ref in refs.items()
        if ref != MOCK and not w3.eth.get_code(Web3.to_checksum_address(ref))
    ]
    if missing_code:
        raise ParamsError("\n".join(missing_code))

    sender = Transactor.for_signer(w3, deployer)
    journal = _Journal()
    tokens: dict[str, str] = {}
    for name_of_field, ref in refs.items():
        if ref == MOCK:
            name, symbol = _MOCK_TOKENS[name_of_field]
            tokens[name_of_field] = _deploy_mock_token(sender, artifacts, name, symbol, MOCK_TOKEN_DECIMALS, journal)
            report(f"{name_of_field}: deployed MockToken {symbol} at {tokens[name_of_field]}")
        else:
            tokens[name_of_field] = ref
    treasury = sender.address if params.treasury == DEPLOYER else params.treasury

    # The market creates its companions (BatchSettler, OracleBonds) in its constructor, from
    # blueprints: each is bound to this market from its first block.
    blueprints = [
        _deploy_blueprint(sender, artifacts[name], f"deploy {name} blueprint", journal) for name in _COMPANIONS
    ]
    bonds = params.oracle_bonds
    artifact = artifacts["GpuMarket"]
    address, block = _deploy(
        sender,
        artifact.bytecode,
        artifact.abi,
        [
            tokens["stake_token"],
            tokens["payment_token"],
            treasury,
            params.committee.members,
            params.committee.threshold,
            *blueprints,
            bonds.bond_amount,
            bonds.withdrawal_delay,
        ],
        "deploy GpuMarket",
        journal,
    )
    report(f"GpuMarket deployed at {address} (block {block})")
    market = Market(w3, address, signer=deployer, artifacts=artifacts)
    report(
        f"BatchSettler at {market.batch_settler()}; OracleBonds at {market.oracle_bonds_address()}"
        f" (bond {bonds.bond_amount:,})"
    )
    for gpu_class in params.gpu_classes:
        set_class = market.set_gpu_class(gpu_class.id, gpu_class.floor_per_gpu_gops)
        _sent(journal, f"set_gpu_class {gpu_class.id}", set_class)
        report(f"gpu class {gpu_class.id} {gpu_class.name}: floor {gpu_class.floor_per_gpu_gops:,} GOPS per GPU")
    current = market.parameters()
    for name, value in params.overrides().items():
        if current[name] != value:
            _sent(journal, f"set_{name}", market.set_parameter(name, value))
            report(f"{name}: {current[name]:,} -> {value:,}")
    if params.owner is not None and params.owner != sender.address:
        _sent(journal, "transfer_ownership", market.transfer_ownership(params.owner))
        report(f"ownership offered to {params.owner} (it must call accept_ownership)")
    timelock = None
    if params.timelock is not None:
        timelock = _hand_over_to_timelock(market, params, artifacts["Timelock"], sender, journal, report)

    _await_confirmations(w3, journal, params.confirmations, report)

    owner = sender.address if timelock is None else timelock
    problems = _mismatches(market, params, tokens=tokens, treasury=treasury, deployer=sender.address, owner=owner)
    if problems:
        raise DeploymentError("the deployed market differs from the params:\n" + "\n".join(problems))
    contracts = {
        "GpuMarket": address,
        "BatchSettler": market.batch_settler(),
        "OracleBonds": market.oracle_bonds_address(),
    }
    if timelock is not None:
        contracts["Timelock"] = timelock
    return MarketDeployment(
        chain_id=chain_id,
        market=address,
        stake_token=tokens["stake_token"],
        payment_token=tokens["payment_token"],
        deployer=sender.address,
        block=block,
        mock_tokens=MOCK in refs.values(),
        timelock=timelock,
        contracts={
            name: {"address": where, "code_hash": code_hash(w3, where)}
            for name, where in contracts.items()
            if where != ZERO_ADDRESS
        },
        transactions=journal.entries,
    )


def _await_confirmations(w3: Web3, journal: _Journal, confirmations: int, report: Callable[[str], None]) -> None:
    """Wait until the last transaction is ``confirmations`` blocks deep, then check that every
    transaction is still in the block it was mined in (a reorg would have moved or dropped it)."""
    if confirmations == 0 or not journal.entries:
        return
    target = journal.entries[-1]["block"] + confirmations
    report(f"waiting for {confirmations} confirmation(s) (block {target})")
    while int(w3.eth.block_number) < target:
        time.sleep(CONFIRMATION_POLL_S)
    moved = [
        entry["label"]
        for entry in journal.entries
        if int(w3.eth.get_transaction_receipt(entry["hash"])["blockNumber"]) != entry["block"]
    ]
    if moved:
        raise DeploymentError(f"a reorg moved these deploy transactions: {', '.join(moved)}; deploy again")


def _sent(journal: _Journal, label: str, result: TxResult) -> None:
    journal.add(label, result.tx_hash, result.block_number)


def _hand_over_to_timelock(
    market: Market,
    params: DeployParams,
    artifact: Artifact,
    sender: Transactor,
    journal: _Journal,
    report: Callable[[str], None],
) -> str:
    """Deploy the Timelock and make it the market's owner (offer, then accept): from here on, every
    change to the market waits the timelock's delay."""
    settings = params.timelock
    assert settings is not None
    arguments = deploy_arguments(
        market.address, settings.min_delay, settings.proposers, settings.executors, settings.guardians
    )
    address, block = _deploy(sender, artifact.bytecode, artifact.abi, arguments, "deploy Timelock", journal)
    report(f"Timelock deployed at {address} (block {block}; minimum delay {settings.min_delay:,} s)")
    _sent(journal, "transfer_ownership", market.transfer_ownership(address))
    timelock = Timelock(market.w3, address, signer=market.signer, artifacts=market.artifacts)
    _sent(journal, "accept_market_ownership", timelock.accept_market_ownership())
    report(f"the market's owner is the Timelock {address}")
    return address


def read_back(market: Market) -> dict[str, Any]:
    """What the contract holds for everything a deployment sets (for the checks, the ape record, tests)."""
    return {
        "stake_token": market.stake_token.address,
        "payment_token": market.payment_token.address,
        "treasury": market.treasury(),
        "owner": market.owner(),
        "pending_owner": market.pending_owner(),
        "committee": {"members": market.members(), "threshold": market.threshold()},
        "epoch": market.epoch(),
        "parameters": market.parameters(),
        "oracle_bonds": _read_bonds(market),
    }


def _read_bonds(market: Market) -> dict[str, int] | None:
    """The OracleBonds companion's governed values (None while no companions are wired in)."""
    if market.batch_settler() == ZERO_ADDRESS:
        return None
    bonds = market.bonds
    return {"bond_amount": bonds.bond_amount(), "withdrawal_delay": bonds.withdrawal_delay()}


def _mismatches(
    market: Market, params: DeployParams, *, tokens: dict[str, str], treasury: str, deployer: str, owner: str
) -> list[str]:
    """Every field whose on-chain value differs from what the params asked for."""
    on_chain = read_back(market)
    expected: dict[str, Any] = {
        **tokens,
        "treasury": treasury,
        "committee": params.committee.model_dump(),
        "epoch": 1,
        "owner": owner,
        "oracle_bonds": params.oracle_bonds.model_dump(),
    }
    if params.owner is not None and params.owner != deployer:
        expected["pending_owner"] = params.owner
    problems = [
        f"{key}: expected {value!r}, contract has {on_chain[key]!r}"
        for key, value in expected.items()
        if on_chain[key] != value
    ]
    problems += [
        f"parameters.{name}: expected {value}, contract has {on_chain['parameters'][name]}"
        for name, value in params.overrides().items()
        if on_chain["parameters"][name] != value
    ]
    for gpu_class in params.gpu_classes:
        floor = market.class_floor(gpu_class.id)
        if floor != gpu_class.floor_per_gpu_gops:
            problems.append(
                f"gpu class {gpu_class.id}: expected floor {gpu_class.floor_per_gpu_gops}, contract has {floor}"
            )
    return problems
