"""The role actions on the command line: `gpumarket provider register|update|stake|unstake|
withdraw|status|claim` and `gpumarket market deploy|committee|params|mint`.

    gpumarket provider stake "2000 tokens" --approve --config gpumarket.toml
    gpumarket provider status --json --rpc http://127.0.0.1:8545 --deployment deployments/local.json \
        --key test-account:1
    gpumarket market params --set unbonding_period=604800 --config owner.toml

Every command takes --config FILE (or $GPUMARKET_CONFIG; gpumarket.config) and the flags
--rpc, --deployment, --key that override it, and --json: one JSON document on stdout, for
scripts (reads: the status; writes: the transactions and amounts). The four connection flags
are accepted before the subcommand too (`gpumarket provider --key K status`; the group takes
them with `group_chain_options`), the subcommand's own win. A refusal exits 1 with the
message and what to do (as {"error", "message", "hint"} on stdout under --json); a node that
does not answer and a deployment whose contract is not on the node are such refusals too,
never a traceback. A missing allowance is a refusal unless --approve is given, which approves
exactly the amount needed first. Amounts are base units, or "<n> tokens" (scaled by the
token's decimals).

The `gpumarket client` group (gpumarket.client.cli) runs its commands through the same
Session, so every role's command handles a node, a deployment and a key the same way; the
services (`oracle run`, `provider run`) take the same four flags (`connection_options`) and
resolve them with `service_settings`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import click
from web3 import Web3

from gpumarket.actions import faucet, governance, jobs, provider, render, timelock
from gpumarket.actions.common import ActionResult, chain_now, token_info
from gpumarket.actions.context import load_deployment, open_market
from gpumarket.actions.errors import ActionError, from_client_error, guard
from gpumarket.actions.progress import waiting
from gpumarket.agentapi.client import PROBE_TIMEOUTS
from gpumarket.agentapi.errors import ClientError
from gpumarket.chain.artifacts import ArtifactsError, compile_contracts
from gpumarket.chain.connection import EMBEDDED, connect, is_transient
from gpumarket.chain.deploy import DeploymentError
from gpumarket.chain.errors import ChainError
from gpumarket.chain.keys import ServiceKey, load_key
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment, deploy_market_web3
from gpumarket.chain.params import ParamsError, load_params
from gpumarket.chain.timelock import Operation
from gpumarket.chain.verify import Check, verify_deployment
from gpumarket.config import ChainSettings, ConfigError, require_settings, resolve_settings
from gpumarket.measure.classes import class_by_name

__all__ = [
    "PROVIDER_COMMANDS",
    "ActionFailed",
    "GroupSettings",
    "Session",
    "chain_options",
    "connection_options",
    "group_chain_options",
    "group_settings",
    "market",
    "parse_gpu_class",
    "preset_connection",
    "service_settings",
]

T = TypeVar("T")


class ActionFailed(click.ClickException):
    """An ActionError on the way out: exit 1 (or `exit_code`), the message and the hint (JSON under --json)."""

    exit_code = 1

    def __init__(self, error: ActionError, as_json: bool, exit_code: int = 1) -> None:
        super().__init__(error.message)
        self.error = error
        self.as_json = as_json
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        if self.as_json:
            click.echo(json.dumps(self.error.to_json(), sort_keys=True))
            return
        click.echo(f"Error: {self.error.message}", err=True)
        if self.error.hint:
            click.echo(f"  what to do: {self.error.hint}", err=True)


@dataclass
class Session:
    """One command's connection: settings resolved, node, deployment and key loaded on demand
    (once each). `_w3` may be preset by an embedding program (see preset_connection)."""

    settings: ChainSettings
    as_json: bool = False
    _w3: Web3 | None = field(default=None, repr=False)
    _deployment: MarketDeployment | None = field(default=None, repr=False)
    _key: ServiceKey | None = field(default=None, repr=False)
    _market: Market | None = field(default=None, repr=False)
    _signed: Market | None = field(default=None, repr=False)  # one signer: one nonce sequence

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
                raise ActionError(
                    "no deployment given",
                    "pass --deployment FILE, or set deployment in the --config file",
                    code="no_deployment",
                )
            self._deployment = load_deployment(self.settings.deployment)
        return self._deployment

    def key(self, needed_for: str = "signs a transaction") -> ServiceKey:
        """The --key account; `needed_for` says why, when no key was given ("this command ...")."""
        if self._key is None:
            if not self.settings.key:
                raise ActionError(
                    f"this command {needed_for} and no key was given",
                    "pass --key (keystore:<alias>, or test-account:<i> on a local chain) or set key in"
                    " the --config file",
                    code="no_key",
                )
            with guard():
                self._key = load_key(self.settings.key, w3=self.w3())
        return self._key

    def market(self, *, signed: bool) -> Market:
        """The deployment's market on the node (checked to be the deployment's chain, with its
        contract there, first)."""
        if self._market is None:
            self._market = open_market(self.w3(), self.deployment())  # checked before the key is loaded
        if not signed:
            return self._market
        if self._signed is None:
            self._signed = self._market.with_signer(self.key())
        return self._signed

    def run(self, action: Callable[[], T], label: str = "") -> T:
        """`action()`, with every refusal turned into a clean exit 1 (and, given a `label`, a
        notice on stderr while a transaction takes long)."""
        try:
            if not label:
                return action()
            with waiting(label):
                return action()
        except Exception as error:  # the known failures become a refusal; anything else is a bug and propagates
            refusal = self.refusal(error)
            if refusal is None:
                raise
            raise ActionFailed(refusal, self.as_json) from None

    def refusal(self, error: Exception) -> ActionError | None:
        """The refusal to show for an error of an action, None for an unexpected one (a bug)."""
        if isinstance(error, ActionError):
            return error
        if isinstance(error, ClientError):
            return from_client_error(error)
        if isinstance(error, ConfigError):
            return ActionError(str(error), "fix the config file", code="bad_config")
        if isinstance(error, ChainError):
            return ActionError(f"{type(error).__name__}: {error}", "check the node and retry", code="chain_error")
        if is_transient(error):  # requests' connection errors (OSError), web3's connection errors
            return ActionError(
                f"node {self.settings.rpc or '(preset)'} unreachable: {type(error).__name__}",
                "check --rpc and that the node is up",
                code="node_unreachable",
            )
        return None

    def emit(self, document: Any, text: str) -> None:
        click.echo(json.dumps(document, sort_keys=True) if self.as_json else text)

    def emit_result(self, result: ActionResult) -> None:
        lines = [
            result.summary,
            *(f"  {tx.label}: {tx.tx_hash} (block {tx.block}, gas {tx.gas_used:,})" for tx in result.transactions),
        ]
        self.emit(result.to_json(), "\n".join(lines))


@dataclass(frozen=True)
class GroupSettings:
    """The connection flags given before the subcommand (`gpumarket client --key K jobs`)."""

    config: Path | None = None
    rpc: str | None = None
    deployment: Path | None = None
    key: str | None = None


# click's `meta` is shared by a context and all its children: the group's flags and an embedding
# program's node connection reach the subcommand through it.
_GROUP_SETTINGS = "gpumarket.group_settings"
_PRESET_W3 = "gpumarket.preset_w3"


def group_settings(ctx: click.Context | None = None) -> GroupSettings:
    """What the enclosing group's connection flags said (all None when it took none)."""
    ctx = ctx or click.get_current_context()
    settings: GroupSettings = ctx.meta.get(_GROUP_SETTINGS, GroupSettings())
    return settings


