"""The dashboard as one service: the index following the chain, the oracles polled, the web app served.

    dashboard = Dashboard(DashboardConfig(rpc="http://127.0.0.1:8545", deployment=MarketDeployment.read(path),
                                          oracles=("http://127.0.0.1:8800", ...), port=8900))
    dashboard.start()             # or Dashboard(config, w3=w3): a Web3 shared with the caller (the embedded chain)
    print(dashboard.url)          # http://127.0.0.1:8900
    dashboard.close()

``start`` in order: connect (unless a Web3 is given) and check the node serves the deployment's
chain with the market's contract on it (ChainMismatch otherwise), open the index (``db_path``, or
a temporary file removed by ``close``) and index what is confirmed already, poll the oracles once,
serve the app, then follow the chain from a thread of its own. ``wait`` returns 1 when that
thread died (the node stayed down past the follower's retry budget): a supervisor restarts the
dashboard; its index resumes where it stopped.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from web3 import Web3

from gpumarket.chain.connection import connect
from gpumarket.chain.errors import ChainMismatch
from gpumarket.chain.follower import FollowerConfig
from gpumarket.chain.market_deploy import MarketDeployment
from gpumarket.dashboard.app import dashboard_app
from gpumarket.dashboard.index import MarketIndex
from gpumarket.dashboard.oracles import OracleWatch
from gpumarket.dashboard.queries import IndexReader
from gpumarket.dashboard.reads import ChainReads
from gpumarket.dashboard.views import DashboardViews
from gpumarket.lifecycle import ServiceLifecycle
from gpumarket.web.server import ServerLimits, WebServer

__all__ = ["DEFAULT_PORT", "Dashboard", "DashboardConfig"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 8900


@dataclass(frozen=True)
class DashboardConfig:
    """What ``gpumarket dashboard`` takes. ``oracles``: the committee members' API URLs;
    ``db_path``: the index (None: a temporary file); ``port`` 0: an ephemeral port;
    ``confirmations``: how deep a block must be before the pages show its events;
    ``poll_interval_s``: between the index's polls of the node; ``oracle_interval_s``: between
    polls of the oracles; ``live_interval_s``: how often an open page asks whether it changed."""

    rpc: str
    deployment: MarketDeployment
    oracles: tuple[str, ...] = ()
    db_path: Path | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    confirmations: int = 2
    poll_interval_s: float = 1.0
    oracle_interval_s: float = 5.0
    live_interval_s: float = 2.0
    max_connections: int = 64


class Dashboard(ServiceLifecycle):
    """The dashboard's index, oracle polling and web server; see the module docstring."""

    def __init__(self, config: DashboardConfig, *, w3: Web3 | None = None) -> None:
        super().__init__()
        self.config = config
        self._w3 = w3
        self.index: MarketIndex | None = None
        self.oracles: OracleWatch | None = None
        self._server: WebServer | None = None
        self._thread: threading.Thread | None = None
        self._temporary: Path | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the dashboard is not started")
        return self._server.url

    @property
    def address(self) -> str:
        """The market it shows (the dashboard acts as no account)."""
        return self.config.deployment.market

    def start(self) -> Self:
        config = self.config
        try:
            w3 = self._w3 or connect(config.rpc)
            market = config.deployment.market_at(w3)
            if not w3.eth.get_code(market.address):
                raise ChainMismatch(f"no contract at {market.address} on chain {config.deployment.chain_id}")
            db_path = config.db_path
            if db_path is None:
                self._temporary = Path(tempfile.mkdtemp(prefix="gpumarket-dashboard-"))
                db_path = self._temporary / "index.sqlite"
            follower = FollowerConfig(confirmations=config.confirmations, poll_interval=config.poll_interval_s)
            self.index = MarketIndex(market, db_path, start_block=config.deployment.block, config=follower)
            self.index.poll_once()  # the first page shows the market as it is
            self.oracles = OracleWatch(
                config.oracles,
                market=(config.deployment.chain_id, config.deployment.market),
                interval_s=config.oracle_interval_s,
            ).start()
            index = self.index
            views = DashboardViews(
                ChainReads(market, start_block=config.deployment.block),
                IndexReader(db_path),
                self.oracles,
                config.deployment,
                cursor=lambda: index.cursor,
            )
            self._server = WebServer(
                dashboard_app(views, live_interval_s=config.live_interval_s),
                host=config.host,
                port=config.port,
                limits=ServerLimits(max_connections=config.max_connections),
                name="gpumarket-dashboard",
            ).start()
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(
            target=self._run_until_stopped, args=("the index", index.run), name="dashboard-index", daemon=True
        )
        self._thread.start()
        log.info("dashboard of market %s listening on %s", config.deployment.market, self.url)
        return self

    def close(self) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout=30.0)
            self._thread = None
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self.oracles is not None:
            self.oracles.close()
            self.oracles = None
        if self.index is not None:
            self.index.close()
            self.index = None
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)
            self._temporary = None
