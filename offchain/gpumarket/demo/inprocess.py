"""InProcessLauncher: the story on the embedded py-evm chain, every service in this process.

The chain is shared by every thread of the process (gpumarket.chain.connection serialises its
requests), so the providers (ProviderService), the oracles (OracleService) and the client all
get the same Web3. Their logs go to the logging configuration of the caller (the demo command
writes them to a file in its working directory).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from web3 import Web3

from gpumarket.chain.connection import EMBEDDED, connect
from gpumarket.chain.keys import load_key
from gpumarket.chain.market_deploy import MarketDeployment
from gpumarket.client.jobs import JobClient
from gpumarket.demo.client import ClientJobReport, ClientPlan, run_client
from gpumarket.demo.launcher import PROCESS_RUNTIME, Launcher, LaunchError, OracleSetup, ProviderSetup, ServiceTiming
from gpumarket.measure.provers.cheats import LateSkippingProver
from gpumarket.oracle.hardware import HardwareConfig
from gpumarket.oracle.jobs import JobConfig
from gpumarket.oracle.service import OracleService, OracleServiceConfig
from gpumarket.provider.runtime import RuntimeSettings
from gpumarket.provider.service import ProviderService, ServiceConfig

__all__ = ["InProcessLauncher"]


class InProcessLauncher(Launcher):
    description = "in process, on the embedded py-evm chain"

    def __init__(self, workdir: Path, timing: ServiceTiming, runtime: RuntimeSettings = PROCESS_RUNTIME) -> None:
        super().__init__(workdir, timing, runtime)
        self._w3: Web3 | None = None
        self._providers: list[tuple[str, ProviderService]] = []
        self._oracles: list[tuple[str, OracleService]] = []

    @property
    def w3(self) -> Web3:
        if self._w3 is None:
            raise LaunchError("the chain has not started")
        return self._w3

    def start_chain(self) -> Web3:
        self._w3 = connect(EMBEDDED)
        return self._w3

    def start_provider(self, setup: ProviderSetup, deployment: MarketDeployment) -> None:
        timing = self.timing
        prover = None
        if setup.lazy is not None:
            prover = LateSkippingProver(1.0 - setup.lazy.skip_fraction, setup.lazy.honest_challenges)
        config = ServiceConfig(
            rpc=EMBEDDED,
            deployment=deployment,
            key=load_key(setup.key_spec, w3=self.w3),
            db_path=setup.root / "provider.sqlite",
            workdir=setup.root / "jobs",
            port=setup.port,
            backend="numpy",
            confirmations=0,
            poll_interval=timing.poll_interval_s,
            meter_interval=timing.meter_interval_s,
            runtime=self.runtime,
        )
        self._providers.append((setup.name, ProviderService(config, w3=self.w3, prover=prover).start()))

    def start_oracle(self, setup: OracleSetup, deployment: MarketDeployment) -> None:
        timing = self.timing
        config = OracleServiceConfig(
            rpc=EMBEDDED,
            deployment=deployment,
            key=load_key(setup.key_spec, w3=self.w3),
            sender=load_key(setup.sender_spec, w3=self.w3),
            db_path=setup.root / "oracle.sqlite",
            port=setup.port,
            peers=setup.peers,
            confirmations=0,
            poll_interval=timing.poll_interval_s,
            tick_interval=timing.tick_interval_s,
            hardware=HardwareConfig(
                fallback_delay_s=timing.fallback_delay_s, no_answer_retry_s=timing.no_answer_retry_s
            ),
            jobs=JobConfig(
                heartbeat_interval_s=timing.heartbeat_interval_s,
                poll_interval_s=timing.status_poll_s,
                silent_after_s=timing.silent_after_s,
                fallback_delay_s=timing.fallback_delay_s,
            ),
        )
        self._oracles.append((setup.name, OracleService(config, w3=self.w3).start()))

    def stopped_services(self) -> list[str]:
        stopped = []
        for name, provider in self._providers:
            if provider.wait(0) is not None:
                stopped.append(f"{name}: stopped ({provider.fatal_error or 'asked to'})")
        for name, oracle in self._oracles:
            if oracle.wait(0) is not None:
                stopped.append(f"{name}: stopped ({oracle.fatal_error or 'asked to'})")
        return stopped

    def run_client(
        self, key_spec: str, deployment: MarketDeployment, plan: ClientPlan, echo: Callable[[str], None]
    ) -> list[ClientJobReport]:
        key = load_key(key_spec, w3=self.w3)
        client = JobClient(
            deployment.market_at(self.w3, signer=key),
            key,
            poll_interval_s=plan.poll_interval_s,
            from_block=deployment.block,
        )
        return run_client(client, plan, echo=echo)

    def close(self) -> None:
        for _, oracle in self._oracles:
            oracle.stop()
        for _, provider in self._providers:
            provider.stop()
        for _, oracle in self._oracles:
            oracle.close()
        for _, provider in self._providers:
            provider.close(stop_jobs=True)
        self._oracles, self._providers = [], []
