"""ProcessLauncher: the story on anvil, each oracle, provider and the client a process of its own.

Every service is started through the command line an operator would use:

    gpumarket provider run --rpc URL --deployment FILE --key test-account:<i> ...  (the lazy one
        with the hidden --cheat-skip-fraction / --cheat-skip-after, local chains only)
    gpumarket oracle run --rpc URL --deployment FILE --key test-oracle:<i> --sender test-account:<j>
        --peer URL --peer URL ...
    gpumarket demo-client --rpc URL --deployment FILE --key test-account:<i> --plan FILE --report FILE

with `python -m gpumarket` of this interpreter. Each writes its log to <workdir>/<name>.log and,
once it serves, a ready file; a service that exits before (or a client that fails) raises
LaunchError with the end of its log. The client's lines are relayed to the story's progress
as it prints them. `close` sends SIGTERM to every process, waits, and kills what is left;
then anvil stops.

For the fault soak (gpumarket.soak) a service can be signalled and started again with the
same command line (`process_of`, `restart_service`), and anvil restarted on its saved state
(`restart_chain`, with `chain_state`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from web3 import Web3

from gpumarket.chain.anvil import AnvilError, AnvilNode
from gpumarket.chain.connection import connect
from gpumarket.chain.market_deploy import MarketDeployment
from gpumarket.demo.client import ClientJobReport, ClientPlan
from gpumarket.demo.launcher import (
    PROCESS_RUNTIME,
    Launcher,
    LaunchError,
    OracleSetup,
    ProviderSetup,
    ServiceTiming,
    free_ports,
)
from gpumarket.provider.runtime import RuntimeSettings

__all__ = ["ProcessLauncher"]

READY_TIMEOUT_S = 60.0  # a cold interpreter imports web3, numpy and compiles nothing: seconds, even loaded
STOP_TIMEOUT_S = 15.0
CLIENT_TIMEOUT_S = 600.0


@dataclass
class _Service:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    arguments: list[str] = field(default_factory=list)  # after `python -m gpumarket`: a restart reuses them
    ready_file: Path | None = None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ProcessLauncher(Launcher):
    description = "on anvil, every oracle, provider and the client its own process"

    def __init__(
        self,
        workdir: Path,
        timing: ServiceTiming,
        runtime: RuntimeSettings = PROCESS_RUNTIME,
        *,
        chain_state: Path | None = None,
    ) -> None:
        """`chain_state`: anvil keeps its chain in this file, so `restart_chain` resumes it."""
        super().__init__(workdir, timing, runtime)
        self._chain_state = chain_state
        self._node: AnvilNode | None = None
        self._services: list[_Service] = []
        self._deployment_path = workdir / "deployment.json"

    @property
    def url(self) -> str:
        if self._node is None:
            raise LaunchError("anvil has not started")
        return self._node.url

    def start_chain(self) -> Web3:
        try:
            self._node = AnvilNode(log_path=self.workdir / "anvil.log", state_path=self._chain_state).start()
        except AnvilError as error:
            raise LaunchError(str(error)) from None
        return connect(self._node.url)

    def _deployment_file(self, deployment: MarketDeployment) -> Path:
        if not self._deployment_path.exists():
            deployment.write(self._deployment_path)
        return self._deployment_path

    def _spawn(self, name: str, arguments: list[str], ready_file: Path | None) -> _Service:
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "gpumarket", *arguments],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        service = _Service(name, process, log_path, arguments, ready_file)
        self._services.append(service)
        if ready_file is not None:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not ready_file.exists():
                if process.poll() is not None:
                    raise LaunchError(f"{name} exited with {process.returncode} before it served:\n{_tail(log_path)}")
                if time.monotonic() > deadline:
                    raise LaunchError(f"{name} did not serve within {READY_TIMEOUT_S:g} s:\n{_tail(log_path)}")
                time.sleep(0.1)
        return service

    def start_provider(self, setup: ProviderSetup, deployment: MarketDeployment) -> None:
        timing = self.timing
        ready = setup.root / "ready.json"
        arguments = [
            "provider", "run", "--rpc", self.url, "--deployment", str(self._deployment_file(deployment)),
            "--key", setup.key_spec, "--db", str(setup.root / "provider.sqlite"), "--workdir", str(setup.root / "jobs"),
            "--port", str(setup.port), "--backend", "numpy", "--confirmations", "0",
            "--poll-interval", str(timing.poll_interval_s), "--meter-interval", str(timing.meter_interval_s),
            "--ready-file", str(ready), "--runtime", self.runtime.kind,
        ]  # fmt: skip
        if self.runtime.containers_conf is not None:
            arguments += ["--containers-conf", str(self.runtime.containers_conf)]
        if self.runtime.ray is not None:
            cluster = self.runtime.ray
            arguments += ["--ray-address", cluster.address, "--ray-dashboard", cluster.dashboard_url]
            arguments += ["--ray-jobs-in", cluster.jobs_in]
            if cluster.node_ip_address is not None:
                arguments += ["--ray-node-ip", cluster.node_ip_address]
        if setup.lazy is not None:
            arguments += [
                "--cheat-skip-fraction",
                str(setup.lazy.skip_fraction),
                "--cheat-skip-after",
                str(setup.lazy.honest_challenges),
            ]
        self._spawn(setup.name, arguments, ready)

    def start_oracle(self, setup: OracleSetup, deployment: MarketDeployment) -> None:
        timing = self.timing
        ready = setup.root / "ready.json"
        arguments = [
            "oracle", "run", "--rpc", self.url, "--deployment", str(self._deployment_file(deployment)),
            "--key", setup.key_spec, "--sender", setup.sender_spec, "--db", str(setup.root / "oracle.sqlite"),
            "--port", str(setup.port), "--confirmations", "0", "--poll-interval", str(timing.poll_interval_s),
            "--tick-interval", str(timing.tick_interval_s), "--heartbeat-interval", str(timing.heartbeat_interval_s),
            "--job-poll-interval", str(timing.status_poll_s), "--silent-after", str(timing.silent_after_s),
            "--fallback-delay", str(timing.fallback_delay_s), "--no-answer-retry", str(timing.no_answer_retry_s),
            "--ready-file", str(ready),
        ]  # fmt: skip
        for peer in setup.peers:
            arguments += ["--peer", peer]
        self._spawn(setup.name, arguments, ready)

    def start_dashboard(self, deployment: MarketDeployment, oracles: Sequence[str]) -> str:
        """`gpumarket dashboard` on the chain, in its own process like every service."""
        ready = self.workdir / "dashboard.ready.json"
        arguments = [
            "dashboard", "--rpc", self.url, "--deployment", str(self._deployment_file(deployment)),
            "--port", str(free_ports(1)[0]), "--confirmations", "0",
            "--poll-interval", str(self.timing.poll_interval_s), "--ready-file", str(ready),
        ]  # fmt: skip
        for url in oracles:
            arguments += ["--oracle", url]
        self._spawn("dashboard", arguments, ready)
        return str(json.loads(ready.read_text())["url"])

    def _service(self, name: str) -> _Service:
        for service in self._services:
            if service.name == name:
                return service
        raise LaunchError(f"no service named {name}")

    def process_of(self, name: str) -> subprocess.Popen[bytes]:
        """The service's current process (`restart_service` replaces it)."""
        return self._service(name).process

    def restart_service(self, name: str, note: str | None = None) -> None:
        """Start an exited service again with its command line; returns once it serves.
        `note` is appended to its log first (a marker between the two runs)."""
        old = self._service(name)
        if old.process.poll() is None:
            raise LaunchError(f"{name} is still running (pid {old.process.pid})")
        if note is not None:
            with open(old.log_path, "a") as log:
                log.write(f"{note}\n")
        if old.ready_file is not None:
            old.ready_file.unlink(missing_ok=True)  # the new process writes it once it serves
        self._services.remove(old)
        self._spawn(name, old.arguments, old.ready_file)

    def restart_chain(self, down_s: float) -> None:
        """Stop anvil (SIGTERM: it writes `chain_state`), wait `down_s`, start it on the same port."""
        if self._node is None:
            raise LaunchError("anvil has not started")
        if self._chain_state is None:
            raise LaunchError("restarting anvil needs chain_state, or the chain would start empty")
        self._node.stop()
        time.sleep(down_s)
        try:
            self._node.start()
        except AnvilError as error:
            raise LaunchError(str(error)) from None

    def stopped_services(self) -> list[str]:
        return [
            f"{service.name}: exited with {service.process.returncode}:\n{_tail(service.log_path)}"
            for service in self._services
            if service.process.poll() is not None
        ]

    def run_client(
        self, key_spec: str, deployment: MarketDeployment, plan: ClientPlan, echo: Callable[[str], None]
    ) -> list[ClientJobReport]:
        plan_path = self.workdir / "client-plan.json"
        report_path = self.workdir / "client-report.json"
        plan_path.write_text(json.dumps(plan.to_json(), indent=1))
        log_path = self.workdir / "client.log"
        command = [
            sys.executable,
            "-m",
            "gpumarket",
            "demo-client",
            "--rpc",
            self.url,
            "--deployment",
            str(self._deployment_file(deployment)),
            "--key",
            key_spec,
            "--plan",
            str(plan_path),
            "--report",
            str(report_path),
        ]
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            assert process.stdout is not None
            relay = threading.Thread(target=self._relay, args=(process.stdout, echo), daemon=True)
            relay.start()
            try:
                code = process.wait(timeout=CLIENT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise LaunchError(f"the client did not finish within {CLIENT_TIMEOUT_S:g} s") from None
            relay.join(timeout=5)
        if code != 0:
            raise LaunchError(f"the client exited with {code}:\n{_tail(log_path)}")
        return [ClientJobReport.from_json(item) for item in json.loads(report_path.read_text())]

    @staticmethod
    def _relay(stream: object, echo: Callable[[str], None]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            echo(line.rstrip("\n"))

    def close(self) -> None:
        services, self._services = self._services, []
        for service in services:
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for service in services:
            try:
                service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()
        if self._node is not None:
            self._node.stop()
            self._node = None
