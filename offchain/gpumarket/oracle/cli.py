"""``gpumarket oracle ...``: run the oracle's services.

``gpumarket oracle run`` is the oracle service (gpumarket.oracle.service.OracleService): it
follows the market, verifies providers' hardware, challenges and settles running jobs and
serves its API, until SIGINT or SIGTERM (exit 0), or exit 1 when the chain follower gave up
(the node stayed down too long, or the chain changed under it). ``--key`` signs reports;
``--sender`` (default: the same key) pays for the settlement transactions. ``--registry
HOST=URL`` (repeat) names the image registries it checks container jobs' images on
(gpumarket.oracle.images).

``gpumarket oracle serve-api`` serves the HTTP API over a decision store (health, metrics,
signed reports, peers' signature pushes) until SIGINT or SIGTERM. The key is an ape keystore
account (``--key-alias``, passphrase from ``APE_ACCOUNTS_<alias>_PASSPHRASE``) or, on a local
chain, a public test key (``--test-key N``). ``--member``/``--threshold``/``--epoch`` record
a committee in the store (the chain follower does this in ``oracle run``). The listening URL
is logged as ``oracle API listening on http://HOST:PORT``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import click

from gpumarket.actions.cli import connection_options, service_settings
from gpumarket.chain.connection import connect
from gpumarket.chain.errors import ChainError
from gpumarket.chain.keys import KeyLoadError, ServiceKey, load_key, load_keystore, test_oracle
from gpumarket.chain.market_deploy import MarketDeployment
from gpumarket.containers.registry import registry_map
from gpumarket.lifecycle import serve_until_signalled, stop_on_signals
from gpumarket.oracle.api import ApiConfig, OracleAPI
from gpumarket.oracle.hardware import HardwareConfig
from gpumarket.oracle.jobs import JobConfig
from gpumarket.oracle.metrics import OracleMetrics
from gpumarket.oracle.service import OracleService, OracleServiceConfig
from gpumarket.oracle.signer import OracleSigner
from gpumarket.oracle.store import DecisionStore, StoreError
from gpumarket.signing.batch import MAX_BATCH
from gpumarket.signing.eip712 import Domain

__all__ = ["PUBLIC_CHAIN_IDS", "oracle"]

logger = logging.getLogger(__name__)

# Chains where a publicly derivable test key must never sign (mainnet and the public testnets).
PUBLIC_CHAIN_IDS = frozenset({1, 10, 56, 100, 137, 8453, 42161, 17000, 11155111, 560048})


def _load_key(key_alias: str | None, test_key: int | None, chain_id: int) -> ServiceKey:
    if (key_alias is None) == (test_key is None):
        raise click.UsageError("give exactly one of --key-alias and --test-key")
    if test_key is not None:
        if chain_id in PUBLIC_CHAIN_IDS:
            raise click.UsageError(f"--test-key is a public key: refused on chain {chain_id}")
        logger.warning("using public test oracle key %d: for local chains only", test_key)
        return test_oracle(test_key)
    try:
        return load_keystore(key_alias)  # type: ignore[arg-type]
    except KeyLoadError as exc:
        raise click.UsageError(str(exc)) from None


@click.group()
def oracle() -> None:
    """The oracle service (decision store, signer, HTTP API)."""


@oracle.command("serve-api")
@click.option("--db", "db_path", required=True, type=click.Path(dir_okay=False), help="SQLite decision store.")
@click.option("--key-alias", help="ape keystore account; passphrase from APE_ACCOUNTS_<alias>_PASSPHRASE.")
@click.option("--test-key", type=click.IntRange(0, 255), help="Public test oracle key N (local chains only).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="0: an ephemeral port.")
@click.option("--chain-id", type=click.IntRange(min=1), required=True)
@click.option("--contract", required=True, metavar="ADDR", help="The market contract (EIP-712 verifying contract).")
@click.option("--epoch", type=click.IntRange(min=1), help="Record this epoch's committee (with --member, --threshold).")
@click.option("--member", "members", multiple=True, metavar="ADDR", help="A committee member (repeat).")
@click.option("--threshold", type=click.IntRange(min=1))
@click.option("--max-body-bytes", type=click.IntRange(min=256), default=16 * 1024, show_default=True)
@click.option(
    "--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default="INFO", show_default=True
)
def serve_api(
    db_path: str,
    key_alias: str | None,
    test_key: int | None,
    host: str,
    port: int,
    chain_id: int,
    contract: str,
    epoch: int | None,
    members: tuple[str, ...],
    threshold: int | None,
    max_body_bytes: int,
    log_level: str,
) -> None:
    """Serve the oracle's HTTP API over its decision store until SIGINT/SIGTERM."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        domain = Domain(chain_id=chain_id, verifying_contract=contract)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--chain-id/--contract") from None
    committee_given = [epoch is not None, bool(members), threshold is not None]
    if any(committee_given) and not all(committee_given):
        raise click.UsageError("--epoch, --member and --threshold go together")
    key = _load_key(key_alias, test_key, chain_id)
    try:
        store = DecisionStore.open(db_path, domain, key.address)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        if epoch is not None:
            try:
                store.set_committee(epoch, members, threshold)  # type: ignore[arg-type]
            except (ValueError, StoreError) as exc:
                raise click.BadParameter(str(exc), param_hint="--epoch/--member/--threshold") from None
        metrics = OracleMetrics()
        signer = OracleSigner(store, key, metrics)
        stop = threading.Event()
        stop_on_signals(stop.set)
        api = OracleAPI(store, signer, metrics, ApiConfig(host=host, port=port, max_body_bytes=max_body_bytes))
        with api:  # logs "oracle API for <address> listening on <url>"
            while not stop.wait(0.5):
                pass
        logger.info("oracle API stopped")
    finally:
        store.close()


