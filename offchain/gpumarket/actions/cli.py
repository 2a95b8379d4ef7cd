"""The role actions on the command line: `gpumarket provider register|update|stake|unstake|
withdraw|status|claim` and `gpumarket market deploy|committee|params|mint`.

    gpumarket provider stake "2000 tokens" --approve --config gpumarket.toml
    gpumarket provider status --json --rpc http://127.0.0.1:8545 --deployment deployments/local.json \
        --key test-account:1
    gpumarket market params --set unbonding_period=604800 --config owner.toml

Every command takes --config FILE (or $GPUMARKET_CONFIG; gpumarket.config) and the flags
--rpc, --deployment, --key that override it, and --json: one JSON document on stdout, for
scripts (reads: the status; writes: the transactions and amounts). A refusal exits 1 with
the message and what to do (as {"error", "message", "hint"} on stdout under --json); a
missing allowance is such a refusal unless --approve is given, which approves exactly the
amount needed first. Amounts are base units, or "<n> tokens" (scaled by the token's decimals).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
from web3 import Web3

from gpumarket.actions import faucet, governance, jobs, provider, render
from gpumarket.actions.common import ActionResult, token_info
from gpumarket.actions.context import load_deployment, open_market
from gpumarket.actions.errors import ActionError, guard
from gpumarket.actions.progress import waiting
from gpumarket.chain.connection import connect
from gpumarket.chain.errors import ChainError
from gpumarket.chain.keys import ServiceKey, load_key
from gpumarket.chain.market import Market
from gpumarket.chain.deploy import DeploymentError
from gpumarket.chain.market_deploy import MarketDeployment, deploy_market_web3
from gpumarket.chain.params import ParamsError, load_params
from gpumarket.config import ChainSettings, ConfigError, resolve_settings
from gpumarket.measure.classes import class_by_name

__all__ = ["PROVIDER_COMMANDS", "ActionFailed", "Session", "chain_options", "market", "parse_gpu_class"]

T = TypeVar("T")


class ActionFailed(click.ClickException):
    """An ActionError on the way out: exit 1, the message and the hint (JSON under --json)."""

    exit_code = 1

    def __init__(self, error: ActionError, as_json: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.as_json = as_json

    def show(self, file: Any = None) -> None:
        if self.as_json:
            click.echo(json.dumps(self.error.to_json(), sort_keys=True))
            return
        click.echo(f"Error: {self.error.message}", err=True)
        if self.error.hint:
            click.echo(f"  what to do: {self.error.hint}", err=True)


@dataclass
class Session:
    """One command's connection: settings resolved, node, deployment and key loaded on demand."""

    settings: ChainSettings
    as_json: bool = False
    _w3: Web3 | None = field(default=None, repr=False)
    _deployment: MarketDeployment | None = field(default=None, repr=False)

    def w3(self) -> Web3:
        if self._w3 is None:
            if not self.settings.rpc:
                raise ActionError("no node given", "pass --rpc URL, or set rpc in the --config file", code="no_rpc")
            try:
                self._w3 = connect(self.settings.rpc)
            except ValueError as error:
                raise ActionError(str(error), "pass an http(s):// node URL", code="bad_rpc") from None
        return self._w3

    def deployment(self) -> MarketDeployment:
        if self._deployment is None:
            if self.settings.deployment is None:
                raise ActionError("no deployment given", "pass --deployment FILE, or set deployment in the --config"
                                  " file", code="no_deployment")
            self._deployment = load_deployment(self.settings.deployment)
        return self._deployment

    def key(self) -> ServiceKey:
        if not self.settings.key:
            raise ActionError("this command signs a transaction and no key was given",
                              "pass --key (keystore:<alias>, or test-account:<i> on a local chain) or set key in the"
                              " --config file", code="no_key")
        with guard():
            return load_key(self.settings.key, w3=self.w3())

    def market(self, *, signed: bool) -> Market:
        """The deployment's market on the node (checked to be the deployment's chain first)."""
        market = open_market(self.w3(), self.deployment())  # the chain id check before the key is loaded
        return market.with_signer(self.key()) if signed else market

    def run(self, action: Callable[[], T], label: str = "") -> T:
        """`action()`, with every refusal turned into a clean exit 1 (and, given a `label`, a
        notice on stderr while a transaction takes long)."""
        try:
            if not label:
                return action()
            with waiting(label):
                return action()
        except ActionError as error:
            raise ActionFailed(error, self.as_json) from None
        except ConfigError as error:
            raise ActionFailed(ActionError(str(error), "fix the config file", code="bad_config"),
                               self.as_json) from None
        except ChainError as error:
            raise ActionFailed(ActionError(f"{type(error).__name__}: {error}", "check the node and retry",
                                           code="chain_error"), self.as_json) from None
        except OSError as error:  # requests' connection errors too
            raise ActionFailed(ActionError(f"node {self.settings.rpc} unreachable: {type(error).__name__}",
                                           "check --rpc and that the node is up", code="node_unreachable"),
                               self.as_json) from None

    def emit(self, document: Any, text: str) -> None:
        click.echo(json.dumps(document, sort_keys=True) if self.as_json else text)

    def emit_result(self, result: ActionResult) -> None:
        lines = [result.summary, *(f"  {tx.label}: {tx.tx_hash} (block {tx.block}, gas {tx.gas_used:,})"
                                   for tx in result.transactions)]
        self.emit(result.to_json(), "\n".join(lines))


