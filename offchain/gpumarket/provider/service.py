"""The provider as one long-running service: HTTP API, chain watcher, durable state.

    config = ServiceConfig(rpc="http://127.0.0.1:8545", deployment=MarketDeployment.read(path),
                           key=load_key("keystore:provider1"), db_path=Path("provider.sqlite"),
                           workdir=Path("jobs"), port=8700)
    service = ProviderService(config)          # or ProviderService(config, w3=w3): a shared chain
                                               # prover=...: another TileProver (tests, the demo's cheater)
    service.start()                            # checks, recover, API, watcher thread
    service.wait()                             # until stop() (a signal handler calls it)
    service.close()

`start` in order: connect (config.rpc, unless a Web3 is given: the embedded chain is only
shared inside one process), the Market of the deployment with the provider's key, the startup
checks (`check_provider`), the agent (ProviderAgent over a MarketJobSource) and its
`recover()` before anything is served, the HTTP server, then the JobWatcher in its own thread
(its cursor in `watcher_db`, by default beside db_path).

Startup checks: a provider that is not registered, or is registered for a GPU class this
software does not know, cannot work and `start` raises StartupError with the reason. Not
verified, too little free stake, jailed, or an endpoint that differs from the registered one
are warnings (logged, and in `service.checks`): the oracles need the API up to verify it,
and an endpoint behind a proxy legitimately differs from the bound address.

Shutdown (`stop`, then `close`), or a SIGKILL: the watcher stops between events, the API
stops; running jobs keep running, unwatched until the next start, which follows them again on
their metering journals (so their usage spans the gap) and records as finished, from their
files, those that ended meanwhile (runner.py, `ProviderAgent.recover`). `wait` returns 1 when the watcher died (the
node stayed down past its retry budget, or the chain changed under it): a supervisor should
restart the service; otherwise 0.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from web3 import Web3

from gpumarket.chain.connection import RetryPolicy, connect
from gpumarket.chain.follower import FollowerConfig
from gpumarket.chain.keys import ServiceKey
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment
from gpumarket.cluster import cluster_info
from gpumarket.lifecycle import ServiceLifecycle
from gpumarket.measure.classes import GpuClass, class_by_id
from gpumarket.measure.nvml import nvml_available
from gpumarket.measure.provers import TileProver, make_prover
from gpumarket.measure.provers.ray_prover import RayProver
from gpumarket.provider.agent import AgentConfig, ProviderAgent
from gpumarket.provider.api import ProviderServer
from gpumarket.provider.jobdir import RunnerConfig
from gpumarket.provider.jobsource import MarketJobSource
from gpumarket.provider.runtime import RuntimeSettings, make_runtime
from gpumarket.provider.store import Store
from gpumarket.provider.watcher import JobWatcher, WatchPolicy

__all__ = ["ProviderService", "ServiceConfig", "StartupChecks", "StartupError", "check_provider"]

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The provider cannot work as it stands on chain (the message says why and what to do)."""


@dataclass(frozen=True)
class ServiceConfig:
    """What `gpumarket provider run` takes. ``public_url``: the endpoint clients and oracles
    use, compared with the registered one (default: the bound API's URL). ``retry`` and
    ``max_outages``: how long the watcher waits out a node that is down before it gives up
    (then `wait` returns 1)."""

    rpc: str
    deployment: MarketDeployment
    key: ServiceKey
    db_path: Path
    workdir: Path
    host: str = "127.0.0.1"
    port: int = 8700
    public_url: str | None = None
    gpus: tuple[int, ...] = ()
    backend: str = "auto"
    confirmations: int = 2
    poll_interval: float = 0.5
    meter_interval: float = 1.0
    policy: WatchPolicy = field(default_factory=WatchPolicy)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_outages: int = 3
    watcher_db: Path | None = None
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)

    @property
    def watcher_db_path(self) -> Path:
        return self.watcher_db or self.db_path.with_name(self.db_path.stem + "-watcher.sqlite")


@dataclass(frozen=True)
class StartupChecks:
    """What the chain says of the provider at start: its GPU class and the warnings."""

    gpu_class: GpuClass
    warnings: tuple[str, ...]


def check_provider(market: Market, address: str, endpoint: str | None) -> StartupChecks:
    """The provider's standing on chain; StartupError when it cannot work at all."""
    record = market.providers(address)
    if not record.registered:
        raise StartupError(
            f"{address} is not registered on market {market.address}: register it first "
            "(GPU class, count, price and this service's endpoint)"
        )
    try:
        gpu_class = class_by_id(record.gpu_class)
    except KeyError:
        raise StartupError(f"{address} is registered for GPU class {record.gpu_class}, unknown to this agent") from None
    warnings: list[str] = []
    now = market.block_timestamp()
    if record.verified_until < now:
        warnings.append("not verified (no valid hardware report): jobs cannot be accepted until the oracles verify it")
    if record.jailed:
        warnings.append("jailed: jobs cannot be accepted until the owner unjails it")
    stake = market.stake_of(address)
    min_stake = market.parameters().get("min_stake", 0)
    if stake.free < min_stake:
        warnings.append(f"free stake {stake.free} is below min_stake {min_stake}: accepting jobs will fail")
    if endpoint is not None and record.endpoint.rstrip("/") != endpoint.rstrip("/"):
        warnings.append(f"registered endpoint {record.endpoint!r} differs from this service's {endpoint!r}")
    return StartupChecks(gpu_class, tuple(warnings))


