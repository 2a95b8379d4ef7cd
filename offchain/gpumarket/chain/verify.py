"""Check a deployment against fresh compiles and its parameters file: what sits at each address
is what was audited, configured as the file says.

    checks = verify_deployment(w3, MarketDeployment.read(path), load_params(yaml), compile_contracts())
    failed = [check for check in checks if not check.ok]

Each :class:`Check` compares one thing the chain holds with what it should be:

- **code**: the runtime code at each recorded contract (GpuMarket, BatchSettler, OracleBonds,
  Timelock) begins with the fresh compile's runtime code (only its immutables follow, the values
  the checks below read back), and hashes to the code hash the deploy recorded;
- **configuration**: tokens, treasury, committee, GPU class floors, parameter overrides and the
  oracle bonds, as the parameters file says (``mock`` tokens: the record's; ``deployer``: the
  record's deployer);
- **ownership**: with a ``timelock`` section, the market's owner is the recorded Timelock, no
  ownership offer is pending, the Timelock governs this market, its minimum delay and its
  proposers, executors and guardians are exactly the file's, and nobody but the Timelock itself
  administers its roles; with ``owner``, that account owns the market or has been offered it;
  with neither, the deployer owns it.

A governance change executed since the deploy shows as a difference until the parameters file
says the same: the file is the record of what governance decided.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from gpumarket.chain.artifacts import Artifacts
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment, code_hash
from gpumarket.chain.models import ZERO_ADDRESS
from gpumarket.chain.params import DEPLOYER, MOCK, DeployParams
from gpumarket.chain.timelock import (
    CANCELLER_ROLE,
    DEFAULT_ADMIN_ROLE,
    EXECUTOR_ROLE,
    GUARDIAN_ROLE,
    PROPOSER_ROLE,
    Timelock,
)

__all__ = ["Check", "verify_deployment"]


@dataclass(frozen=True)
class Check:
    """One comparison: ``what`` is checked, ``expected`` against ``found`` (both as text)."""

    what: str
    expected: str
    found: str

    @property
    def ok(self) -> bool:
        return self.expected == self.found

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "ok": self.ok, "expected": self.expected, "found": self.found}


def _check(what: str, expected: Any, found: Any) -> Check:
    return Check(what, _text(expected), _text(found))


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_text(item) for item in value) + "]"
    return str(value)


def _addresses(values: Iterable[str]) -> list[str]:
    return sorted(Web3.to_checksum_address(value) for value in values)


def verify_deployment(w3: Web3, deployment: MarketDeployment, params: DeployParams, compiled: Artifacts) -> list[Check]:
    """Every check of the module docstring, in order (code, configuration, ownership)."""
    checks = [_check("chain id", deployment.chain_id, int(w3.eth.chain_id))]
    if not checks[0].ok:
        return checks
    market = Market(w3, deployment.market, artifacts=compiled)
    checks += _code_checks(w3, deployment, market, compiled)
    checks += _configuration_checks(deployment, market, params)
    checks += _ownership_checks(w3, deployment, market, params, compiled)
    return checks


def _recorded_contracts(deployment: MarketDeployment, market: Market) -> dict[str, str]:
    """Name -> address: the record's list, or (a record older than code hashes) what the market names."""
    if deployment.contracts:
        return {name: entry["address"] for name, entry in deployment.contracts.items()}
    found = {"GpuMarket": deployment.market}
    companions = {"BatchSettler": market.batch_settler(), "OracleBonds": market.oracle_bonds_address()}
    found.update({name: address for name, address in companions.items() if address != ZERO_ADDRESS})
    if deployment.timelock is not None:
        found["Timelock"] = deployment.timelock
    return found


def _code_checks(w3: Web3, deployment: MarketDeployment, market: Market, compiled: Artifacts) -> list[Check]:
    checks = []
    for name, address in _recorded_contracts(deployment, market).items():
        code = bytes(w3.eth.get_code(Web3.to_checksum_address(address)))
        runtime = bytes.fromhex(compiled[name].runtime_bytecode.removeprefix("0x"))
        matches = bool(code) and code.startswith(runtime)
        found = "the fresh compile" if matches else f"different code ({len(code):,} bytes)"
        checks.append(_check(f"code of {name} at {address}", "the fresh compile", found))
        recorded = deployment.contracts.get(name, {}).get("code_hash")
        if recorded is not None:
            checks.append(_check(f"code hash of {name}", recorded, code_hash(w3, address)))
    return checks


def _configuration_checks(deployment: MarketDeployment, market: Market, params: DeployParams) -> list[Check]:
    expected_tokens = {
        "stake_token": deployment.stake_token if params.stake_token == MOCK else params.stake_token,
        "payment_token": deployment.payment_token if params.payment_token == MOCK else params.payment_token,
    }
    checks = [
        _check("stake token", expected_tokens["stake_token"], market.stake_token.address),
        _check("payment token", expected_tokens["payment_token"], market.payment_token.address),
        _check("treasury", deployment.deployer if params.treasury == DEPLOYER else params.treasury, market.treasury()),
        _check("committee members", params.committee.members, market.members()),
        _check("committee threshold", params.committee.threshold, market.threshold()),
    ]
    checks += [
        _check(f"gpu class {c.id} ({c.name}) floor", c.floor_per_gpu_gops, market.class_floor(c.id))
        for c in params.gpu_classes
    ]
    on_chain = market.parameters()
    checks += [_check(f"parameter {name}", value, on_chain[name]) for name, value in params.overrides().items()]
    if market.oracle_bonds_address() != ZERO_ADDRESS:
        bonds = market.bonds
        checks.append(_check("oracle bond amount", params.oracle_bonds.bond_amount, bonds.bond_amount()))
        checks.append(
            _check("oracle bond withdrawal delay", params.oracle_bonds.withdrawal_delay, bonds.withdrawal_delay())
        )
    return checks


def _ownership_checks(
    w3: Web3, deployment: MarketDeployment, market: Market, params: DeployParams, compiled: Artifacts
) -> list[Check]:
    owner, pending = market.owner(), market.pending_owner()
    if params.timelock is None:
        wanted = params.owner or deployment.deployer
        return [_check("owner (or pending owner)", wanted, pending if pending == wanted else owner)]
    if deployment.timelock is None:
        return [_check("timelock in the deployment record", "an address", "none")]
    settings = params.timelock
    timelock = Timelock(w3, deployment.timelock, artifacts=compiled)
    since = deployment.block
    return [
        _check("owner", deployment.timelock, owner),
        _check("pending owner", ZERO_ADDRESS, pending),
        _check("timelock's market", deployment.market, timelock.market_address()),
        _check("timelock minimum delay", settings.min_delay, timelock.minimum_delay()),
        _check(
            "timelock proposers",
            _addresses(settings.proposers),
            _addresses(timelock.role_members(PROPOSER_ROLE, from_block=since)),
        ),
        _check(
            "timelock cancellers",
            _addresses(settings.proposers),
            _addresses(timelock.role_members(CANCELLER_ROLE, from_block=since)),
        ),
        _check(
            "timelock executors",
            _addresses(settings.executors),
            _addresses(timelock.role_members(EXECUTOR_ROLE, from_block=since)),
        ),
        _check(
            "timelock guardians",
            _addresses(settings.guardians),
            _addresses(timelock.role_members(GUARDIAN_ROLE, from_block=since)),
        ),
        _check(
            "timelock admins",
            [deployment.timelock],
            _addresses(timelock.role_members(DEFAULT_ADMIN_ROLE, from_block=since)),
        ),
    ]
