"""The protocol end to end on an embedded local chain: `ape run walkthrough` (or `make walkthrough`).

Deploys with mock tokens, then a provider registers and stakes, the 2-of-3 test committee
verifies its hardware, a client's job is accepted, reported COMPLETED and settled by a
keeper, everyone claims and the provider unstakes. Prints each step with its gas, ends
with a balance table and a conservation check, and exits non-zero on any deviation.

The default network is ethereum:local:test (py-evm), whose receipts carry real gas (21,000
base included). The deploy goes through the provider's JSON-RPC connection (gpumarket.chain.deploy),
so titanoboa's in-process provider (ethereum:local:boa), which has none, is refused.
"""

from __future__ import annotations

from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, network_option
from ape.logging import LogLevel, logger

from gpumarket.chain.params import ParamsError, load_params, params_path_for
from gpumarket.chain.walkthrough import Actors, WalkthroughError, run_walkthrough


@click.command(cls=ConnectedProviderCommand)
@network_option(default="ethereum:local:test")
@click.option(
    "--params",
    "params_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Parameters YAML (default: deploy/params/<ecosystem>-<network>.yaml, else default.yaml).",
)
def cli(ecosystem, network, provider, params_file: Path | None) -> None:
    """Walk through one job's whole life on a local chain."""
    from ape import accounts

    if provider.name == "boa":
        raise click.ClickException(
            "the walkthrough deploys over JSON-RPC, which titanoboa's in-process provider lacks:"
            " use --network ethereum:local:test (the default) or ethereum:local:foundry"
        )
    if not network.is_dev:
        raise click.ClickException(
            f"the walkthrough mints mock tokens and time-travels: local networks only, not {network.name!r}"
        )
    test_accounts = accounts.test_accounts
    actors = Actors(
        owner=test_accounts[0],
        treasury=test_accounts[1],
        provider=test_accounts[2],
        client=test_accounts[3],
        keeper=test_accounts[4],
    )
    params_file = params_file or params_path_for(ecosystem.name, network.name)
    click.echo(f"gpumarket walkthrough on {ecosystem.name}:{network.name}:{provider.name} (params {params_file})")
    click.echo("")
    previous_level = logger.level
    logger.set_level(LogLevel.WARNING)  # ape's per-transaction lines would bury the story
    try:
        run_walkthrough(actors, load_params(params_file), echo=click.echo)
    except (ParamsError, WalkthroughError) as error:
        raise click.ClickException(f"walkthrough failed: {error}") from None
    finally:
        logger.set_level(previous_level)
