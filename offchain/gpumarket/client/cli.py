"""`gpumarket client ...`: the market's client on the command line.

    gpumarket client --rpc http://127.0.0.1:8545 --deployment deployments/local.json \
        --key test-account:4 providers --class cpu-dev --json
    gpumarket client ... submit --spec job.json --class cpu-dev --max-price 1000 --max-duration 600
    gpumarket client ... status 7 --json
    gpumarket client ... result 7 --out result/
    gpumarket client ... cancel 7
    gpumarket client ... claim

--key takes a gpumarket.chain.keys spec (keystore:<alias>, passphrase from
$APE_ACCOUNTS_<alias>_PASSPHRASE; or test-account:<i> on local chains). Errors print their
hint and exit 1. An embedding program (or a test) may pass a ready `ClientEnv` as click's
`obj` to reuse a connection (the embedded chain lives in one process).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from web3 import Web3

from gpumarket.chain.connection import connect
from gpumarket.chain.errors import ChainError
from gpumarket.chain.keys import KeyLoadError, load_key
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment
from gpumarket.client.choose import JobRequirements, choose_providers, list_providers
from gpumarket.client.errors import ClientError
from gpumarket.client.http import HttpTimeouts
from gpumarket.client.jobs import JobClient
from gpumarket.config import ConfigError, resolve_settings
from gpumarket.actions import jobs
from gpumarket.actions.cli import parse_gpu_class
from gpumarket.actions.errors import ActionError
from gpumarket.provider.spec import SpecError, parse_spec

__all__ = ["ClientEnv", "client"]

log = logging.getLogger(__name__)


@dataclass
class ClientEnv:
    """What the commands work with; `w3` preset by an embedding program, or made from --rpc."""

    w3: Web3 | None = None
    deployment: MarketDeployment | None = None
    key_spec: str | None = None
    timeouts: HttpTimeouts = HttpTimeouts()

    def job_client(self) -> JobClient:
        if self.w3 is None or self.deployment is None:
            raise click.UsageError("--rpc and --deployment are required")
        if self.key_spec is None:
            raise click.UsageError("--key is required for this command")
        try:
            key = load_key(self.key_spec, w3=self.w3)
        except KeyLoadError as error:
            raise click.UsageError(str(error)) from None
        return JobClient(self.market(key), key, timeouts=self.timeouts, from_block=self.deployment.block)

    def market(self, key: Any = None) -> Market:
        """The deployment's market on the node; a clean error when the node serves another chain."""
        assert self.w3 is not None and self.deployment is not None
        try:
            return self.deployment.market_at(self.w3, signer=key)
        except ChainError as error:  # ChainMismatch: the wrong network for this deployment file
            raise click.ClickException(f"{error}: check --rpc and --deployment") from None


def _emit(as_json: bool, document: Any, text: str) -> None:
    click.echo(json.dumps(document, sort_keys=True) if as_json else text)


def _run(action: Any) -> Any:
    """Turn the client's and the chain's errors into a clean exit 1 with the hint."""
    try:
        return action()
    except ClientError as error:
        raise click.ClickException(str(error)) from None
    except (ChainError, SpecError, ValueError, OSError) as error:
        raise click.ClickException(f"{type(error).__name__}: {error}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Config file (TOML or YAML: rpc, deployment, key) [default: $GPUMARKET_CONFIG]; flags override it.")
