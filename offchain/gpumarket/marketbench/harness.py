"""The market the benchmark loads: anvil, the contracts, three oracle processes, simulated agents.

    with MarketHarness(workdir, MarketSettings(providers=25, ...), echo=print) as market:
        market.start()                        # chain, contracts, agents, oracles, providers verified
        market.restart_oracles(mode)          # fresh oracle processes in a settlement mode
        market.oracle_pids, market.oracle_urls, market.agent_url, market.provider_keys ...

In order, as an operator would bring each part up:

1. **anvil** (gpumarket.chain.anvil), its log in the working directory.
2. **The contracts**: gpumarket.chain.market_deploy.deploy_market_web3 with
   deploy/params/default.yaml (mock tokens, the 2-of-3 test committee), cpu-small's floor set
   to ``floor_gops`` per GPU: the simulated providers share this machine's cores, as the
   local worlds of the story and the soak do (gpumarket.demo.story).
3. **The simulated agents**: one process (gpumarket.marketbench.agent) serving every
   provider under its own endpoint ``<url>/p/<i>``.
4. **Three oracles**, each ``gpumarket oracle run`` in its own process (test oracle keys 0-2,
   test accounts 5-7 paying their transactions, each other's URLs as peers), started as an
   operator starts them: the timings are :class:`OracleTimings`.
5. **The providers**: ``providers`` keys derived from a fixed phrase (funded with ether on
   anvil), each minting stake tokens, staking, and registering ``gpus_per_provider`` cpu-small
   GPUs at its endpoint; the oracles challenge each agent and submit the committee's hardware
   reports. ``start`` returns once every provider is verified, and fails loudly when one is
   rejected or not verified in time.

``restart_oracles(mode)`` stops the three oracles and starts them again on the same stores
and follower cursors with the settlement mode's flags (``--batch-size``, ``--batch-max-age``):
each load is measured on fresh processes, and nothing of the setup (the hardware checks) is
in their memory or CPU time. A process that exits early raises :class:`MarketBenchError`
with the end of its log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from eth_utils.crypto import keccak
from web3 import Web3

from gpumarket.chain.anvil import AnvilError, AnvilNode
from gpumarket.chain.connection import connect, fund
from gpumarket.chain.events import HardwareRejected, scan_events
from gpumarket.chain.keys import ServiceKey, test_account
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment, deploy_market_web3
from gpumarket.chain.params import load_params
from gpumarket.demo.launcher import free_ports
from gpumarket.demo.story import COMMITTEE, DEFAULT_PARAMS, DEPLOYER_ACCOUNT, ORACLE_SENDER_ACCOUNTS, TOKEN
from gpumarket.marketbench.agent import BENCH_CLASS, SimProvider

__all__ = [
    "MarketBenchError",
    "MarketHarness",
    "MarketSettings",
    "OracleTimings",
    "SettlementMode",
    "batching_available",
    "provider_key",
]

READY_TIMEOUT_S = 120.0  # a cold interpreter on a loaded 2-core machine imports web3 and numpy
STOP_TIMEOUT_S = 20.0
PROVIDER_ETHER = 10**20
PROVIDER_STAKE = 2_000 * TOKEN
PRICE = 10**12  # payment-token units per GPU-second
# One challenge round of cpu-small takes about 0.005 s of a free core here; the verification of
# every provider (three oracles each) waits for that and more on a loaded machine.
VERIFY_SECONDS_PER_ROUND = 0.05
REGISTER_WORKERS = 4
# The oracles' --silent-after: an oracle's start challenge of a job may wait for every other
# job's (three oracles, ~0.1 s of proving each, more on a loaded 2-core machine) before its turn comes.
SILENT_AFTER_MIN_S = 600.0
SILENT_AFTER_PER_JOB_S = 10.0


class MarketBenchError(RuntimeError):
    """The benchmark's market did not come up or a load did not complete (the message says why)."""


