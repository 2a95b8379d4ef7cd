"""What the role scripts (committee, params, provider, job) share: options, the market,
refusals, the approval offer, output and progress.

Not a script itself (ape run skips files whose name starts with "_"). The actions and
their checks live in gpumarket.actions, the ape-to-web3 bridge in
gpumarket.chain.ape_bridge; this module only turns them into a command line:

- `--deployment FILE` (default deployments/<network>.json, as `ape run deploy` writes it),
  `--json` (the result or state as one JSON document on stdout), `--yes` (alias
  `--approve`: approve a missing allowance without asking).
- `refusals()`: an ActionError, a BridgeError or a bad argument ends the command with
  "Error: <what is wrong>; <what to do>" and exit status 1, never a traceback or a revert dump.
- `with_approval(action, approve)`: runs an action that may need an allowance; on
  NeedsApproval it asks (a terminal) or refuses with the hint to rerun with --yes (no terminal).
- `waiting(label)` (gpumarket.actions.progress): a transaction that takes long (a block time) prints
  how long it has waited, so a silent terminal never looks hung.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from gpumarket.actions import ActionError, ActionResult, NeedsApproval, render
from gpumarket.actions.common import token_info
from gpumarket.actions.progress import waiting
from gpumarket.chain.ape_bridge import BridgeError, load_deployment, market_for_script
from gpumarket.chain.market import Market, Token
from gpumarket.measure.classes import class_by_name

__all__ = [
    "approve_option",
    "deployment_block",
    "deployment_option",
    "emit",
    "emit_result",
    "json_option",
    "open_market",
    "parse_amount",
    "parse_gpu_class",
    "refusals",
    "run_action",
    "waiting",
    "with_approval",
]

deployment_option = click.option(
    "--deployment",
    "deployment_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The deployment record (default: deployments/<network>.json, written by `ape run deploy`).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
approve_option = click.option(
    "--yes",
    "--approve",
    "approve",
    is_flag=True,
    help="Approve the exact token allowance the action needs without asking.",
)


@contextmanager
def refusals() -> Iterator[None]:
    """Turn a refusal into click's usage of an error: one line on stderr, exit status 1."""
    try:
        yield
    except (ActionError, BridgeError) as error:
        raise click.ClickException(str(error)) from None


def open_market(network: Any, account: Any, deployment_path: Path | None) -> Market:
    """The deployment's market on ape's connected network, signed by `account` (None: reads)."""
    with refusals():
        return market_for_script(account, deployment_path, network.name)


def deployment_block(network: Any, deployment_path: Path | None) -> int:
    """The block the market was deployed in: where event scans (jobs, settlements) start."""
    with refusals():
        return load_deployment(deployment_path, network.name).block


def with_approval(action: Callable[[bool], ActionResult], approve: bool, label: str) -> ActionResult:
    """Run `action(approve)`; when it needs an allowance, offer the approval (see module doc)."""
    with refusals(), waiting(label):
        try:
            return action(approve)
        except NeedsApproval as needed:
            if approve:
                raise  # approved, yet short again (another spender?): refused as it is
            amount = f"{needed.amount} base units of {needed.symbol} ({needed.token})"
            if not sys.stdin.isatty():
                raise ActionError(
                    needed.message, f"rerun with --yes to approve {amount} for the market first", code=needed.code
                ) from None
            if not click.confirm(f"{needed.message}. Approve {amount} for the market {needed.spender}?", err=True):
                raise ActionError(
                    "not approved: nothing was sent", "rerun and approve, or with --yes", code="not_approved"
                ) from None
            return action(True)


def run_action(action: Callable[[], ActionResult], label: str) -> ActionResult:
    """Run an action that needs no allowance, with refusals and progress."""
    with refusals(), waiting(label):
        return action()


def emit(document: Any, text: str, as_json: bool) -> None:
    """`document` as JSON, or `text` for people."""
    click.echo(json.dumps(document, indent=2) if as_json else text)


def emit_result(result: ActionResult, as_json: bool) -> None:
    """An action's result: its summary and each transaction (hash, block, gas)."""
    lines = [result.summary]
    lines += [f"  {tx.label}: {tx.tx_hash} (block {tx.block}, gas {tx.gas_used:,})" for tx in result.transactions]
    emit(result.to_json(), "\n".join(lines), as_json)


def parse_amount(text: str, token: Token) -> int:
    """An amount typed by a person ("1500" base units, or "1.5 tokens") in `token`'s base units."""
    with refusals():
        decimals = token_info(token).decimals
    try:
        return render.parse_amount(text, decimals)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="AMOUNT") from None


def parse_gpu_class(text: str) -> int:
    """A GPU class given by id ("1") or name ("cpu-dev")."""
    if text.strip().isdecimal():
        return int(text)
    try:
        return class_by_name(text.strip()).id
    except (KeyError, ValueError):
        raise click.BadParameter(
            f"{text!r} is neither a class id nor a known class name (e.g. cpu-dev)", param_hint="--class"
        ) from None
