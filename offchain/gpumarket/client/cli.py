"""`gpumarket client ...`: the market's client on the command line.

    gpumarket client --config gpumarket.toml providers --class cpu-dev --max-price 1000000000000
    gpumarket client submit --spec job.json --class cpu-dev --max-price 1000 --max-duration 600 --key K
    gpumarket client jobs                           # every job of the --key account, and what to do next
    gpumarket client send-spec 7 --spec job.json    # hand over (again) the spec of an accepted job
    gpumarket client status 7 --json
    gpumarket client result 7 --out result/
    gpumarket client cancel 7 [--expire]
    gpumarket client claim

--config, --rpc, --deployment and --key go before or after the subcommand; --json after it.
The commands run through gpumarket.actions.cli's Session, as the provider's and the market's
do: a node that does not answer, a deployment whose contract is not on the node, a key that
cannot be loaded, a refused action, each exits 1 with what to do ({"error", "message", "hint"}
on stdout under --json), never with a traceback. An embedding program (or a test) may pass a
ClientEnv with a ready `w3` as click's obj (the embedded chain lives in one process).

A job is paid for once it exists. From then on, whatever stops `submit` or `send-spec` (Ctrl-C,
a wait that timed out, the node or the provider going away) ends with the job's id and the
commands that finish it (`send-spec`, `status`, `result`, `jobs`, `cancel`); Ctrl-C exits 130.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from web3 import Web3

from gpumarket.actions import jobs, render
from gpumarket.actions.cli import (
    ActionFailed,
    Session,
    chain_options,
    claim_command,
    group_chain_options,
    parse_gpu_class,
    preset_connection,
)
from gpumarket.actions.common import ActionResult, token_info
from gpumarket.actions.errors import ActionError
from gpumarket.agentapi.client import PROBE_TIMEOUTS, HttpTimeouts
from gpumarket.agentapi.spec import AnyJobSpec, SpecError, parse_spec
from gpumarket.chain.limits import MAX_ACCEPT_WINDOW, MAX_GPUS, MAX_JOB_DURATION, MAX_PRICE
from gpumarket.chain.models import JobState
from gpumarket.client.choose import JobRequirements, ProviderOffer, choose_provider, choose_providers, list_providers
from gpumarket.client.jobs import JobClient, JobUpdate

__all__ = ["ClientEnv", "client"]

# Seconds: a wait or a timeout of zero or less means nothing.
_SECONDS = click.FloatRange(min=0, min_open=True)


@dataclass
class ClientEnv:
    """Click's obj for the group: the provider HTTP timeouts, and a node connection an embedding
    program may preset (used unless --rpc names a node)."""

    w3: Web3 | None = None
    timeouts: HttpTimeouts = field(default_factory=HttpTimeouts)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@group_chain_options
@click.option(
    "--connect-timeout", default=5.0, show_default=True, type=_SECONDS, help="Seconds to reach a provider's agent."
)
@click.option(
    "--read-timeout", default=30.0, show_default=True, type=_SECONDS, help="Seconds to wait for a provider's answer."
)
@click.pass_context
def client(ctx: click.Context, connect_timeout: float, read_timeout: float) -> None:
    """Choose providers, submit jobs, follow them and fetch their results.

    --config, --rpc, --deployment and --key go before or after the subcommand."""
    env = ctx.obj if isinstance(ctx.obj, ClientEnv) else ClientEnv()
    env.timeouts = HttpTimeouts(connect_timeout, read_timeout)
    if env.w3 is not None:
        preset_connection(ctx, env.w3)
    ctx.obj = env


# The client's claim is the provider's: one command for both (gpumarket.actions.cli).
client.add_command(claim_command)


def _job_client(env: ClientEnv, session: Session) -> JobClient:
    key = session.key("needs the client's key (it names the client and signs the requests to the provider)")
    return JobClient(session.market(signed=True), key, timeouts=env.timeouts, from_block=session.deployment().block)


def _read_spec(path: Path) -> AnyJobSpec:
    try:
        return parse_spec(path.read_bytes())
    except (SpecError, OSError) as error:
        raise ActionError(
            f"{path}: not a usable job spec: {error}", "fix the spec (docs/job-spec.md)", code="bad_spec"
        ) from None


def _resume_hint(job_id: int, spec_path: Path) -> str:
    """How to finish a job that exists (and is paid for) after its command stopped short."""
    return (
        f"job {job_id} exists and its escrow is locked until it ends: hand its spec over with `gpumarket client"
        f" send-spec {job_id} --spec {spec_path} --wait` (it waits for a provider to accept first), follow it with"
        f" `gpumarket client status {job_id}`, fetch it with `gpumarket client result {job_id} --out DIR`;"
        " `gpumarket client jobs` lists your jobs with what to do next (each with the same --rpc, --deployment"
        " and --key, or --config)"
    )


# Refusals whose own hint only says how to finish the job: the resume hint replaces it (said once).
_FINISHED_BY_RESUMING = frozenset({"job_not_accepted"})


@contextmanager
def _finishing(session: Session, job_id: int, hint: str, details: dict[str, Any]) -> Iterator[None]:
    """Whatever stops the rest of a paid job's command ends with the job's id and `hint` (how
    to finish it), never with a traceback or click's bare "Aborted!"."""
    try:
        yield
    except KeyboardInterrupt:
        error = ActionError(
            f"interrupted: job {job_id} is not finished",
            hint,
            code="interrupted",
            details={"job_id": job_id, **details},
        )
        raise ActionFailed(error, session.as_json, exit_code=130) from None
    except ActionFailed as failed:
        known = failed.error
        message = known.message if f"job {job_id}" in known.message else f"job {job_id}: {known.message}"
        if known.hint and known.code not in _FINISHED_BY_RESUMING:
            hint = f"{known.hint}; then: {hint}"
        error = ActionError(message, hint, code=known.code, details={**known.details, "job_id": job_id, **details})
        raise ActionFailed(error, session.as_json) from None


