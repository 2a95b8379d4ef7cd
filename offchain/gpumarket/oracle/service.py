"""The oracle as one long-running service: chain follower, hardware and job loops, HTTP API.

    config = OracleServiceConfig(rpc="http://127.0.0.1:8545", deployment=MarketDeployment.read(path),
                                 key=load_key("keystore:oracle1"), db_path=Path("oracle.sqlite"),
                                 peers=("http://oracle2:8800", "http://oracle3:8800"), port=8800)
    service = OracleService(config)             # or OracleService(config, w3=w3): a shared chain
    service.start()                             # store, committee, API, follower and loop threads
    service.wait()                              # until stop() (a signal handler calls it)
    service.close()

``start`` in order: connect (config.rpc, unless a Web3 is given), the Market of the
deployment with the ``sender`` key (it pays for settlement transactions; the ``key`` only
signs reports and need hold no ether), the decision store (bound to the market's EIP-712
domain and the key's address), the committee read from the chain (a warning when the key is
not a member: it serves and follows, but signs nothing), the HTTP API, then three threads:

- the **follower** (gpumarket.chain.follower, its cursor in ``follower_db``) hands every
  event, at the confirmation depth, to CommitteeSync (epochs), HardwareVerifier
  (registrations and claim updates, which queue a challenge; jail and hardware-report events,
  which refresh its cached provider records) and JobMonitor (JobAccepted, JobSettled, ...);
- the **hardware loop** runs ``HardwareVerifier.tick`` every ``tick_interval`` seconds, then
  ``EquivocationReporter.tick`` (a peer's two different signed reports of one key and epoch,
  proven to the market's OracleBonds: gpumarket.oracle.equivocation); an error in one pass is
  logged and the next pass tries again;
- the **job loop**, ``JobMonitor.run``: its pool of ``jobs.workers`` threads steps each job
  when it falls due (gpumarket.oracle.jobs, "Scheduling"). ``/health`` reports it
  (``"job_loop"``: jobs followed, lag, ``behind``; ``"status": "degraded"`` while it is behind),
  and a peer's signature pushed to the API hurries its job's settlement.

Shutdown (``stop``, then ``close``) stops the threads between steps, then the API and the
store. ``wait`` returns 1 when the follower died (the node stayed down past its retry budget,
or the chain changed under it): a supervisor should restart the service; otherwise 0.
Decisions survive any crash (write-once in SQLite, before signing), and so do the jobs
being followed: a restarted oracle challenges them again and settles what it had decided.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from web3 import Web3

from gpumarket.chain.connection import RetryPolicy, connect
from gpumarket.chain.events import MarketEvent, ProviderRegistered, scan_events
from gpumarket.chain.follower import EventFollower, FollowerConfig
from gpumarket.chain.keys import ServiceKey
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment
from gpumarket.lifecycle import ServiceLifecycle
from gpumarket.oracle.api import ApiConfig, OracleAPI
from gpumarket.oracle.chain_submitter import ChainSubmitter
from gpumarket.oracle.equivocation import EquivocationReporter
from gpumarket.oracle.hardware import HardwareConfig, HardwareVerifier
from gpumarket.oracle.images import ImageConfig
from gpumarket.oracle.jobs import JobConfig, JobMonitor
from gpumarket.oracle.metrics import OracleMetrics
from gpumarket.oracle.peers import PeerClient
from gpumarket.oracle.signer import OracleSigner
from gpumarket.oracle.store import DecisionStore
from gpumarket.oracle.sync import CommitteeSync

__all__ = ["OracleService", "OracleServiceConfig"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OracleServiceConfig:
    """What ``gpumarket oracle run`` takes. ``sender``: the funded account that sends the
    settlement and hardware-report transactions (default: ``key``). ``peers``: the other
    committee members' API URLs (may be changed after start with ``set_peers``). ``registries``:
    the image registries it checks a job's image on (gpumarket.oracle.images)."""

    rpc: str
    deployment: MarketDeployment
    key: ServiceKey
    db_path: Path
    sender: ServiceKey | None = None
    host: str = "127.0.0.1"
    port: int = 8800
    peers: tuple[str, ...] = ()
    confirmations: int = 2
    poll_interval: float = 0.5
    tick_interval: float = 0.5
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    jobs: JobConfig = field(default_factory=JobConfig)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_outages: int = 3
    max_body_bytes: int = 16 * 1024
    follower_db: Path | None = None
    # Image registries this oracle asks about a job's image (host[:port] as written in image
    # references -> base URL, e.g. {"ghcr.io": "https://ghcr.io"}): gpumarket.oracle.images.
    registries: Mapping[str, str] = field(default_factory=dict)
    images: ImageConfig = field(default_factory=ImageConfig)

    @property
    def follower_db_path(self) -> Path:
        return self.follower_db or self.db_path.with_name(self.db_path.stem + "-follower.sqlite")