@dataclass(frozen=True)
class OracleTimings:
    """What the oracles run with (``gpumarket oracle run`` options); the services' defaults but
    ``confirmations`` (anvil: none needed) and ``silent_after_s`` (see the field)."""

    confirmations: int = 0
    follower_poll_interval_s: float = 0.5
    tick_interval_s: float = 0.5
    heartbeat_interval_s: float = 60.0
    job_poll_interval_s: float = 2.0
    # Every simulated provider's challenges queue at this machine's one prover: an oracle may wait
    # minutes for a turn at 100s of jobs, which is this machine's limit, not an agent's silence.
    # None: SILENT_AFTER_MIN_S, or SILENT_AFTER_PER_JOB_S per job of the load when that is more.
    silent_after_s: float | None = None
    fallback_delay_s: float = 30.0
    workers: int = 16
    max_lag_s: float = 30.0
    no_answer_retry_s: float = 10.0

    def for_jobs(self, jobs: int) -> OracleTimings:
        """These timings for a load of ``jobs``: ``silent_after_s`` filled in when left out."""
        if self.silent_after_s is not None:
            return self
        return replace(self, silent_after_s=max(SILENT_AFTER_MIN_S, SILENT_AFTER_PER_JOB_S * jobs))

    def arguments(self) -> list[str]:
        if self.silent_after_s is None:
            raise ValueError("silent_after_s is left out: use for_jobs(n)")
        return [
            "--confirmations", str(self.confirmations),
            "--poll-interval", str(self.follower_poll_interval_s),
            "--tick-interval", str(self.tick_interval_s),
            "--heartbeat-interval", str(self.heartbeat_interval_s),
            "--job-poll-interval", str(self.job_poll_interval_s),
            "--silent-after", str(self.silent_after_s),
            "--fallback-delay", str(self.fallback_delay_s),
            "--job-workers", str(self.workers),
            "--max-job-lag", str(self.max_lag_s),
            "--no-answer-retry", str(self.no_answer_retry_s),
        ]  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SettlementMode:
    """How the oracles settle: each job alone (``batch_size`` 0) or in batches."""

    name: str
    batch_size: int = 0
    batch_max_age_s: float = 10.0

    def arguments(self) -> list[str]:
        if not self.batch_size:
            return []
        return ["--batch-size", str(self.batch_size), "--batch-max-age", str(self.batch_max_age_s)]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def batching_available() -> str | None:
    """None when ``gpumarket oracle run`` takes ``--batch-size``; why not otherwise."""
    from gpumarket.oracle.cli import oracle

    run = oracle.commands.get("run")
    options = {option for param in (run.params if run else []) for option in getattr(param, "opts", [])}
    if "--batch-size" not in options or "--batch-max-age" not in options:
        return "`gpumarket oracle run --help` lists no --batch-size/--batch-max-age: the oracles cannot batch"
    return None


@dataclass(frozen=True)
class MarketSettings:
    providers: int
    gpus_per_provider: int = 4
    floor_gops: int = 1
    prover_slots: int = 1
    price: int = PRICE
    oracle: OracleTimings = field(default_factory=OracleTimings)
    verify_timeout_s: float | None = None  # default: from the providers' challenge rounds

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "oracle": self.oracle.to_json()}


def provider_key(index: int) -> ServiceKey:
    """Simulated provider ``index``'s key: derived from a public phrase (local chains only)."""
    return ServiceKey(keccak(text=f"gpumarket marketbench provider {index}"), f"marketbench-provider:{index}")


@dataclass
class _Process:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    ready_file: Path
    ready: dict[str, Any] = field(default_factory=dict)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _child_pid(command_name: str) -> int | None:
    """The pid of this process's child whose command is ``command_name`` (anvil)."""
    own = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        if name == command_name and text[text.rindex(")") + 2 :].split()[1] == own:
            return int(entry.name)
    return None