def _requirements_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed(
        [
            click.option("--class", "gpu_class", required=True, help="GPU class name (e.g. cpu-dev) or id."),
            click.option("--gpus", "gpu_count", default=1, show_default=True, type=click.IntRange(1, MAX_GPUS)),
            click.option(
                "--max-price",
                required=True,
                type=click.IntRange(1, MAX_PRICE),
                help="Payment base units per GPU-second.",
            ),
            click.option(
                "--max-duration", required=True, type=click.IntRange(1, MAX_JOB_DURATION), help="Seconds of paid time."
            ),
        ]
    ):
        func = decorator(func)
    return func


# ---------------------------------------------------------------------------- providers


def _offer_row(offer: ProviderOffer, payment: Any) -> tuple[Any, ...]:
    standing = ("verified" if offer.verified else "unverified") + ("  JAILED" if offer.jailed else "")
    agent = "not asked" if offer.agent is None else offer.agent.describe()
    return (
        offer.address,
        offer.gpu_class,
        f"{offer.free_gpus} of {offer.gpu_count} free",
        render.amount(offer.price_per_gpu_second, payment.decimals, payment.symbol),
        offer.measured_throughput,
        standing,
        agent,
        offer.endpoint,
    )


@client.command()
@click.option("--class", "gpu_class", default=None, help="Only the candidates for this job (with --max-price).")
@click.option("--gpus", "gpu_count", default=1, show_default=True, type=click.IntRange(1, MAX_GPUS))
@click.option("--max-price", default=None, type=click.IntRange(1, MAX_PRICE), help="Payment base units per GPU-second.")
@click.option("--max-duration", default=3600, show_default=True, type=click.IntRange(1, MAX_JOB_DURATION))
@chain_options
def providers(
    session: Session, gpu_class: str | None, gpu_count: int, max_price: int | None, max_duration: int
) -> None:
    """List registered providers with their agents (up, GPUs free); with --class and
    --max-price, only those that can take the job now, best first."""
    if (gpu_class is None) != (max_price is None):
        raise click.UsageError("--class and --max-price go together: they describe the job to find candidates for")
    requirements = (
        None
        if gpu_class is None or max_price is None
        else JobRequirements(parse_gpu_class(gpu_class), gpu_count, max_price, max_duration)
    )

    def run() -> tuple[list[ProviderOffer], Any]:
        market = session.market(signed=False)
        offers = list_providers(market, from_block=session.deployment().block, probe=PROBE_TIMEOUTS)
        if requirements is not None:
            offers = choose_providers(market, requirements, offers=offers)  # the agents were asked already
        return offers, token_info(market.payment_token)

    offers, payment = session.run(run)
    empty = (
        "no provider is registered on this market"
        if requirements is None
        else (
            "no provider can take this job now: it needs one of the class, with the GPUs free, verified, not jailed, at"
            " most --max-price, with free stake for the collateral, and an agent that answers with the GPUs free"
        )
    )
    text = render.table(
        ["provider", "class", "gpus", "price per GPU-second", "throughput", "standing", "agent", "endpoint"],
        [_offer_row(offer, payment) for offer in offers],
        empty=empty,
    )
    session.emit([offer.to_json() for offer in offers], text)


# ---------------------------------------------------------------------------- submit, send-spec


