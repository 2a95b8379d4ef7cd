"""The ``gpumarket`` command line: one entry point, one subcommand group per concern.

The core install (``pip install gpumarket``) runs the oracle, the provider and the client. A
command that needs an extra imports it when it runs, never at start, so every command's --help
works without it; running one without its extra ends in one line naming the extra to install.
"""

from __future__ import annotations

from typing import Any

import click

from gpumarket import __version__
from gpumarket.actions.cli import market
from gpumarket.client.cli import client
from gpumarket.dashboard.cli import dashboard
from gpumarket.demo.cli import demo, demo_client, devnet
from gpumarket.marketbench.cli import market as bench_market
from gpumarket.measure.cli import bench
from gpumarket.oracle.cli import oracle
from gpumarket.provider.cli import provider
from gpumarket.signing.cli import report
from gpumarket.soak.cli import soak

# Top-level modules only an extra installs -> (their package, that extra); see pyproject.toml.
EXTRA_OF_MODULE = {
    "eth_tester": ("eth-tester", "demo"),
    "eth": ("py-evm", "demo"),
    "ape": ("eth-ape", "dev"),
    "vyper": ("vyper", "dev"),
    "boa": ("titanoboa", "dev"),
    "hypothesis": ("hypothesis", "dev"),
    "torch": ("torch", "gpu"),
}


def missing_extra(error: ModuleNotFoundError) -> tuple[str, str] | None:
    """(package, extra) that installs the module `error` could not import; None if no extra does."""
    return EXTRA_OF_MODULE.get((error.name or "").partition(".")[0])


class _Main(click.Group):
    """The top-level group: a missing extra's import becomes an error naming the extra, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as error:
            missing = missing_extra(error)
            if missing is None:
                raise
            package, extra = missing
            raise click.ClickException(
                f"this command needs the {extra} extra ({package} is not installed): pip install 'gpumarket[{extra}]'"
            ) from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="gpumarket")
def main() -> None:
    """gpumarket: an open, permissionless market for GPU compute."""


bench.add_command(bench_market)  # `gpumarket bench market` (gpumarket.marketbench)
main.add_command(report)
main.add_command(bench)
main.add_command(oracle)
main.add_command(provider)
main.add_command(client)
main.add_command(market)
main.add_command(dashboard)
main.add_command(demo)
main.add_command(devnet)
main.add_command(demo_client)
main.add_command(soak)


if __name__ == "__main__":  # pragma: no cover
    main()