class OracleService(ServiceLifecycle):
    """The oracle's follower, loops and API over one decision store; see the module docstring."""

    def __init__(self, config: OracleServiceConfig, *, w3: Web3 | None = None) -> None:
        super().__init__()
        self.config = config
        self._w3 = w3
        self.market: Market | None = None
        self.store: DecisionStore | None = None
        self.signer: OracleSigner | None = None
        self.api: OracleAPI | None = None
        self.hardware: HardwareVerifier | None = None
        self.jobs: JobMonitor | None = None
        self.equivocations: EquivocationReporter | None = None
        self.follower: EventFollower | None = None
        self.metrics = OracleMetrics()
        self._known_providers: set[str] = set()
        self._threads: list[threading.Thread] = []

    @property
    def address(self) -> str:
        return self.config.key.address

    @property
    def url(self) -> str:
        if self.api is None:
            raise RuntimeError("the service has not started")
        return self.api.url

    def start(self) -> OracleService:
        """Opens, syncs, serves and follows; on any failure undoes what it started."""
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> OracleService:
        config = self.config
        w3 = self._w3 or connect(config.rpc)
        self.market = config.deployment.market_at(w3, signer=config.sender or config.key)
        domain = self.market.domain
        self.store = DecisionStore.open(config.db_path, domain, self.address)
        sync = CommitteeSync(self.store, self.market)
        committee = sync.load_current()
        if not committee.is_member(self.address):
            log.warning(
                "oracle %s is not a member of the committee of epoch %d: it will sign nothing",
                self.address,
                committee.epoch,
            )
        self.signer = OracleSigner(self.store, config.key, self.metrics)
        self.api = OracleAPI(
            self.store,
            self.signer,
            self.metrics,
            ApiConfig(host=config.host, port=config.port, max_body_bytes=config.max_body_bytes),
        ).start()
        peers = self._peer_clients(config.peers)
        submitter = ChainSubmitter(self.market, self.store)
        self.hardware = HardwareVerifier(self.store, self.signer, self.market, peers, submitter, config=config.hardware)
        self.jobs = JobMonitor(
            self.store,
            self.signer,
            self.market,
            peers,
            submitter,
            config=config.jobs,
            challenge_config=config.hardware.challenge,
            registries=config.registries,
            image_config=config.images,
        )
        self.equivocations = EquivocationReporter(self.store, self.market)
        self.api.add_health_check("job_loop", self.jobs.health)
        self.api.on_signature = self.jobs.signature_arrived
        if not self.metrics.has("gpumarket_oracle_peers_reachable"):
            self.metrics.gauge(
                "gpumarket_oracle_peers_reachable",
                "Peers whose last request from this oracle got an answer.",
                lambda: [({}, sum(1 for peer in (self.jobs.peers if self.jobs else ()) if peer.reachable))],
            )
        start_block = config.deployment.block
        self._known_providers.update(
            event.provider
            for event in scan_events(self.market, ["ProviderRegistered"], from_block=start_block)
            if isinstance(event, ProviderRegistered)
        )

        def on_event(event: MarketEvent, db: object) -> None:
            if isinstance(event, ProviderRegistered):
                self._known_providers.add(event.provider)
            sync.handle(event)
            assert self.hardware is not None and self.jobs is not None
            self.hardware.handle(event)
            self.jobs.handle(event)

        self.follower = EventFollower(
            w3,
            self.market.address,
            config.follower_db_path,
            on_event,
            start_block=start_block,
            config=FollowerConfig(
                confirmations=config.confirmations,
                poll_interval=config.poll_interval,
                retry=config.retry,
                max_outages=config.max_outages,
            ),
        )
        self._threads = [
            threading.Thread(target=self._follow, name="oracle-follower", daemon=True),
            threading.Thread(target=self._loop, name="oracle-hardware", daemon=True),
            threading.Thread(target=self._job_loop, name="oracle-jobs", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        log.info(
            "oracle %s serving %s, following market %s from block %d",
            self.address,
            self.url,
            config.deployment.market,
            start_block,
        )
        return self

    def _peer_clients(self, urls: tuple[str, ...] | list[str]) -> list[PeerClient]:
        assert self.market is not None
        own = self.api.url.rstrip("/") if self.api is not None else None
        return [PeerClient(url, self.market.domain) for url in urls if url.rstrip("/") != own]

    def set_peers(self, urls: list[str] | tuple[str, ...]) -> None:
        """Replace the peers' API URLs (this oracle's own URL is skipped)."""
        peers = self._peer_clients(tuple(urls))
        if self.hardware is not None:
            self.hardware.peers = peers
        if self.jobs is not None:
            self.jobs.peers = peers

    def _follow(self) -> None:
        assert self.follower is not None
        self._run_until_stopped("chain follower", self.follower.run)

    def _loop(self) -> None:
        assert self.hardware is not None and self.equivocations is not None
        while not self._stop.wait(self.config.tick_interval):
            try:
                self.hardware.tick(known=sorted(self._known_providers))
            except Exception as error:  # noqa: BLE001 - one failed pass must not end the service
                log.warning("hardware pass failed: %s: %s", type(error).__name__, error)
            try:
                self.equivocations.tick()
            except Exception as error:  # noqa: BLE001 - one failed pass must not end the service
                log.warning("equivocation pass failed: %s: %s", type(error).__name__, error)

    def _job_loop(self) -> None:
        assert self.jobs is not None
        # Each step's errors stay in its job (JobMonitor, DueSchedule); what escapes is fatal.
        self._run_until_stopped("job loop", self.jobs.run)

    def close(self) -> None:
        """Stops the threads, then the API and the store."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        if self.api is not None:
            self.api.stop()
        if self.follower is not None:
            self.follower.close()
        if self.store is not None:
            self.store.close()