@click.option("--rpc", default=None, help="Node URL (http(s)://...), or 'embedded' (a fresh in-process chain).")
@click.option("--deployment", "deployment_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="MarketDeployment JSON (written by the deploy step).")
@click.option("--key", "key_spec", default=None, help="keystore:<alias> or test-account:<i> (local chains).")
@click.option("--connect-timeout", default=5.0, show_default=True, help="Seconds to reach a provider.")
@click.option("--read-timeout", default=30.0, show_default=True, help="Seconds to wait for a provider's answer.")
@click.pass_context
def client(ctx: click.Context, config_path: Path | None, rpc: str | None, deployment_path: Path | None,
           key_spec: str | None, connect_timeout: float, read_timeout: float) -> None:
    """Choose providers, submit jobs, follow them and fetch their results."""
    env = ctx.obj if isinstance(ctx.obj, ClientEnv) else ClientEnv()
    try:
        settings = resolve_settings(config_path)
    except ConfigError as error:
        raise click.BadParameter(str(error), param_hint="--config") from None
    # Flags first, then what an embedding program preset, then the config file.
    rpc = rpc or (None if env.w3 is not None else settings.rpc)
    deployment_path = deployment_path or (None if env.deployment is not None else settings.deployment)
    key_spec = key_spec or env.key_spec or settings.key
    if rpc is not None:
        env.w3 = connect(rpc)
    if deployment_path is not None:
        try:
            env.deployment = MarketDeployment.read(deployment_path)
        except (ValueError, OSError) as error:
            raise click.BadParameter(str(error), param_hint="--deployment") from None
    env.key_spec = key_spec or env.key_spec
    env.timeouts = HttpTimeouts(connect_timeout, read_timeout)
    ctx.obj = env


def _requirements_options(func: Any) -> Any:
    for decorator in reversed([
        click.option("--class", "gpu_class", required=True, help="GPU class name (e.g. cpu-dev) or id."),
        click.option("--gpus", "gpu_count", default=1, show_default=True, type=click.IntRange(1, 65535)),
        click.option("--max-price", required=True, type=click.IntRange(1), help="Payment base units per GPU-second."),
        click.option("--max-duration", required=True, type=click.IntRange(1), help="Seconds of paid time."),
    ]):
        func = decorator(func)
    return func


@client.command()
@click.option("--class", "gpu_class", default=None, help="Only candidates for this job (with --max-price ...).")
@click.option("--gpus", "gpu_count", default=1, show_default=True, type=click.IntRange(1, 65535))
@click.option("--max-price", default=None, type=click.IntRange(1))
@click.option("--max-duration", default=3600, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="One JSON list on stdout.")
@click.pass_obj
def providers(env: ClientEnv, gpu_class: str | None, gpu_count: int, max_price: int | None, max_duration: int,
              as_json: bool) -> None:
    """List registered providers; with --class and --max-price, only those that can take the job, best first."""
    if env.w3 is None or env.deployment is None:
        raise click.UsageError("--rpc and --deployment are required")
    market = env.market()

    def run() -> list[Any]:
        offers = list_providers(market, from_block=env.deployment.block)  # type: ignore[union-attr]
        if gpu_class is None or max_price is None:
            return offers
        requirements = JobRequirements(parse_gpu_class(gpu_class), gpu_count, max_price, max_duration)
        return choose_providers(market, requirements, offers=offers)

    offers = _run(run)
    lines = [
        f"{o.address}  class {o.gpu_class}  gpus {o.gpu_count}  price {o.price_per_gpu_second}  "
        f"throughput {o.measured_throughput}  {'verified' if o.verified else 'unverified'}"
        f"{'  JAILED' if o.jailed else ''}  {o.endpoint}"
        for o in offers
    ]
    _emit(as_json, [o.to_json() for o in offers], "\n".join(lines) or "no providers")


@client.command()
@click.option("--spec", "spec_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_requirements_options
@click.option("--provider", default=None, help="Direct the job to this provider (default: the best candidate).")
@click.option("--open", "open_job", is_flag=True, help="Create an open job any qualified provider may accept.")
@click.option("--accept-window", default=600, show_default=True, type=click.IntRange(1))
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for acceptance, then send the spec.")
@click.option("--wait-timeout", default=120.0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def submit(env: ClientEnv, spec_path: Path, gpu_class: str, gpu_count: int, max_price: int, max_duration: int,
           provider: str | None, open_job: bool, accept_window: int, wait: bool, wait_timeout: float,
           as_json: bool) -> None:
    """Create a job for the spec in FILE; by default wait until it is accepted and send the spec."""
    job_client = env.job_client()
    spec = _run(lambda: parse_spec(spec_path.read_bytes()))
    requirements = JobRequirements(parse_gpu_class(gpu_class), gpu_count, max_price, max_duration)
    if provider is None and not open_job:
        ranked = _run(lambda: choose_providers(job_client.market, requirements, from_block=job_client.from_block))
        if not ranked:
            raise click.ClickException("no provider can take this job now (see `gpumarket client providers`)")
        provider = ranked[0].address
    # The role action checks what the chain would refuse (a directed provider unverified,
    # jailed or of another class; the balance) before anything is sent. Submitting is the
    # client's consent to escrow: it approves exactly that amount.
    try:
        created = jobs.create(job_client.market, spec, gpu_class=requirements.gpu_class, gpu_count=gpu_count,
                              max_price=max_price, max_duration=max_duration, provider=provider,
                              accept_window=accept_window, approve=True, from_block=job_client.from_block)
    except ActionError as error:
        raise click.ClickException(str(error)) from None
    job_id = created.details["job_id"]
    document: dict[str, Any] = {"job_id": job_id, "provider": provider, "spec_sent": False}
    if wait:
        _run(lambda: job_client.wait_running(job_id, timeout_s=wait_timeout))
        _run(lambda: job_client.send_spec(job_id, spec))
        document["spec_sent"] = True
    _emit(as_json, document, f"job {job_id} created" + (", spec sent" if document["spec_sent"] else ""))


@client.command()
@click.argument("job_id", type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def status(env: ClientEnv, job_id: int, as_json: bool) -> None:
    """The job's state on the chain and at its provider."""
    job_client = env.job_client()
    update = _run(lambda: job_client.update(job_id))
    _emit(as_json, update.to_json(), update.describe())


@client.command()
@click.argument("job_id", type=click.IntRange(1))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def result(env: ClientEnv, job_id: int, out_dir: Path, as_json: bool) -> None:
    """Fetch the result, verify it, and write its files under DIR."""
    job_client = env.job_client()
    bundle = _run(lambda: job_client.fetch_result(job_id))
    root = out_dir.resolve()
    written = []
    for name, raw in sorted(bundle.contents.items()):
        target = (root / name).resolve()
        if not target.is_relative_to(root):  # names are checked by the bundle model; stay inside anyway
            raise click.ClickException(f"result file {name!r} would escape {root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(raw)
        written.append(name)
    (root / "manifest.json").write_text(json.dumps(bundle.manifest.model_dump(mode="json"), indent=2) + "\n")
    document = {"job_id": job_id, "result_hash": "0x" + bundle.result_hash.hex(), "files": written}
    _emit(as_json, document, f"job {job_id}: result 0x{bundle.result_hash.hex()} verified, {len(written)} file(s) in {root}")


@client.command()
@click.argument("job_id", type=click.IntRange(1))
@click.option("--expire", is_flag=True, help="Expire it (anyone may, once its accept deadline passed).")
@click.pass_obj
def cancel(env: ClientEnv, job_id: int, expire: bool) -> None:
    """Cancel an open job (or --expire one nobody accepted in time); the escrow becomes claimable."""
    job_client = env.job_client()
    tx = _run(lambda: job_client.expire(job_id) if expire else job_client.cancel(job_id))
    click.echo(f"job {job_id} {'expired' if expire else 'cancelled'} (tx {tx.tx_hash}); run `claim` for the refund")


@client.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def claim(env: ClientEnv, as_json: bool) -> None:
    """Withdraw everything the market credited to this account."""
    job_client = env.job_client()
    claimed = _run(job_client.claim)
    _emit(as_json, {token: str(amount) for token, amount in claimed.items()},
          "\n".join(f"claimed {amount} of {token}" for token, amount in claimed.items()) or "nothing to claim")