def preset_connection(ctx: click.Context, w3: Web3) -> None:
    """Let the commands under `ctx` use this node connection unless --rpc names one (an
    embedding program or a test: the embedded chain lives in one process)."""
    ctx.meta[_PRESET_W3] = w3


_KEY_HELP = (
    "keystore:<alias> (passphrase in $APE_ACCOUNTS_<alias>_PASSPHRASE) or, on a local chain,"
    " test-account:<i>; overrides the config file."
)


def connection_options(*, key_help: str = _KEY_HELP) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--config/--rpc/--deployment/--key, declared once for every command that reaches the market
    (the actions, `oracle run`, `provider run`): the command receives `config`, `rpc`, `deployment`
    and `key`, each None when not given. `key_help` says what the key is where a role's differs
    (the oracle's signs reports and may be a test oracle's)."""
    options = [
        click.option(
            "--config",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Config file (TOML or YAML: rpc, deployment, key) [default: $GPUMARKET_CONFIG].",
        ),
        click.option("--rpc", default=None, help="Node URL (http(s)://...); overrides the config file."),
        click.option(
            "--deployment",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="The market's deployment record (JSON); overrides the config file.",
        ),
        click.option("--key", default=None, help=key_help),
    ]

    def add(func: Callable[..., Any]) -> Callable[..., Any]:
        return _apply(options, func)

    return add


def service_settings(config: Path | None, rpc: str | None, deployment: Path | None, key: str | None) -> ChainSettings:
    """Where a long-running service (`oracle run`, `provider run`) connects: its own flags over its
    group's (`gpumarket provider --key K run`) over the config file. It needs all three, a deployment
    record that is a file and a node's URL (the embedded chain lives inside one process); a usage
    error (exit 2) says which is missing or wrong."""
    group = group_settings()
    try:
        settings = require_settings(
            config or group.config,
            rpc=rpc or group.rpc,
            deployment=deployment or group.deployment,
            key=key or group.key,
        )
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    record = Path(str(settings.deployment))
    if not record.is_file():  # from a flag or from the config file alike
        raise click.BadParameter(f"no deployment record at '{record}' (a JSON file)", param_hint="--deployment")
    if settings.rpc == EMBEDDED:
        raise click.BadParameter("the embedded chain lives inside one process: give a node's URL", param_hint="--rpc")
    return settings


def _apply(options: list[Callable[[Any], Any]], func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(options):
        func = option(func)
    return func


def group_chain_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --config/--rpc/--deployment/--key to a group: its chain_options subcommands use them
    where they are not given after the subcommand. The group function does not receive them."""

    @functools.wraps(func)
    def wrapper(
        *args: Any, config: Path | None, rpc: str | None, deployment: Path | None, key: str | None, **kwargs: Any
    ) -> Any:
        click.get_current_context().meta[_GROUP_SETTINGS] = GroupSettings(config, rpc, deployment, key)
        return func(*args, **kwargs)

    return connection_options()(wrapper)