def chain_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --config/--rpc/--deployment/--key/--json to a command; it receives `session`."""

    @functools.wraps(func)
    def wrapper(*args: Any, config: Path | None, rpc: str | None, deployment: Path | None, key: str | None,
                as_json: bool, **kwargs: Any) -> Any:
        try:
            settings = resolve_settings(config, rpc=rpc, deployment=deployment, key=key)
        except ConfigError as error:
            raise ActionFailed(ActionError(str(error), "fix the config file", code="bad_config"), as_json) from None
        return func(*args, session=Session(settings, as_json), **kwargs)

    options = [
        click.option("--config", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Config file (TOML or YAML: rpc, deployment, key) [default: $GPUMARKET_CONFIG]."),
        click.option("--rpc", default=None, help="Node URL (http(s)://...); overrides the config file."),
        click.option("--deployment", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="The market's deployment record (JSON); overrides the config file."),
        click.option("--key", default=None,
                     help="keystore:<alias> (passphrase in $APE_ACCOUNTS_<alias>_PASSPHRASE) or, on a local chain,"
                          " test-account:<i>; overrides the config file."),
        click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout (errors too)."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def parse_gpu_class(value: str) -> int:
    """A GPU class by name (cpu-dev, h100-sxm, ...) or id."""
    if value.isdigit():
        return int(value)
    try:
        return class_by_name(value).id
    except (KeyError, ValueError) as error:
        raise click.BadParameter(str(error)) from None


def _parse_amount(market: Market, text: str, stake: bool) -> int:
    info = token_info(market.stake_token if stake else market.payment_token)
    try:
        return render.parse_amount(text, info.decimals)
    except ValueError as error:
        raise ActionError(str(error), f"give base units, or e.g. '1.5 tokens' ({info.symbol})",
                          code="bad_amount") from None


_CLAIM_OPTIONS = [
    click.option("--class", "gpu_class", default=None, help="GPU class name (e.g. cpu-dev) or id."),
    click.option("--gpus", "gpu_count", type=int, default=None, help="GPUs offered (1 .. 1,024)."),
    click.option("--price", type=int, default=None, help="Payment-token base units per GPU-second."),
    click.option("--endpoint", default=None, help="The agent's public URL (http(s)://...)."),
]


def _claim_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_CLAIM_OPTIONS):
        func = option(func)
    return func


# ---------------------------------------------------------------------------- provider


@click.command("register")
@_claim_options
@chain_options
def register_command(session: Session, gpu_class: str | None, gpu_count: int | None, price: int | None,
                     endpoint: str | None) -> None:
    """Register this account as a provider (--class, --gpus, --price, --endpoint)."""
    missing = [name for name, value in (("--class", gpu_class), ("--gpus", gpu_count), ("--price", price),
                                        ("--endpoint", endpoint)) if value is None]
    if missing:
        raise click.UsageError(f"register needs {', '.join(missing)}")
    class_id = parse_gpu_class(str(gpu_class))
    result = session.run(lambda: provider.register(session.market(signed=True), class_id, int(gpu_count or 0),
                                                   int(price or 0), str(endpoint)), "register")
    session.emit_result(result)


@click.command("update")
@_claim_options
@chain_options
def update_command(session: Session, gpu_class: str | None, gpu_count: int | None, price: int | None,
                   endpoint: str | None) -> None:
    """Change this provider's class, GPUs, price or endpoint (what is not given stays).
    A new class or GPU count voids the verification until the next hardware report."""
    class_id = None if gpu_class is None else parse_gpu_class(gpu_class)
    result = session.run(lambda: provider.update(session.market(signed=True), gpu_class=class_id,
                                                 gpu_count=gpu_count, price=price, endpoint=endpoint), "update")
    session.emit_result(result)


@click.command("stake")
@click.argument("amount")
@click.option("--approve", is_flag=True, help="Approve the stake token for exactly AMOUNT first if needed.")
@chain_options
def stake_command(session: Session, amount: str, approve: bool) -> None:
    """Add AMOUNT of the stake token to the free stake (base units, or e.g. "1000 tokens")."""

    def act() -> ActionResult:
        market = session.market(signed=True)
        return provider.stake(market, _parse_amount(market, amount, stake=True), approve=approve)

    session.emit_result(session.run(act, "stake"))


@click.command("unstake")
@click.argument("amount")
@chain_options
def unstake_command(session: Session, amount: str) -> None:
    """Start unbonding AMOUNT of free stake; withdraw it after the unbonding period."""

    def act() -> ActionResult:
        market = session.market(signed=True)
        return provider.request_unstake(market, _parse_amount(market, amount, stake=True))

    session.emit_result(session.run(act, "unstake"))


@click.command("withdraw")
@chain_options
def withdraw_command(session: Session) -> None:
    """Pay out the unbonding stake (refused, with the time to come back, before its release)."""
    session.emit_result(session.run(lambda: provider.withdraw(session.market(signed=True)), "withdraw"))


@click.command("status")
@click.argument("address", required=False)
@chain_options
def status_command(session: Session, address: str | None) -> None:
    """ADDRESS's standing (default: --key's account): claim, verification, free, locked and
    unbonding stake with the release time, claimable balances and jobs."""

    def act() -> provider.ProviderStatus:
        who = address or session.key().address
        return provider.status(session.market(signed=False), who, from_block=session.deployment().block)

    status = session.run(act)
    session.emit(status.to_json(), status.render())


@click.command("claim")
@chain_options
def claim_command(session: Session) -> None:
    """Withdraw the payments and stake the market credited to this account."""
    session.emit_result(session.run(lambda: jobs.claim(session.market(signed=True)), "claim"))


PROVIDER_COMMANDS = (register_command, update_command, stake_command, unstake_command, withdraw_command,
                     status_command, claim_command)


# ---------------------------------------------------------------------------- market (governance)


@click.group("market", context_settings={"help_option_names": ["-h", "--help"]})
def market() -> None:
    """The market's governance: the oracle committee and the bounded parameters (owner only to change)."""