@oracle.command("run")
@connection_options(
    key_help="Signs reports: keystore:<alias> (passphrase in $APE_ACCOUNTS_<alias>_PASSPHRASE) or, on a "
    "local chain, test-oracle:<i>; overrides the config file."
)
@click.option(
    "--sender",
    "sender_spec",
    default=None,
    help="Sends transactions (needs ether) [default: --key]; same forms, or test-account:<i>.",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="SQLite decision store (the follower's cursor goes beside it).",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8800, show_default=True, help="0: an ephemeral port.")
@click.option("--peer", "peers", multiple=True, metavar="URL", help="Another committee member's API (repeat).")
@click.option(
    "--registry",
    "registries",
    multiple=True,
    metavar="HOST=URL",
    help="An image registry this oracle checks jobs' images on (added to the config file's "
    "[registries]): HOST[:PORT] as image references write "
    "it, and its base URL, e.g. ghcr.io=https://ghcr.io (repeat). Images on other registries "
    "are never checked, so their failures are never the provider's fault.",
)
@click.option("--confirmations", type=click.IntRange(min=0), default=2, show_default=True)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.01),
    default=0.5,
    show_default=True,
    help="Seconds between the follower's polls of the node.",
)
@click.option(
    "--tick-interval",
    type=click.FloatRange(min=0.01),
    default=0.5,
    show_default=True,
    help="Seconds between passes of the hardware loop (the job loop steps each job when it is due).",
)
@click.option(
    "--heartbeat-interval",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds between challenges while a job runs.",
)
@click.option(
    "--job-poll-interval",
    type=click.FloatRange(min=0.05),
    default=2.0,
    show_default=True,
    help="Seconds between reads of a running job's status at its agent.",
)
@click.option(
    "--silent-after",
    type=click.FloatRange(min=0.1),
    default=180.0,
    show_default=True,
    help="A job whose agent has not answered for this long fails.",
)
@click.option(
    "--fallback-delay",
    type=click.FloatRange(min=0.0),
    default=30.0,
    show_default=True,
    help="Seconds each fallback rank waits before submitting in the designated member's place.",
)
@click.option(
    "--job-workers",
    type=click.IntRange(min=1),
    default=JobConfig.workers,
    show_default=True,
    help="Jobs the job loop steps at once (a challenge holds a worker for seconds, up to --turn-wait "
    "more while the prover is busy).",
)
@click.option(
    "--turn-wait",
    type=click.FloatRange(min=0.0, min_open=True),
    default=JobConfig.turn_wait_s,
    show_default=True,
    help="Seconds a job challenge waits for a turn at a busy prover (other oracles' challenges) before "
    "it gives its worker back and asks again at the next poll; not a missed try.",
)
@click.option(
    "--max-job-lag",
    type=click.FloatRange(min=0.0, min_open=True),
    default=JobConfig.max_lag_s,
    show_default=True,
    help="Seconds a job's step may start after it fell due before the job loop counts as behind "
    "(a warning in the log, /health degraded).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=0, max=MAX_BATCH),
    default=JobConfig.batch_size,
    show_default=True,
    help="Settle the jobs this oracle submits first in batches of up to this many under one signed "
    "root (the market's BatchSettler; 0: each job alone). A batch goes once full or once its oldest "
    "job has waited --batch-max-age; one that cannot gather the quorum goes back to single settlement.",
)
@click.option(
    "--batch-max-age",
    type=click.FloatRange(min=0.0),
    default=JobConfig.batch_max_age_s,
    show_default=True,
    help="Seconds the oldest job waits for its batch to fill (keep it below --fallback-delay).",
)
@click.option(
    "--no-answer-retry",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between hardware challenges of an agent that does not answer.",
)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help='Written with {"url", "pid", "address"} once the service is up.',
)
@click.option(
    "--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default="INFO", show_default=True
)
def run(
    config: Path | None,
    rpc: str | None,
    deployment: Path | None,
    key: str | None,
    sender_spec: str | None,
    db_path: Path,
    host: str,
    port: int,
    peers: tuple[str, ...],
    registries: tuple[str, ...],
    confirmations: int,
    poll_interval: float,
    tick_interval: float,
    heartbeat_interval: float,
    job_poll_interval: float,
    silent_after: float,
    fallback_delay: float,
    job_workers: int,
    turn_wait: float,
    max_job_lag: float,
    batch_size: int,
    batch_max_age: float,
    no_answer_retry: float,
    ready_file: Path | None,
    log_level: str,
) -> None:
    """Run the oracle on a market until SIGTERM or SIGINT.

    Exits 0 when stopped by a signal, 1 when the chain follower gave up (node down too long)."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = service_settings(config, rpc, deployment, key)
    node = str(settings.rpc)
    try:
        registries_by_host = registry_map(registries, settings.registries)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--registry") from None
    try:
        w3 = connect(node)
        record = MarketDeployment.read(Path(str(settings.deployment)))
        signer = load_key(str(settings.key), w3=w3)
        sender = load_key(sender_spec, w3=w3) if sender_spec else None
        service_config = OracleServiceConfig(
            rpc=node,
            deployment=record,
            key=signer,
            sender=sender,
            db_path=db_path,
            host=host,
            port=port,
            peers=peers,
            registries=registries_by_host,
            confirmations=confirmations,
            poll_interval=poll_interval,
            tick_interval=tick_interval,
            hardware=HardwareConfig(fallback_delay_s=fallback_delay, no_answer_retry_s=no_answer_retry),
            jobs=JobConfig(
                heartbeat_interval_s=heartbeat_interval,
                poll_interval_s=job_poll_interval,
                silent_after_s=silent_after,
                fallback_delay_s=fallback_delay,
                workers=job_workers,
                turn_wait_s=turn_wait,
                max_lag_s=max_job_lag,
                batch_size=batch_size,
                batch_max_age_s=batch_max_age,
            ),
        )
        service = OracleService(service_config, w3=w3).start()
    except OSError as error:  # requests' connection errors too
        raise click.ClickException(f"node {node} or a local file: {error}") from None
    except (KeyLoadError, StoreError, ChainError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    serve_until_signalled(service, ready_file)