class MarketHarness:
    """One market on this machine; see the module docstring."""

    def __init__(self, workdir: Path, settings: MarketSettings, *, echo: Callable[[str], None] = print) -> None:
        if settings.providers < 1 or settings.gpus_per_provider < 1:
            raise ValueError("at least one provider with one GPU")
        self.workdir = workdir
        self.settings = settings
        self.echo = echo
        self.node: AnvilNode | None = None
        self.w3: Web3 | None = None
        self.deployment: MarketDeployment | None = None
        self.deployment_path = workdir / "deployment.json"
        self.agent: _Process | None = None
        self.oracles: list[_Process] = []
        self.oracle_ports: list[int] = []
        self.provider_keys = [provider_key(i) for i in range(settings.providers)]
        self.mode: SettlementMode | None = None
        self.setup_seconds = 0.0

    # ------------------------------------------------------------------ views

    @property
    def market(self) -> Market:
        if self.w3 is None or self.deployment is None:
            raise MarketBenchError("the market is not deployed")
        return self.deployment.market_at(self.w3)

    @property
    def agent_url(self) -> str:
        if self.agent is None:
            raise MarketBenchError("the simulated agents are not running")
        return str(self.agent.ready["url"])

    @property
    def agent_pid(self) -> int:
        assert self.agent is not None
        return self.agent.process.pid

    @property
    def anvil_pid(self) -> int | None:
        return _child_pid("anvil")

    @property
    def oracle_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.oracle_ports]

    @property
    def oracle_pids(self) -> dict[str, int]:
        return {oracle.name: oracle.process.pid for oracle in self.oracles}

    @property
    def oracle_senders(self) -> list[str]:
        return [test_account(ORACLE_SENDER_ACCOUNTS[i]).address for i in range(COMMITTEE)]

    def endpoint(self, index: int) -> str:
        return f"{self.agent_url}/p/{index}"

    # ------------------------------------------------------------------ bring-up

    def start(self) -> MarketHarness:
        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.node = AnvilNode(log_path=self.workdir / "anvil.log").start()
        except AnvilError as error:
            raise MarketBenchError(str(error)) from None
        self.w3 = connect(self.node.url)
        params = load_params(DEFAULT_PARAMS).with_floor(BENCH_CLASS.id, self.settings.floor_gops)
        self.deployment = deploy_market_web3(self.w3, test_account(DEPLOYER_ACCOUNT), params, report=lambda _: None)
        self.deployment.write(self.deployment_path)
        self.echo(
            f"anvil at {self.node.url}; GpuMarket at {self.deployment.market} "
            f"({BENCH_CLASS.name} floor {self.settings.floor_gops} GOPS per GPU)"
        )
        self._start_agent()
        self.oracle_ports = free_ports(COMMITTEE)
        self._start_oracles(SettlementMode("setup"))
        self._register_providers()
        self._wait_verified()
        self.setup_seconds = time.monotonic() - started
        return self

    def _spawn(self, name: str, arguments: Sequence[str], ready_file: Path) -> _Process:
        ready_file.unlink(missing_ok=True)
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, *arguments],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        return _Process(name, process, log_path, ready_file)

    def _await_ready(self, processes: Sequence[_Process]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for started in processes:
            while not started.ready_file.exists():
                if started.process.poll() is not None:
                    raise MarketBenchError(
                        f"{started.name} exited with {started.process.returncode} before it served:\n"
                        f"{_tail(started.log_path)}"
                    )
                if time.monotonic() > deadline:
                    raise MarketBenchError(f"{started.name} did not serve within {READY_TIMEOUT_S:g} s")
                time.sleep(0.1)
            started.ready = json.loads(started.ready_file.read_text())

    def _start_agent(self) -> None:
        settings = self.settings
        providers = [
            SimProvider(i, key.address, settings.gpus_per_provider).to_json()
            for i, key in enumerate(self.provider_keys)
        ]
        providers_file = self.workdir / "providers.json"
        providers_file.write_text(json.dumps(providers))
        # Every oracle keeps a connection per followed job; challenges open their own.
        connections = 3 * COMMITTEE * settings.providers * settings.gpus_per_provider + 256
        agent = self._spawn(
            "agents",
            [
                "-m", "gpumarket.marketbench.agent",
                "--providers", str(providers_file),
                "--root", str(self.workdir / "agents"),
                "--port", str(free_ports(1)[0]),
                "--prover-slots", str(settings.prover_slots),
                "--max-connections", str(connections),
                "--ready-file", str(self.workdir / "agents.ready.json"),
            ],
            self.workdir / "agents.ready.json",
        )  # fmt: skip
        self.agent = agent
        self._await_ready([agent])
        self.echo(f"simulated agents for {settings.providers} providers at {self.agent_url}")

    def _oracle_arguments(self, index: int, mode: SettlementMode) -> list[str]:
        assert self.node is not None
        root = self.workdir / f"oracle-{index}"
        root.mkdir(parents=True, exist_ok=True)
        arguments = [
            "-m", "gpumarket", "oracle", "run",
            "--rpc", self.node.url, "--deployment", str(self.deployment_path),
            "--key", f"test-oracle:{index}", "--sender", f"test-account:{ORACLE_SENDER_ACCOUNTS[index]}",
            "--db", str(root / "oracle.sqlite"), "--port", str(self.oracle_ports[index]),
            "--ready-file", str(root / "ready.json"),
            *self.settings.oracle.arguments(), *mode.arguments(),
        ]  # fmt: skip
        for j, url in enumerate(self.oracle_urls):
            if j != index:
                arguments += ["--peer", url]
        return arguments

    def _start_oracles(self, mode: SettlementMode) -> None:
        self.oracles = [
            self._spawn(f"oracle-{i}", self._oracle_arguments(i, mode), self.workdir / f"oracle-{i}" / "ready.json")
            for i in range(COMMITTEE)
        ]
        self._await_ready(self.oracles)
        self.mode = mode

    def restart_oracles(self, mode: SettlementMode) -> None:
        """Fresh oracle processes on the same stores, in ``mode`` (see the module docstring)."""
        self._stop_processes(self.oracles)
        with open(self.workdir / "oracle-restarts.log", "a") as notes:
            notes.write(f"{time.time():.3f} restart in mode {mode.name}\n")
        self._start_oracles(mode)

    def _register_one(self, index: int) -> None:
        assert self.w3 is not None and self.deployment is not None
        key = self.provider_keys[index]
        fund(self.w3, key.address, PROVIDER_ETHER)
        own = self.deployment.market_at(self.w3, signer=key)
        token = own.stake_token
        token.mint(key.address, PROVIDER_STAKE)
        token.approve(own.address)
        own.stake(PROVIDER_STAKE)
        own.register(BENCH_CLASS.id, self.settings.gpus_per_provider, self.settings.price, self.endpoint(index))

    def _register_providers(self) -> None:
        settings = self.settings
        started = time.monotonic()
        with ThreadPoolExecutor(REGISTER_WORKERS, thread_name_prefix="register") as pool:
            list(pool.map(self._register_one, range(settings.providers)))
        self.echo(
            f"{settings.providers} providers of {settings.gpus_per_provider} {BENCH_CLASS.name} GPU(s) staked and "
            f"registered in {time.monotonic() - started:.1f} s; waiting for the committee's hardware reports"
        )

    def _wait_verified(self) -> None:
        settings = self.settings
        market = self.market
        rounds = 3 * settings.providers * settings.gpus_per_provider * BENCH_CLASS.rounds
        timeout = settings.verify_timeout_s or 120.0 + rounds * VERIFY_SECONDS_PER_ROUND
        started = time.monotonic()
        waiting = {key.address for key in self.provider_keys}
        while waiting:
            waiting = {address for address in waiting if not market.is_verified(address)}
            if not waiting:
                break
            rejected = [
                event
                for event in scan_events(market, [HardwareRejected.name], from_block=self.deployment_block)
                if isinstance(event, HardwareRejected)
            ]
            if rejected:
                first = rejected[0]
                raise MarketBenchError(
                    f"the committee rejected {len(rejected)} provider(s)' hardware, e.g. {first.provider}: "
                    f"{first.measured_throughput} of {first.required_throughput} GOPS (this machine is too "
                    "loaded for the floor: lower --floor-gops or --gpus-per-provider)"
                )
            self.check_running()
            if time.monotonic() - started > timeout:
                raise MarketBenchError(
                    f"{len(waiting)} of {settings.providers} providers not verified within {timeout:.0f} s; "
                    f"see the oracles' logs in {self.workdir}"
                )
            time.sleep(0.5)
        self.echo(f"every provider verified in {time.monotonic() - started:.1f} s")

    @property
    def deployment_block(self) -> int:
        assert self.deployment is not None
        return self.deployment.block

    # ------------------------------------------------------------------ health and shutdown

    def stopped(self) -> list[str]:
        """The processes that exited on their own, each with the end of its log."""
        processes = [*self.oracles, *([self.agent] if self.agent else [])]
        return [
            f"{p.name} exited with {p.process.returncode}:\n{_tail(p.log_path)}"
            for p in processes
            if p.process.poll() is not None
        ]

    def check_running(self) -> None:
        stopped = self.stopped()
        if stopped:
            raise MarketBenchError("a service stopped: " + "\n".join(stopped))
        if self.node is not None and not self.node.running:
            raise MarketBenchError(f"anvil stopped: {_tail(self.node.log_path)}")

    def log_tails(self, lines: int = 15) -> dict[str, str]:
        return {p.name: _tail(p.log_path, lines) for p in self.oracles}

    @staticmethod
    def _stop_processes(processes: Sequence[_Process]) -> None:
        for started in processes:
            if started.process.poll() is None:
                started.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for started in processes:
            try:
                started.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                started.process.kill()
                started.process.wait()

    def close(self) -> None:
        self._stop_processes([*self.oracles, *([self.agent] if self.agent else [])])
        self.oracles, self.agent = [], None
        if self.node is not None:
            self.node.stop()
            self.node = None

    def __enter__(self) -> MarketHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