@market.command("committee")
@click.option("--set", "members", default=None, help="New members, comma-separated addresses (owner only).")
@click.option("--threshold", type=int, default=None, help="Signatures needed (a strict majority); with --set.")
@chain_options
def committee_command(session: Session, members: str | None, threshold: int | None) -> None:
    """Show the oracle committee; with --set and --threshold, replace it (a new epoch)."""
    if members is None:
        if threshold is not None:
            raise click.UsageError("--threshold goes with --set")
        info = session.run(lambda: governance.committee_show(session.market(signed=False)))
        session.emit(info.to_json(), info.render())
        return
    if threshold is None:
        raise click.UsageError("--set needs --threshold")
    addresses = [part.strip() for part in members.split(",") if part.strip()]
    session.emit_result(session.run(
        lambda: governance.committee_set(session.market(signed=True), addresses, threshold), "committee"))


@market.command("params")
@click.option("--set", "assignment", default=None, metavar="NAME=VALUE", help="Change one parameter (owner only).")
@chain_options
def params_command(session: Session, assignment: str | None) -> None:
    """Show every governance parameter with its bounds; with --set NAME=VALUE, change one."""
    if assignment is None:
        rows = session.run(lambda: governance.params_show(session.market(signed=False)))
        session.emit({row.name: row.to_json() for row in rows}, governance.render_params(rows))
        return
    name, sep, raw = assignment.partition("=")
    try:
        value = int(raw.replace("_", "").strip())
    except ValueError:
        value = None
    if not sep or value is None:
        raise click.BadParameter(f"{assignment!r} is not NAME=VALUE with an integer VALUE", param_hint="--set")
    session.emit_result(session.run(
        lambda: governance.params_set(session.market(signed=True), name.strip(), value), "params"))


