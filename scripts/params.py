"""The market's governance parameters: show them with their bounds, or (the owner) set one.

    ape run params show [--json] --network ethereum:local:foundry
    ape run params set unbonding_period 604800 --network ... --account <owner>

The bounds are the contract's (gpumarket.chain.params.PARAMETER_BOUNDS): a value outside
them is refused before anything is sent, as is a sender that is not the owner. The checks
and messages are gpumarket.actions.governance's.
"""

from __future__ import annotations

from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, account_option
from scripts._support import deployment_option, emit, emit_result, json_option, open_market, refusals, run_action

from gpumarket.actions import governance


@click.group()
def cli() -> None:
    """Governance parameters: show, set."""


@cli.command(cls=ConnectedProviderCommand)
@deployment_option
@json_option
def show(network, deployment_path: Path | None, as_json: bool) -> None:
    """Every parameter's value and bounds."""
    market = open_market(network, None, deployment_path)
    with refusals():
        rows = governance.params_show(market)
    emit([row.to_json() for row in rows], governance.render_params(rows), as_json)


def _integer(text: str) -> int:
    try:
        return int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an integer", param_hint="VALUE") from None


@cli.command(name="set", cls=ConnectedProviderCommand)
@account_option()
@deployment_option
@click.argument("name")
@click.argument("value")
@json_option
def set_parameter(network, account, deployment_path: Path | None, name: str, value: str, as_json: bool) -> None:
    """Set parameter NAME to VALUE (an integer; "_" and "," allowed) within its bounds (owner only)."""
    number = _integer(value)
    market = open_market(network, account, deployment_path)
    emit_result(run_action(lambda: governance.params_set(market, name, number), "params set"), as_json)
