"""The market's oracle committee: show it, or (the owner) set a new one.

    ape run committee show [--json] --network ethereum:local:foundry
    ape run committee set --member 0x... --member 0x... --member 0x... --threshold 2 \\
        --network ... --account <owner>

Setting starts a new epoch: reports signed for the old committee stop settling. The
checks (owner, 1 .. 31 distinct members, a strict-majority threshold, no test oracle off
a local chain) and messages are gpumarket.actions.governance's.
"""

from __future__ import annotations

from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, account_option
from scripts._support import deployment_option, emit, emit_result, json_option, open_market, refusals, run_action

from gpumarket.actions import governance


@click.group()
def cli() -> None:
    """The oracle committee: show, set."""


@cli.command(cls=ConnectedProviderCommand)
@deployment_option
@json_option
def show(network, deployment_path: Path | None, as_json: bool) -> None:
    """Epoch, threshold, owner and members."""
    market = open_market(network, None, deployment_path)
    with refusals():
        info = governance.committee_show(market)
    emit(info.to_json(), info.render(), as_json)


@cli.command(name="set", cls=ConnectedProviderCommand)
@account_option()
@deployment_option
@click.option("--member", "members", multiple=True, required=True, help="A member's address (repeat for each).")
@click.option("--threshold", type=int, required=True, help="Signatures a report needs (a strict majority).")
@json_option
def set_committee(
    network, account, deployment_path: Path | None, members: tuple[str, ...], threshold: int, as_json: bool
) -> None:
    """Replace the committee (owner only): a new epoch."""
    market = open_market(network, account, deployment_path)
    emit_result(
        run_action(lambda: governance.committee_set(market, list(members), threshold), "committee set"), as_json
    )
