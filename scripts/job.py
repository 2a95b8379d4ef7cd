"""A client's jobs on the market, from an ape account.

    ape run job create --spec job.json --class cpu-dev --gpus 1 --max-price 1000 --max-duration 600 \\
        [--provider 0x...] [--yes] --network ethereum:local:foundry --account TEST::4
    ape run job status 1 [--json] --network ...
    ape run job cancel 1 --network ... --account TEST::4          # an OPEN job of yours
    ape run job claim --network ... --account TEST::4             # refunds and payments credited

`create` escrows max-price x gpus x max-duration of the payment token, checks the balance,
the allowance (offering the approval; --yes approves without asking) and, for a job
directed to a provider, that the provider can accept it (registered, verified, not jailed,
its class, GPUs and price). The checks and messages are gpumarket.actions.jobs'; handing
the spec to the provider's agent is `gpumarket client submit`'s job, not this script's.
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
    parse_gpu_class,
    refusals,
    run_action,
    with_approval,
)

from gpumarket.actions import jobs as actions
from gpumarket.agentapi.spec import SpecError, parse_spec


@click.group()
def cli() -> None:
    """Client: create, cancel, status, claim."""


@cli.command(cls=ConnectedProviderCommand)
@account_option()
@deployment_option
@click.option(
    "--spec",
    "spec_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The job spec (JSON, docs/job-spec.md); its hash goes on chain.",
)
@click.option("--class", "gpu_class", required=True, help="GPU class id or name (e.g. 1 or cpu-dev).")
@click.option("--gpus", "gpu_count", type=int, default=1, show_default=True, help="GPUs the job needs.")
@click.option("--max-price", type=int, required=True, help="Highest price per GPU-second, payment base units.")
@click.option("--max-duration", type=int, required=True, help="Longest paid run, seconds.")
# Not named `provider`: ConnectedProviderCommand passes ape's provider under that name.
@click.option(
    "--provider",
    "provider_address",
    default=None,
    help="Direct the job to this provider's address (default: open to any).",
)
@click.option(
    "--accept-window",
    type=int,
    default=600,
    show_default=True,
    help="Seconds a provider has to accept before anyone may expire the job.",
)
@approve_option
@json_option
def create(
    network,
    account,
    deployment_path: Path | None,
    spec_path: Path,
    gpu_class: str,
    gpu_count: int,
    max_price: int,
    max_duration: int,
    provider_address: str | None,
    accept_window: int,
    approve: bool,
    as_json: bool,
) -> None:
    """Escrow the job's most it can cost and create it (offers the approval it needs)."""
    try:
        spec = parse_spec(spec_path.read_bytes())
    except SpecError as error:
        raise click.BadParameter(str(error), param_hint="--spec") from None
    market = open_market(network, account, deployment_path)
    class_id = parse_gpu_class(gpu_class)
    from_block = deployment_block(network, deployment_path)
    result = with_approval(
        lambda yes: actions.create(
            market,
            spec,
            gpu_class=class_id,
            gpu_count=gpu_count,
            max_price=max_price,
            max_duration=max_duration,
            provider=provider_address,
            accept_window=accept_window,
            approve=yes,
            from_block=from_block,
        ),
        approve,
        "create",
    )
    emit_result(result, as_json)


@cli.command(cls=ConnectedProviderCommand)
@account_option()
@deployment_option
@click.argument("job_id", type=int)
@json_option
def cancel(network, account, deployment_path: Path | None, job_id: int, as_json: bool) -> None:
    """Cancel your OPEN job JOB_ID; its escrow becomes claimable."""
    market = open_market(network, account, deployment_path)
    emit_result(run_action(lambda: actions.cancel(market, job_id), "cancel"), as_json)


@cli.command(cls=ConnectedProviderCommand)
@deployment_option
@click.argument("job_id", type=int)
@json_option
def status(network, deployment_path: Path | None, job_id: int, as_json: bool) -> None:
    """The job's terms, state, deadlines, settlement and what comes next."""
    market = open_market(network, None, deployment_path)
    with refusals():
        state = actions.status(market, job_id, from_block=deployment_block(network, deployment_path))
    emit(state.to_json(), state.render(), as_json)


@cli.command(cls=ConnectedProviderCommand)
@account_option()
@deployment_option
@json_option
def claim(network, account, deployment_path: Path | None, as_json: bool) -> None:
    """Withdraw everything the market credited to the account (refunds, payments)."""
    market = open_market(network, account, deployment_path)
    emit_result(run_action(lambda: actions.claim(market), "claim"), as_json)
