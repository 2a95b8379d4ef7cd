"""The ``gpumarket`` command line: one entry point, one subcommand group per concern."""

from __future__ import annotations

import click

from gpumarket import __version__
from gpumarket.actions.cli import market
from gpumarket.client.cli import client
from gpumarket.demo.cli import demo, demo_client, devnet
from gpumarket.measure.cli import bench
from gpumarket.oracle.cli import oracle
from gpumarket.provider.cli import provider
from gpumarket.signing.cli import report
from gpumarket.soak.cli import soak


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="gpumarket")
def main() -> None:
    """gpumarket: an open, permissionless market for GPU compute."""


main.add_command(report)
main.add_command(bench)
main.add_command(oracle)
main.add_command(provider)
main.add_command(client)
main.add_command(market)
main.add_command(demo)
main.add_command(devnet)
main.add_command(demo_client)
main.add_command(soak)


if __name__ == "__main__":  # pragma: no cover
    main()
