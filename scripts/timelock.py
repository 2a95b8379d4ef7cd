"""Governance of a market its Timelock owns: list, execute or cancel scheduled changes, pause,
unpause, and the changes `gpumarket market` makes that no other script does.

    ape run timelock pending [--all] [--json] --network ethereum:sepolia:node
    ape run timelock execute 0x<operation id> --network ... --account <executor>
    ape run timelock cancel 0x<operation id> --network ... --account <proposer>
    ape run timelock pause --network ... --account <guardian>
    ape run timelock unpause --network ... --account <proposer>
    ape run timelock gpu-class h100-sxm 400000 --network ... --account <proposer>
    ape run timelock treasury 0x... --network ... --account <proposer>

A proposer's change (here, or `ape run committee set` and `ape run params set`) is scheduled and
applies only when an executor executes it after the Timelock's minimum delay; a guardian pauses
at once, while unpausing waits like any change. On a market its sender owns directly (a local
deploy without a `timelock:` section) the same commands send the change at once. The checks and
messages are gpumarket.actions.timelock's and gpumarket.actions.governance's, as for
`gpumarket market pending|execute|cancel|pause|unpause|gpu-class|treasury`.
"""

from __future__ import annotations

from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, account_option
from scripts._support import (
    deployment_option,
    emit,
    emit_result,
    json_option,
    open_market,
    parse_gpu_class,
    refusals,
    run_action,
)

from gpumarket.actions import governance, timelock
from gpumarket.actions.common import chain_now


@click.group()
def cli() -> None:
    """The market's Timelock: pending, execute, cancel, pause, unpause, gpu-class, treasury."""


@cli.command(cls=ConnectedProviderCommand)
@deployment_option
@click.option("--all", "include_past", is_flag=True, help="Also list executed and cancelled operations.")
@json_option
def pending(network, deployment_path: Path | None, include_past: bool, as_json: bool) -> None:
    """The scheduled changes: what each does and when it can apply."""
    market = open_market(network, None, deployment_path)
    with refusals():
        found = timelock.operations(market, include_past=include_past)
        now = chain_now(market)
    emit(
        {"now": now, "operations": [operation.to_json() for operation in found]},
        timelock.render_operations(found, now),
        as_json,
    )


@cli.command(cls=ConnectedProviderCommand)
@account_option()
@deployment_option
@click.argument("operation")
@json_option
def execute(network, account, deployment_path: Path | None, operation: str, as_json: bool) -> None:
    """Execute the ready OPERATION (its 0x id, from `pending`) (executors)."""
    market = open_market(network, account, deployment_path)
    emit_result(run_action(lambda: timelock.execute(market, operation), "execute"), as_json)


@cli.command(cls=ConnectedProviderCommand)
@account_option()
@deployment_option
@click.argument("operation")
@json_option
def cancel(network, account, deployment_path: Path | None, operation: str, as_json: bool) -> None:
    """Cancel the pending OPERATION (its 0x id) (proposers)."""
    market = open_market(network, account, deployment_path)
    emit_result(run_action(lambda: timelock.cancel(market, operation), "cancel"), as_json)


@cli.command(cls=ConnectedProviderCommand)
@account_option()
@deployment_option
@json_option
def pause(network, account, deployment_path: Path | None, as_json: bool) -> None:
    """Pause the market now (the owner, or a guardian of its Timelock)."""
    market = open_market(network, account, deployment_path)
    emit_result(run_action(lambda: timelock.pause(market), "pause"), as_json)


@cli.command(cls=ConnectedProviderCommand)
@account_option()
@deployment_option
@json_option
def unpause(network, account, deployment_path: Path | None, as_json: bool) -> None:
    """Unpause the market (the owner at once; a proposer of its Timelock schedules it)."""
    market = open_market(network, account, deployment_path)
    emit_result(run_action(lambda: timelock.unpause(market), "unpause"), as_json)


def _gpu_class(ctx: click.Context, param: click.Parameter, text: str) -> int:
    try:
        return parse_gpu_class(text)
    except click.BadParameter as error:
        error.param_hint = "CLASS"  # _support names the role scripts' --class option
        raise


@cli.command(name="gpu-class", cls=ConnectedProviderCommand)
@account_option()
@deployment_option
@click.argument("gpu_class", metavar="CLASS", callback=_gpu_class)
@click.argument("floor", type=click.IntRange(min=1))
@json_option
def gpu_class(network, account, deployment_path: Path | None, gpu_class: int, floor: int, as_json: bool) -> None:
    """List GPU class CLASS (a name or an id) or change its floor to FLOOR GOPS per GPU."""
    market = open_market(network, account, deployment_path)
    emit_result(run_action(lambda: governance.gpu_class_set(market, gpu_class, floor), "gpu-class"), as_json)


@cli.command(cls=ConnectedProviderCommand)
@account_option()
@deployment_option
@click.argument("address")
@json_option
def treasury(network, account, deployment_path: Path | None, address: str, as_json: bool) -> None:
    """Name ADDRESS the account credited with protocol fees and the treasury's slash shares."""
    market = open_market(network, account, deployment_path)
    emit_result(run_action(lambda: governance.treasury_set(market, address), "treasury"), as_json)