@market.command("mint")
@click.argument("token", type=click.Choice(["stake", "payment"]))
@click.argument("amount")
@click.option("--to", "recipient", default=None, help="Recipient address [default: the --key's account].")
@chain_options
def mint_command(session: Session, token: str, amount: str, recipient: str | None) -> None:
    """Mint mock STAKE or PAYMENT tokens (local chains, `--deploy-mock-tokens` deployments only).

    AMOUNT is base units or "<n> tokens"."""

    def run() -> ActionResult:
        market = session.market(signed=True)
        value = _parse_amount(market, amount, stake=token == "stake")
        return faucet.mint(market, token, recipient or session.key().address, value)  # type: ignore[arg-type]

    session.emit_result(session.run(run, "mint"))


@market.command("deploy")
@click.option("--params", "params_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("deploy/params/default.yaml"), show_default=True, help="Parameters YAML.")
@click.option("--mock-tokens", is_flag=True, help="Deploy fresh MockTokens for both tokens (local chains only).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the deployment record [default: the --deployment path, else "
                   "deployments/chain-<id>.json].")
@chain_options
def deploy_command(session: Session, params_path: Path, mock_tokens: bool, out_path: Path | None) -> None:
    """Deploy a market from a parameters YAML with the --key account and write its deployment record
    (what `ape run deploy` does, without an ape project)."""

    def run() -> MarketDeployment:
        try:
            params = load_params(params_path)
        except ParamsError as error:
            raise ActionError(f"{params_path}: {error}", "fix the parameters file", code="bad_params") from None
        w3 = session.w3()
        key = session.key()
        try:
            with guard():
                return deploy_market_web3(w3, key, params, deploy_mock_tokens=mock_tokens)
        except (ParamsError, DeploymentError) as error:
            raise ActionError(str(error), "fix the parameters file for this network", code="bad_params") from None

    deployment = session.run(run, "deploy")
    path = out_path or session.settings.deployment or Path(f"deployments/chain-{deployment.chain_id}.json")
    deployment.write(path)
    session.emit({**deployment.to_json(), "path": str(path)},
                 f"deployed GpuMarket at {deployment.market} (block {deployment.block}, chain {deployment.chain_id});"
                 f" record written to {path}")