def chain_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --config/--rpc/--deployment/--key/--json to a command; it receives `session`."""

    @functools.wraps(func)
    def wrapper(
        *args: Any,
        config: Path | None,
        rpc: str | None,
        deployment: Path | None,
        key: str | None,
        as_json: bool,
        **kwargs: Any,
    ) -> Any:
        ctx = click.get_current_context()
        group = group_settings(ctx)
        rpc = rpc or group.rpc
        try:
            settings = resolve_settings(
                config or group.config, rpc=rpc, deployment=deployment or group.deployment, key=key or group.key
            )
        except ConfigError as error:
            raise ActionFailed(ActionError(str(error), "fix the config file", code="bad_config"), as_json) from None
        preset = None if rpc else ctx.meta.get(_PRESET_W3)  # a flag names the node: it wins over a preset one
        return func(*args, session=Session(settings, as_json, _w3=preset), **kwargs)

    as_json = click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout (errors too).")
    return connection_options()(as_json(wrapper))


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
        raise ActionError(
            str(error), f"give base units, or e.g. '1.5 tokens' ({info.symbol})", code="bad_amount"
        ) from None


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
def register_command(
    session: Session, gpu_class: str | None, gpu_count: int | None, price: int | None, endpoint: str | None
) -> None:
    """Register this account as a provider (--class, --gpus, --price, --endpoint)."""
    missing = [
        name
        for name, value in (("--class", gpu_class), ("--gpus", gpu_count), ("--price", price), ("--endpoint", endpoint))
        if value is None
    ]
    if missing:
        raise click.UsageError(f"register needs {', '.join(missing)}")
    class_id = parse_gpu_class(str(gpu_class))
    result = session.run(
        lambda: provider.register(
            session.market(signed=True), class_id, int(gpu_count or 0), int(price or 0), str(endpoint)
        ),
        "register",
    )
    session.emit_result(result)


@click.command("update")
@_claim_options
@chain_options
def update_command(
    session: Session, gpu_class: str | None, gpu_count: int | None, price: int | None, endpoint: str | None
) -> None:
    """Change this provider's class, GPUs, price or endpoint (what is not given stays).
    A new class or GPU count voids the verification until the next hardware report."""
    class_id = None if gpu_class is None else parse_gpu_class(gpu_class)
    result = session.run(
        lambda: provider.update(
            session.market(signed=True), gpu_class=class_id, gpu_count=gpu_count, price=price, endpoint=endpoint
        ),
        "update",
    )
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
        who = address or session.key("shows the --key account's standing (or give ADDRESS)").address
        return provider.status(
            session.market(signed=False), who, from_block=session.deployment().block, agent_timeouts=PROBE_TIMEOUTS
        )

    status = session.run(act)
    session.emit(status.to_json(), status.render())


@click.command("claim")
@chain_options
def claim_command(session: Session) -> None:
    """Withdraw everything the market credited to this account (payments, refunds, stake)."""
    session.emit_result(session.run(lambda: jobs.claim(session.market(signed=True)), "claim"))


PROVIDER_COMMANDS = (
    register_command,
    update_command,
    stake_command,
    unstake_command,
    withdraw_command,
    status_command,
    claim_command,
)


# ---------------------------------------------------------------------------- market (governance)


@click.group("market", context_settings={"help_option_names": ["-h", "--help"]})
@group_chain_options
def market() -> None:
    """The market's governance: committee, parameters, GPU classes, treasury, pause; on a market its
    Timelock owns, changes are scheduled, listed by `pending`, and applied by `execute` after the delay."""


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
    session.emit_result(
        session.run(lambda: governance.committee_set(session.market(signed=True), addresses, threshold), "committee")
    )


@market.command("params")
@click.option("--set", "assignment", default=None, metavar="NAME=VALUE", help="Change one parameter (owner only).")
@chain_options
def params_command(session: Session, assignment: str | None) -> None:
    """Show every governance parameter with its bounds; with --set NAME=VALUE, change one."""
    if assignment is None:

        def show() -> tuple[list[governance.ParameterRow], str]:
            on_chain = session.market(signed=False)
            shown = governance.params_show(on_chain)
            stake = token_info(on_chain.stake_token)
            min_stake = next(row.value for row in shown if row.name == "min_stake")
            # The table shows base units (the bounds too); the one amount is also shown in tokens.
            return shown, f"min_stake is {render.amount(min_stake, stake.decimals, stake.symbol)} (stake token)"

        rows, note = session.run(show)
        session.emit({row.name: row.to_json() for row in rows}, governance.render_params(rows) + "\n\n" + note)
        return
    name, sep, raw = assignment.partition("=")
    try:
        value = int(raw.replace("_", "").strip())
    except ValueError:
        value = None
    if not sep or value is None:
        raise click.BadParameter(f"{assignment!r} is not NAME=VALUE with an integer VALUE", param_hint="--set")
    session.emit_result(
        session.run(lambda: governance.params_set(session.market(signed=True), name.strip(), value), "params")
    )


@market.command("gpu-class")
@click.argument("gpu_class", metavar="CLASS", callback=lambda ctx, param, value: parse_gpu_class(value))
@click.argument("floor", type=click.IntRange(min=1))
@chain_options
def gpu_class_command(session: Session, gpu_class: int, floor: int) -> None:
    """List GPU class CLASS (a name or an id) or change its floor to FLOOR GOPS per GPU (owner, or a
    proposer of its Timelock: then scheduled)."""
    session.emit_result(
        session.run(lambda: governance.gpu_class_set(session.market(signed=True), gpu_class, floor), "gpu-class")
    )


@market.command("treasury")
@click.argument("address")
@chain_options
def treasury_command(session: Session, address: str) -> None:
    """Name ADDRESS the treasury (owner, or a proposer of its Timelock: then scheduled)."""
    session.emit_result(session.run(lambda: governance.treasury_set(session.market(signed=True), address), "treasury"))


@market.command("pending")
@click.option("--all", "include_past", is_flag=True, help="Also list executed and cancelled operations.")
@chain_options
def pending_command(session: Session, include_past: bool) -> None:
    """The changes scheduled on the market's Timelock: what each does and when it can apply.
    Providers and clients: what is listed here can change the market's rules after its time."""

    def show() -> tuple[list[Operation], int]:
        on_chain = session.market(signed=False)
        return timelock.operations(on_chain, include_past=include_past), chain_now(on_chain)

    found, now = session.run(show)
    session.emit(
        {"now": now, "operations": [operation.to_json() for operation in found]},
        timelock.render_operations(found, now),
    )


