"""The seam between the story and where its services run.

The story (gpumarket.demo.story) deploys, funds and registers over one Web3, then asks a
Launcher to start the chain, each provider and each oracle, and to play the client:

- InProcessLauncher (gpumarket.demo.inprocess): the embedded py-evm chain, every service a
  set of threads in this process (`gpumarket demo`);
- ProcessLauncher (gpumarket.demo.devnet): anvil, and each oracle, provider and the client
  its own process, started through the `gpumarket` command line (`gpumarket devnet`).

Both get the same setups: keys by their spec ("test-account:1", "test-oracle:0"), a port
chosen before start (so every oracle knows its peers' URLs, and each provider registers the
endpoint it will serve), its files under the story's working directory, and the same
timings.
"""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from web3 import Web3

from gpumarket.chain.market_deploy import MarketDeployment
from gpumarket.demo.client import ClientJobReport, ClientPlan
from gpumarket.provider.runtime import RuntimeSettings

__all__ = ["LaunchError", "Launcher", "LazyPlan", "OracleSetup", "ProviderSetup", "ServiceTiming", "free_ports"]

# The demo and the devnet run jobs as host processes unless told to use containers (--runtime).
PROCESS_RUNTIME = RuntimeSettings(kind="process")


class LaunchError(RuntimeError):
    """A service did not start, or stopped while the story needed it (the message says which)."""


@dataclass(frozen=True)
class ServiceTiming:
    """The services' clocks, short enough for a story of a minute (production uses minutes)."""

    poll_interval_s: float = 0.2  # chain followers (providers' watchers, oracles' followers)
    tick_interval_s: float = 0.2  # the oracles' loop
    meter_interval_s: float = 0.25  # the providers' job metering
    # Every challenge shares the machine's cores with the jobs: a heartbeat every 3 s keeps
    # the challenges' load below what would slow an honest answer under half the floor.
    heartbeat_interval_s: float = 3.0
    status_poll_s: float = 0.5  # how often an oracle asks a provider about a running job
    silent_after_s: float = 15.0
    fallback_delay_s: float = 5.0  # before a non-designated oracle submits a quorum itself
    no_answer_retry_s: float = 1.0  # an agent not up yet when its registration is seen


@dataclass(frozen=True)
class LazyPlan:
    """The lazy provider's prover: honest for `honest_challenges`, then skips `skip_fraction`."""

    skip_fraction: float
    honest_challenges: int


@dataclass(frozen=True)
class ProviderSetup:
    name: str
    key_spec: str
    port: int
    root: Path  # its database and its jobs' directories
    lazy: LazyPlan | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class OracleSetup:
    name: str
    key_spec: str  # signs reports (a committee member)
    sender_spec: str  # pays for its transactions
    port: int
    peers: tuple[str, ...]  # the other oracles' API URLs
    root: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports free right now (bound together, then released)."""
    with ExitStack() as stack:
        sockets = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]


class Launcher(ABC):
    """Starts the story's chain and services, and plays its client; see the module docstring."""

    #: how the services run, for the summary ("in process on the embedded chain", ...)
    description: str = ""

    def __init__(self, workdir: Path, timing: ServiceTiming, runtime: RuntimeSettings = PROCESS_RUNTIME) -> None:
        """``runtime``: how the providers run jobs (the story's specs must match it)."""
        self.workdir = workdir
        self.timing = timing
        self.runtime = runtime

    @abstractmethod
    def start_chain(self) -> Web3:
        """Start the chain; a Web3 on it for the story (test accounts 0..11 funded)."""

    @abstractmethod
    def start_provider(self, setup: ProviderSetup, deployment: MarketDeployment) -> None:
        """Start a registered provider's service on setup.port; returns once it serves."""

    @abstractmethod
    def start_oracle(self, setup: OracleSetup, deployment: MarketDeployment) -> None:
        """Start an oracle's service on setup.port; returns once it serves."""

    def start_dashboard(self, deployment: MarketDeployment, oracles: Sequence[str]) -> str | None:
        """Start the market's dashboard (gpumarket.dashboard), polling ``oracles``; its URL, or
        None where this launcher has none."""
        return None

    @abstractmethod
    def stopped_services(self) -> list[str]:
        """Services that stopped on their own, each with why (empty while all run)."""

    @abstractmethod
    def run_client(
        self, key_spec: str, deployment: MarketDeployment, plan: ClientPlan, echo: Callable[[str], None]
    ) -> list[ClientJobReport]:
        """Play the client's part (gpumarket.demo.client.run_client) to its end."""

    @abstractmethod
    def close(self) -> None:
        """Stop every service and the chain (safe to call twice)."""

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
