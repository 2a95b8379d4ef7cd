"""A provider's moves on the market, from an ape account.

    ape run provider register --class cpu-dev --gpus 1 --price 1000 --endpoint https://host:8700 \\
        --network ethereum:local:foundry --account TEST::2
    ape run provider stake "1000 tokens" --yes --network ... --account TEST::2
    ape run provider unstake "250 tokens" --network ... --account TEST::2
    ape run provider withdraw --network ... --account TEST::2        # after the release time
    ape run provider update --price 900 --network ... --account TEST::2
    ape run provider status [--address 0x...] [--json] --network ...

Amounts are stake-token base units, or whole tokens with "tokens" ("1.5 tokens"). Every
check (balance, allowance, free stake, release time, the claim's ranges) and every message
is gpumarket.actions.provider's; a missing allowance is offered for approval (--yes
approves without asking). The market comes from deployments/<network>.json (--deployment).
"""

from __future__ import annotations

from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, account_option
from scripts._support import (
    approve_option,
    deployment_block,
    deployment_option,
    emit,
    emit_result,
    json_option,
    open_market,
    parse_amount,
    parse_gpu_class,
    refusals,
    run_action,
    with_approval,
)

from gpumarket.actions import provider as actions


@click.group()
def cli() -> None:
    """Provider: register, update, stake, unstake, withdraw, status."""


@cli.command(cls=ConnectedProviderCommand)
@account_option()
@deployment_option
@click.option("--class", "gpu_class", required=True, help="GPU class id or name (e.g. 1 or cpu-dev).")
@click.option("--gpus", "gpu_count", required=True, type=int, help="GPUs the machine offers.")
@click.option("--price", required=True, type=int, help="Price per GPU-second, payment-token base units.")
@click.option("--endpoint", required=True, help="The agent's public URL (http(s)://host:port).")
@json_option
def register(
    network,
    account,
    deployment_path: Path | None,
    gpu_class: str,
    gpu_count: int,
    price: int,
    endpoint: str,
    as_json: bool,
) -> None:
    """Register the account as a provider (verified once the committee measures it)."""
    market = open_market(network, account, deployment_path)
    class_id = parse_gpu_class(gpu_class)
    emit_result(run_action(lambda: actions.register(market, class_id, gpu_count, price, endpoint), "register"), as_json)


@cli.command(cls=ConnectedProviderCommand)
@account_option()
@deployment_option
@click.option("--class", "gpu_class", default=None, help="New GPU class id or name (voids the verification).")
@click.option("--gpus", "gpu_count", type=int, default=None, help="New GPU count (voids the verification).")
@click.option("--price", type=int, default=None, help="New price per GPU-second, payment-token base units.")
@click.option("--endpoint", default=None, help="New public URL of the agent.")
@json_option
def update(
    network,
    account,
    deployment_path: Path | None,
    gpu_class: str | None,
    gpu_count: int | None,
    price: int | None,
    endpoint: str | None,
    as_json: bool,
) -> None:
    """Change the claim, price or endpoint; what is not given stays as it is."""
    market = open_market(network, account, deployment_path)
    class_id = None if gpu_class is None else parse_gpu_class(gpu_class)
    emit_result(
        run_action(
            lambda: actions.update(market, gpu_class=class_id, gpu_count=gpu_count, price=price, endpoint=endpoint),
            "update",
        ),
        as_json,
    )


@cli.command(cls=ConnectedProviderCommand)
@account_option()
@deployment_option
@click.argument("amount")
@approve_option
@json_option
def stake(network, account, deployment_path: Path | None, amount: str, approve: bool, as_json: bool) -> None:
    """Add AMOUNT of the stake token to the free stake (offers the approval it needs)."""
    market = open_market(network, account, deployment_path)
    value = parse_amount(amount, market.stake_token)
    emit_result(with_approval(lambda yes: actions.stake(market, value, approve=yes), approve, "stake"), as_json)


@cli.command(cls=ConnectedProviderCommand)
@account_option()
@deployment_option
@click.argument("amount")
@json_option
def unstake(network, account, deployment_path: Path | None, amount: str, as_json: bool) -> None:
    """Start unbonding AMOUNT of free stake (withdrawable after the unbonding period)."""
    market = open_market(network, account, deployment_path)
    value = parse_amount(amount, market.stake_token)
    emit_result(run_action(lambda: actions.request_unstake(market, value), "unstake"), as_json)


@cli.command(cls=ConnectedProviderCommand)
@account_option()
@deployment_option
@json_option
def withdraw(network, account, deployment_path: Path | None, as_json: bool) -> None:
    """Pay out the unbonding stake once its release time has passed."""
    market = open_market(network, account, deployment_path)
    emit_result(run_action(lambda: actions.withdraw(market), "withdraw"), as_json)


@cli.command(cls=ConnectedProviderCommand)
@account_option(prompt=False)
@deployment_option
@click.option("--address", default=None, help="The provider to show (default: --account's address).")
@json_option
def status(network, account, deployment_path: Path | None, address: str | None, as_json: bool) -> None:
    """Stake (free, locked, unbonding and its release), verification, jobs, claimable balances."""
    if address is None and account is None:
        raise click.UsageError("give --address or --account")
    market = open_market(network, None, deployment_path)
    with refusals():
        state = actions.status(
            market, address or account.address, from_block=deployment_block(network, deployment_path)
        )
    emit(state.to_json(), state.render(), as_json)