@market.command("execute")
@click.argument("operation")
@chain_options
def execute_command(session: Session, operation: str) -> None:
    """Execute the ready OPERATION (its 0x id, from `pending`) on the market's Timelock (executors)."""
    session.emit_result(session.run(lambda: timelock.execute(session.market(signed=True), operation), "execute"))


@market.command("cancel")
@click.argument("operation")
@chain_options
def cancel_command(session: Session, operation: str) -> None:
    """Cancel the pending OPERATION (its 0x id) on the market's Timelock (proposers)."""
    session.emit_result(session.run(lambda: timelock.cancel(session.market(signed=True), operation), "cancel"))


@market.command("pause")
@chain_options
def pause_command(session: Session) -> None:
    """Pause the market now: no new jobs; settling, expiry, claims and withdrawals go on (the owner,
    or a guardian of its Timelock)."""
    session.emit_result(session.run(lambda: timelock.pause(session.market(signed=True)), "pause"))


@market.command("unpause")
@chain_options
def unpause_command(session: Session) -> None:
    """Unpause the market (the owner at once; on a Timelock, scheduled like any change)."""
    session.emit_result(session.run(lambda: timelock.unpause(session.market(signed=True)), "unpause"))


@market.command("verify-deployment")
@click.option(
    "--params",
    "params_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The parameters file the deployment must match [default: the one the deployment record names].",
)
@click.option(
    "--contracts",
    "contracts_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The audited sources to compile [default: this checkout's contracts/, at the tag you checked out].",
)
@chain_options
def verify_deployment_command(session: Session, params_path: Path | None, contracts_dir: Path | None) -> None:
    """Check a deployment: the code at each address is a fresh compile of the sources, and the tokens,
    treasury, committee, GPU classes, parameters and ownership (the timelock, its delay and roles) are
    the parameters file's. Prints each check; exits 1 when any differs."""

    def run() -> list[Check]:
        deployment = session.deployment()
        source = params_path or (Path(deployment.params_file) if deployment.params_file else None)
        if source is None:
            raise ActionError("the deployment record names no parameters file", "pass --params FILE", code="no_params")
        try:
            params = load_params(source)
        except ParamsError as error:
            raise ActionError(str(error), "fix the parameters file", code="bad_params") from None
        try:
            compiled = compile_contracts(contracts_dir)
        except (ArtifactsError, ImportError) as error:
            raise ActionError(
                f"cannot compile the contracts: {error}",
                "run it from a checkout with the dev tools installed (`make venv`), or pass --contracts",
                code="no_compiler",
            ) from None
        with guard():
            return verify_deployment(session.w3(), deployment, params, compiled)

    checks = session.run(run)
    failed = [check for check in checks if not check.ok]
    rows = [("ok" if c.ok else "DIFFERS", c.what, c.expected if c.ok else f"{c.expected} != {c.found}") for c in checks]
    verdict = "every check passed" if not failed else f"{len(failed)} of {len(checks)} checks differ"
    session.emit(
        {"ok": not failed, "checks": [check.to_json() for check in checks]},
        render.table(["", "check", "expected (!= found)"], rows) + f"\n\n{verdict}",
    )
    if failed:
        raise SystemExit(1)


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
@click.option(
    "--params",
    "params_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("deploy/params/default.yaml"),
    show_default=True,
    help="Parameters YAML.",
)
@click.option("--mock-tokens", is_flag=True, help="Deploy fresh MockTokens for both tokens (local chains only).")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the deployment record [default: the --deployment path, else deployments/chain-<id>.json].",
)
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

    deployment = replace(session.run(run, "deploy"), params_file=str(params_path))
    path = out_path or session.settings.deployment or Path(f"deployments/chain-{deployment.chain_id}.json")
    deployment.write(path)
    session.emit(
        {**deployment.to_json(), "path": str(path)},
        f"deployed GpuMarket at {deployment.market} (block {deployment.block}, chain {deployment.chain_id});"
        f" record written to {path}",
    )