@client.command()
@click.option("--spec", "spec_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_requirements_options
@click.option("--provider", default=None, help="Direct the job to this provider (default: the best candidate).")
@click.option("--open", "open_job", is_flag=True, help="Create an open job any qualified provider may accept.")
@click.option(
    "--accept-window",
    default=600,
    show_default=True,
    type=click.IntRange(1, MAX_ACCEPT_WINDOW),
    help="Seconds a provider has to accept the job.",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait for acceptance, then send the spec (--no-wait: send it later with send-spec).",
)
@click.option("--wait-timeout", default=120.0, show_default=True, type=_SECONDS, help="Seconds to wait for acceptance.")
@chain_options
@click.pass_obj
def submit(
    env: ClientEnv,
    session: Session,
    spec_path: Path,
    gpu_class: str,
    gpu_count: int,
    max_price: int,
    max_duration: int,
    provider: str | None,
    open_job: bool,
    accept_window: int,
    wait: bool,
    wait_timeout: float,
) -> None:
    """Create a job for the spec in FILE; by default wait until it is accepted and send the spec."""
    if provider is not None and open_job:
        raise click.UsageError("--provider and --open exclude each other")
    spec = session.run(lambda: _read_spec(spec_path))
    requirements = JobRequirements(parse_gpu_class(gpu_class), gpu_count, max_price, max_duration)

    def create() -> ActionResult:
        market = session.market(signed=True)
        target = provider
        if target is None and not open_job:
            target = choose_provider(market, requirements, from_block=session.deployment().block).address
        # The action checks what the chain would refuse and whether a directed provider's agent can
        # start the job, before anything is sent. Submitting is the client's consent to escrow: it
        # approves exactly that amount.
        return jobs.create(
            market,
            spec,
            gpu_class=requirements.gpu_class,
            gpu_count=gpu_count,
            max_price=max_price,
            max_duration=max_duration,
            provider=target,
            accept_window=accept_window,
            approve=True,
            from_block=session.deployment().block,
        )

    try:
        created = session.run(create, "submit")
    except KeyboardInterrupt:
        error = ActionError(
            "interrupted while creating the job",
            "it may exist already: `gpumarket client jobs` lists your jobs with what to do next",
            code="interrupted",
        )
        raise ActionFailed(error, session.as_json, exit_code=130) from None
    job_id = created.details["job_id"]
    document: dict[str, Any] = {**created.to_json(), "spec_sent": False}
    if not wait:
        document["next"] = (
            f"once a provider accepts it, hand over the spec: `gpumarket client send-spec {job_id}"
            f" --spec {spec_path} --wait` (waits for the acceptance)"
        )
        session.emit(document, f"{created.summary}\nspec not sent yet: {document['next']}")
        return
    with _finishing(session, job_id, _resume_hint(job_id, spec_path), {"spec_sent": False}):
        # The id first, on stderr (stdout stays one document under --json): the job is paid for now.
        click.echo(
            f"{created.summary}; waiting up to {wait_timeout:g} s for "
            f"{created.details['provider'] or 'a provider'} to accept it (Ctrl-C stops waiting, the job stays)",
            err=True,
        )
        job_client = session.run(lambda: _job_client(env, session))
        session.run(lambda: job_client.wait_running(job_id, timeout_s=wait_timeout))
        sent = session.run(
            lambda: jobs.send_spec(
                job_client.market, job_id, spec, timeouts=env.timeouts, from_block=job_client.from_block
            )
        )
    document.update(spec_sent=True, agent_state=sent.details["agent_state"], next=_follow_hint(job_id))
    session.emit(document, f"{created.summary}\n{sent.summary}\nnext: {document['next']}")


def _follow_hint(job_id: int) -> str:
    return (
        f"follow it with `gpumarket client status {job_id}`; once finished, `gpumarket client result {job_id}"
        " --out DIR` fetches the checked result"
    )


def _follow(job_client: JobClient, job_id: int, timeout_s: float) -> JobUpdate:
    """Follow the job until its provider finished it (or it ended on chain); each change on stderr."""
    last = None
    for last in job_client.follow(job_id, timeout_s=timeout_s):
        click.echo(last.describe(), err=True)
    assert last is not None  # follow yields at least the first look
    return last


@client.command("send-spec")
@click.argument("job_id", type=click.IntRange(1))
@click.option(
    "--spec",
    "spec_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The spec the job was created with (it must hash to the job's on-chain spec_hash).",
)
@click.option(
    "--wait",
    is_flag=True,
    help="Wait for a provider to accept the job if it is still open; after sending, wait until it finishes.",
)
@click.option("--wait-timeout", default=600.0, show_default=True, type=_SECONDS, help="Seconds each wait may take.")
@chain_options
@click.pass_obj
def send_spec(env: ClientEnv, session: Session, job_id: int, spec_path: Path, wait: bool, wait_timeout: float) -> None:
    """Send (or send again) the spec of job JOB_ID, signed, to the provider that accepted it: for a
    job created with `submit --no-wait`, or whose submit stopped before the spec went out."""
    spec = session.run(lambda: _read_spec(spec_path))
    job_client = session.run(lambda: _job_client(env, session))
    job = session.run(lambda: jobs.check_spec(job_client.market, job_id, spec, open_ok=wait))
    with _finishing(session, job_id, _resume_hint(job_id, spec_path), {"spec_sent": False}):
        if job.state == JobState.OPEN:
            click.echo(
                f"job {job_id} is open: waiting up to {wait_timeout:g} s for a provider to accept it"
                " (Ctrl-C stops waiting, the job stays)",
                err=True,
            )
            session.run(lambda: job_client.wait_running(job_id, timeout_s=wait_timeout))
        sent = session.run(
            lambda: jobs.send_spec(
                job_client.market, job_id, spec, timeouts=env.timeouts, from_block=job_client.from_block
            )
        )
    document: dict[str, Any] = {**sent.to_json(), "spec_sent": True, "next": _follow_hint(job_id)}
    text = [sent.summary]
    if wait:
        with _finishing(session, job_id, _follow_hint(job_id), {"spec_sent": True}):
            update = session.run(lambda: _follow(job_client, job_id, wait_timeout))
        document.update(agent_state=update.provider_state, update=update.to_json())
        text.append(update.describe())
        if update.provider_state == "finished":
            document["next"] = f"fetch and check the result: `gpumarket client result {job_id} --out DIR`"
    text.append(f"next: {document['next']}")
    session.emit(document, "\n".join(text))


# ---------------------------------------------------------------------------- follow, fetch, end


@client.command("jobs")
@click.argument("address", required=False)
@click.option("--active", is_flag=True, help="Only the OPEN and RUNNING jobs.")
@chain_options
@click.pass_obj
def jobs_command(env: ClientEnv, session: Session, address: str | None, active: bool) -> None:
    """Every job of the --key account (or ADDRESS): state, provider, escrow, deadline, what the
    provider's agent says, and what to do next."""

    def run() -> jobs.ClientJobs:
        who = address or session.key("lists the --key account's jobs (or give ADDRESS)").address
        return jobs.list_jobs(
            session.market(signed=False),
            who,
            from_block=session.deployment().block,
            agent_timeouts=env.timeouts,
            active_only=active,
        )

    listing = session.run(run)
    session.emit(listing.to_json(), listing.render())


@client.command()
@click.argument("job_id", type=click.IntRange(1))
@chain_options
@click.pass_obj
def status(env: ClientEnv, session: Session, job_id: int) -> None:
    """The job on the chain and at its provider's agent, and what to do next."""
    state = session.run(
        lambda: jobs.status(
            session.market(signed=False), job_id, from_block=session.deployment().block, agent_timeouts=env.timeouts
        )
    )
    session.emit(state.to_json(), state.render())


@client.command()
@click.argument("job_id", type=click.IntRange(1))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@chain_options
@click.pass_obj
def result(env: ClientEnv, session: Session, job_id: int, out_dir: Path) -> None:
    """Fetch the result, verify it, and write its files under DIR."""
    bundle = session.run(lambda: _job_client(env, session).fetch_result(job_id))
    root = out_dir.resolve()
    written = []
    try:
        for name, raw in sorted(bundle.contents.items()):
            target = (root / name).resolve()
            if not target.is_relative_to(root):  # names are checked by the bundle model; stay inside anyway
                raise ActionError(
                    f"result file {name!r} would escape {root}", "do not use this result", code="result_mismatch"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(raw)
            written.append(name)
        (root / "manifest.json").write_text(json.dumps(bundle.manifest.model_dump(mode="json"), indent=2) + "\n")
    except OSError as error:  # not the node: this machine's files
        refusal = ActionError(
            f"cannot write the result under {root}: {error}", "give another --out folder", code="cannot_write"
        )
        raise ActionFailed(refusal, session.as_json) from None
    except ActionError as error:
        raise ActionFailed(error, session.as_json) from None
    document = {"job_id": job_id, "result_hash": "0x" + bundle.result_hash.hex(), "files": written}
    session.emit(
        document, f"job {job_id}: result 0x{bundle.result_hash.hex()} verified, {len(written)} file(s) in {root}"
    )


@client.command()
@click.argument("job_id", type=click.IntRange(1))
@click.option(
    "--expire",
    is_flag=True,
    help="Expire it instead (anyone may: an open job after its accept deadline, a running one after its"
    " paid time and the settle grace).",
)
@chain_options
def cancel(session: Session, job_id: int, expire: bool) -> None:
    """Cancel an open job of yours (or --expire one past its deadline); the escrow becomes claimable."""
    action = jobs.expire if expire else jobs.cancel
    session.emit_result(
        session.run(lambda: action(session.market(signed=True), job_id), "expire" if expire else "cancel")
    )
