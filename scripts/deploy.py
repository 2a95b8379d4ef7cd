"""Deploy a GpuMarket on any ape network from a parameters YAML.

    ape run deploy --network ethereum:local:test --account TEST::0 --deploy-mock-tokens
    ape run deploy --network ethereum:sepolia:node --account <alias>

The parameters come from --params, else deploy/params/<ecosystem>-<network>.yaml, else
deploy/params/default.yaml; they are validated before anything is sent. The deployment
is printed and written to deployments/<network>.json. The logic lives in
gpumarket.chain.deploy (ape's connection and account handed to the deploy that
`gpumarket market deploy` runs); this script only parses options. The default network is
ethereum:local:test: titanoboa (ape's ethereum:local) has no JSON-RPC connection to send through.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from ape.cli import ConnectedProviderCommand, account_option, network_option

from gpumarket.chain.ape_bridge import BridgeError
from gpumarket.chain.deploy import DeploymentError, deploy_market, write_deployment
from gpumarket.chain.errors import ChainError
from gpumarket.chain.params import ParamsError, load_params, params_path_for


@click.command(cls=ConnectedProviderCommand)
@network_option(default="ethereum:local:test")
@account_option()
@click.option(
    "--params",
    "params_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Parameters YAML (default: deploy/params/<ecosystem>-<network>.yaml, else default.yaml).",
)
@click.option(
    "--deploy-mock-tokens",
    is_flag=True,
    help="Deploy fresh MockTokens for both tokens, whatever the YAML says (local networks only).",
)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("deployments"),
    show_default=True,
    help="Where deployments/<network>.json is written.",
)
def cli(ecosystem, network, account, params_file: Path | None, deploy_mock_tokens: bool, out_dir: Path) -> None:
    """Deploy GpuMarket, set its GPU classes and parameters, and record the deployment."""
    params_file = params_file or params_path_for(ecosystem.name, network.name)
    try:
        params = load_params(params_file)
        click.echo(f"params: {params_file}")
        deployment, _ = deploy_market(
            params,
            account,
            deploy_mock_tokens=deploy_mock_tokens,
            params_file=params_file,
            report=click.echo,
        )
    except (ParamsError, DeploymentError, BridgeError, ChainError) as error:
        raise click.ClickException(str(error)) from None
    path = write_deployment(deployment, out_dir)
    click.echo(json.dumps(deployment.to_json(), indent=2))
    click.echo(f"written to {path}")