class ProviderService(ServiceLifecycle):
    """The provider agent, its API and its chain watcher; see the module docstring."""

    def __init__(self, config: ServiceConfig, *, w3: Web3 | None = None, prover: TileProver | None = None) -> None:
        super().__init__()
        self.config = config
        self._w3 = w3
        self._prover = prover  # None: make_prover(config.backend) at start
        self.checks: StartupChecks | None = None
        self.market: Market | None = None
        self.store: Store | None = None
        self.agent: ProviderAgent | None = None
        self.server: ProviderServer | None = None
        self.watcher: JobWatcher | None = None
        self._watcher_thread: threading.Thread | None = None
        self.gpus: tuple[int, ...] = config.gpus  # on a cluster, its GPUs (read at start)

    @property
    def address(self) -> str:
        return self.config.key.address

    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError("the service has not started")
        return self.config.public_url or self.server.url

    def start(self) -> ProviderService:
        """Checks, recovers, serves and watches; on any failure undoes what it started."""
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> ProviderService:
        config = self.config
        w3 = self._w3 or connect(config.rpc)
        self.market = config.deployment.market_at(w3, signer=config.key)
        # The endpoint check needs the bound port, known once the server exists: check the
        # standing first (a refusal must come before anything is served), the endpoint after.
        self.checks = check_provider(self.market, self.address, None)
        self.store = Store(config.db_path)
        on_cluster = config.runtime.kind == "ray"
        runner = make_runtime(
            config.runtime,
            RunnerConfig(
                root=config.workdir,
                meter_interval_s=config.meter_interval,
                meter_gpus=metered_gpus(config.gpus, on_cluster=on_cluster),
            ),
            self.address,
        )
        self.gpus = config.gpus
        prover = self._prover
        if on_cluster:
            self.gpus, prover = cluster_offer(self.gpus, config.backend, prover)
            registered = self.market.providers(self.address).gpu_count
            if registered > len(self.gpus):
                log.warning(
                    "provider %s: registered %d GPUs, its cluster holds %d: jobs it cannot place will be refused",
                    self.address,
                    registered,
                    len(self.gpus),
                )
        agent_config = AgentConfig(
            address=self.address,
            chain_id=config.deployment.chain_id,
            market=config.deployment.market,
            gpu_class=self.checks.gpu_class,
            gpus=self.gpus,
        )
        self.agent = ProviderAgent(
            agent_config,
            self.store,
            runner,
            MarketJobSource(self.market),
            prover if prover is not None else make_prover(config.backend),
        )
        recovery = self.agent.recover()
        log.info("%s", recovery.summary())
        self.server = ProviderServer(self.agent, config.host, config.port).start()
        endpoint_checks = check_provider(self.market, self.address, self.url)
        self.checks = endpoint_checks
        for warning in endpoint_checks.warnings:
            log.warning("provider %s: %s", self.address, warning)
        self.watcher = JobWatcher(
            self.market,
            config.watcher_db_path,
            self.store,
            start_block=config.deployment.block,
            policy=self._policy(),
            config=FollowerConfig(
                confirmations=config.confirmations,
                poll_interval=config.poll_interval,
                retry=config.retry,
                max_outages=config.max_outages,
            ),
        )
        self._watcher_thread = threading.Thread(target=self._watch, name="provider-watcher", daemon=True)
        self._watcher_thread.start()
        log.info(
            "provider %s serving %s on %s, watching market %s",
            self.address,
            endpoint_checks.gpu_class.name,
            self.url,
            config.deployment.market,
        )
        return self

    def _policy(self) -> WatchPolicy:
        """The configured policy; with GPUs configured and no max_gpus, never more GPUs held than
        the agent can assign (the registered count may differ)."""
        policy = self.config.policy
        if policy.max_gpus is None and self.gpus:
            return replace(policy, max_gpus=len(self.gpus))
        return policy

    def _watch(self) -> None:
        assert self.watcher is not None
        self._run_until_stopped("chain watcher", self.watcher.run)

    def close(self, *, stop_jobs: bool = False) -> None:
        """Stops the watcher and the API; running jobs keep running unless ``stop_jobs``."""
        self._stop.set()
        if self._watcher_thread is not None:
            self._watcher_thread.join(timeout=30)
        if self.server is not None:
            self.server.stop()
        if self.agent is not None:
            self.agent.close(stop_jobs=stop_jobs)
        if self.watcher is not None:
            self.watcher.close()
        # Without stop_jobs the store stays open: threads following still-running jobs may
        # record an ending until the process exits (each transaction is durable on its own).
        if self.store is not None and (stop_jobs or self.agent is None):
            self.store.close()


def metered_gpus(gpus: tuple[int, ...], *, on_cluster: bool) -> bool:
    """Whether jobs' GPUs are metered with NVML: here when this machine has GPUs and NVML; on a
    cluster, each node decides for itself (ray_node.py), so the agent asks for it."""
    if on_cluster:
        return True
    if gpus and not nvml_available():
        log.warning("NVML is not available: jobs' GPUs will not be metered, only their processes")
        return False
    return bool(gpus)


def cluster_offer(
    gpus: tuple[int, ...], backend: str, prover: TileProver | None = None
) -> tuple[tuple[int, ...], TileProver]:
    """What an agent in front of a Ray cluster sells and how it proves it: the cluster's GPUs
    (their count, not indices: Ray places each job; ``gpus`` when given) and, unless ``prover``
    is given, the cluster prover, warm, with ``backend`` on each node."""
    sold = gpus or tuple(range(cluster_info().total_gpus))
    if prover is None:
        prover = RayProver(node_backend=backend)
        log.info("cluster prover up: %s", prover.warm_up())
    return sold, prover
