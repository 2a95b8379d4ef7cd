"""The demo's story, played through a Launcher, and judged against the protocol's rules.

1. Start the chain; deploy GpuMarket from deploy/params/default.yaml (two mock tokens, the
   2-of-3 committee of test oracles 0-2; the deployer is the treasury; cpu-dev's floor
   lowered to `cpu_dev_floor_gops` for a shared machine); mint stake tokens to
   the providers and payment tokens to the client; note everyone's holdings.
2. The three oracles start. Then, one provider at a time, it stakes and registers one
   cpu-dev GPU at its price and the endpoint it will serve, its service starts (the lazy one
   with a prover honest for its first `lazy_honest_challenges` challenges, one per oracle,
   then skipping `lazy_skip_fraction` of the tiles), and the committee verifies its hardware.
3. The client runs one job directed to each provider (real commands: gpumarket.demo.
   workloads), then, if `open_job`, one job open to any provider; it sends each spec,
   follows the jobs to settlement, fetches and checks every completed job's result, claims.
4. Judge (gpumarket.demo.judge): each job's outcome and money against the rules, each
   account's holdings, the conservation of both tokens.

Progress goes to `echo` as it happens; the result is a DemoResult (gpumarket.demo.judge),
whose `deviations` say what did not go as the protocol says. A step that cannot complete
(a service that does not start, a timeout) raises DemoError.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gpumarket.agentapi.errors import ClientError
from gpumarket.chain.deploy import DeploymentError
from gpumarket.chain.errors import ChainError
from gpumarket.chain.events import HardwareRejected, scan_events
from gpumarket.chain.keys import test_account
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment, deploy_market_web3
from gpumarket.chain.params import ParamsError, load_params
from gpumarket.demo.client import ClientPlan, ClientTimeout, JobPlan
from gpumarket.demo.judge import DemoResult, Roles, judge
from gpumarket.demo.launcher import Launcher, LaunchError, LazyPlan, OracleSetup, ProviderSetup, free_ports
from gpumarket.demo.ledger import snapshot
from gpumarket.demo.narrator import Narrator
from gpumarket.measure.classes import CPU_DEV

__all__ = ["DEFAULT_PARAMS", "DemoError", "ProviderRole", "StoryParams", "run_story"]

DEFAULT_PARAMS = Path(__file__).resolve().parents[3] / "deploy" / "params" / "default.yaml"
# cpu-dev's floor for the local worlds (the story, the soak): 2 GOPS, not default.yaml's 10. They
# run on whatever machine they are given, often shared (an honest numpy prover on a loaded
# 2-core machine measured 3 to 11 GOPS); the rules that judge a measurement are the same.
SHARED_MACHINE_CPU_DEV_FLOOR_GOPS = 2
TOKEN = 10**18
COMMITTEE = 3  # deploy/params/default.yaml: test oracles 0, 1, 2, threshold 2

# Test accounts (funded on anvil and the embedded chain): who plays whom.
DEPLOYER_ACCOUNT = 0  # deploys, owns, and is the treasury ("treasury: deployer")
CLIENT_ACCOUNT = 4
ORACLE_SENDER_ACCOUNTS = (5, 6, 7)  # pay the oracles' transactions (test-oracle keys hold no ether)


class DemoError(RuntimeError):
    """The story could not be played to its end (the message says where and why)."""


@dataclass(frozen=True)
class ProviderRole:
    name: str
    account: int  # test account index
    price: int  # payment-token units per GPU-second
    lazy: bool = False


DEFAULT_PROVIDERS = (
    ProviderRole("honest-1", 1, 10**16),
    ProviderRole("honest-2", 2, 12 * 10**15),
    ProviderRole("lazy", 3, 8 * 10**15, lazy=True),
)


@dataclass(frozen=True)
class StoryParams:
    """The story's knobs. `lazy_skip_fraction` 0 makes the lazy provider honest after all,
    which the judge must then report (its job is expected to FAIL)."""

    providers: tuple[ProviderRole, ...] = DEFAULT_PROVIDERS
    lazy_skip_fraction: float = 0.5
    lazy_honest_challenges: int = COMMITTEE  # the hardware check at registration: one per oracle
    open_job: bool = True
    cpu_dev_floor_gops: int = SHARED_MACHINE_CPU_DEV_FLOOR_GOPS
    provider_mint: int = 2_000 * TOKEN
    stake: int = 1_500 * TOKEN
    client_mint: int = 100 * TOKEN
    max_price: int = 2 * 10**16  # per GPU-second, at or above every provider's price
    max_duration: int = 120
    verify_timeout_s: float = 60.0  # per provider
    wave_timeout_s: float = 90.0
    params_path: Path = DEFAULT_PARAMS
    image: str | None = None  # jobs in containers of this image (pinned by digest); None: host processes

    def __post_init__(self) -> None:
        if not self.providers or len({p.name for p in self.providers}) != len(self.providers):
            raise ValueError("the story needs providers with distinct names")
        if {p.account for p in self.providers} & {DEPLOYER_ACCOUNT, CLIENT_ACCOUNT, *ORACLE_SENDER_ACCOUNTS}:
            raise ValueError("a provider's test account is taken by another role")
        if any(p.price > self.max_price for p in self.providers):
            raise ValueError("every provider's price must be at most the client's max_price")


@dataclass
class Progress:
    """Timestamped progress lines, from any thread."""

    echo: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, line: str) -> None:
        with self._lock:
            self.echo(f"[{time.monotonic() - self.started:5.1f}s] {line}")


def run_story(
    launcher: Launcher, params: StoryParams = StoryParams(), *, echo: Callable[[str], None] = print
) -> DemoResult:
    """Play the story (see the module docstring) and judge it."""
    # Containers run an image (here or on a cluster's nodes); processes run version 1 specs (commands).
    if (params.image is None) == launcher.runtime.runs_containers:
        raise DemoError(
            f"the story's jobs need {'processes' if params.image is None else 'containers'}, the launcher's "
            f"providers run {'containers' if launcher.runtime.runs_containers else 'processes'}"
        )
    progress = Progress(echo)
    try:
        return _play(launcher, params, progress)
    except (LaunchError, ClientTimeout, ClientError, ChainError, DeploymentError, ParamsError, OSError) as error:
        raise DemoError(f"{type(error).__name__}: {error}") from error


def _play(launcher: Launcher, params: StoryParams, progress: Progress) -> DemoResult:
    w3 = launcher.start_chain()
    progress(f"chain up ({launcher.description})")
    deployer = test_account(DEPLOYER_ACCOUNT)
    deploy_params = load_params(params.params_path).with_floor(CPU_DEV.id, params.cpu_dev_floor_gops)
    deployment = deploy_market_web3(w3, deployer, deploy_params)
    market = deployment.market_at(w3)
    progress(
        f"GpuMarket deployed at {deployment.market} with mock tokens mSTK and mPAY, committee 2-of-3, "
        f"cpu-dev floor {params.cpu_dev_floor_gops} GOPS"
    )
    roles = Roles(
        treasury=deployer.address,
        client=test_account(CLIENT_ACCOUNT).address,
        providers={test_account(role.account).address: role for role in params.providers},
    )
    fund_roles(market, params.providers, params.provider_mint, params.client_mint)
    before = snapshot(market, roles.accounts())
    progress(
        f"minted {params.provider_mint // TOKEN:,} mSTK to each provider, {params.client_mint // TOKEN:,} mPAY "
        "to the client"
    )

    workdir = launcher.workdir
    ports = free_ports(COMMITTEE + len(params.providers))
    with Narrator(market, roles.names(), progress, from_block=deployment.block) as narrator:
        tell = narrator.echo_after_news
        urls = [f"http://127.0.0.1:{port}" for port in ports[:COMMITTEE]]
        for i, port in enumerate(ports[:COMMITTEE]):
            oracle = OracleSetup(
                f"oracle-{i}",
                f"test-oracle:{i}",
                f"test-account:{ORACLE_SENDER_ACCOUNTS[i]}",
                port,
                tuple(url for j, url in enumerate(urls) if j != i),
                workdir / f"oracle-{i}",
            )
            oracle.root.mkdir(parents=True, exist_ok=True)
            launcher.start_oracle(oracle, deployment)
            tell(f"{oracle.name}: oracle service up at {oracle.url}")
        dashboard = launcher.start_dashboard(deployment, urls)
        if dashboard is not None:
            tell(f"dashboard: {dashboard} (the market in a browser, live while the story runs)")
        # One provider at a time: the committee's challenges at registration then measure one
        # machine that is not also answering the others' (every challenge shares these cores).
        for role, port in zip(params.providers, ports[COMMITTEE:], strict=True):
            lazy = LazyPlan(params.lazy_skip_fraction, params.lazy_honest_challenges) if role.lazy else None
            setup = ProviderSetup(role.name, f"test-account:{role.account}", port, workdir / role.name, lazy)
            setup.root.mkdir(parents=True, exist_ok=True)
            provider_market = market.with_signer(test_account(role.account))
            provider_market.stake(params.stake)
            provider_market.register(CPU_DEV.id, 1, role.price, setup.url)  # before its service: it checks
            launcher.start_provider(setup, deployment)
            tell(f"{setup.name}: provider service up at {setup.url}" + (" (lazy prover)" if lazy else ""))
            why_not = wait_verified(
                launcher, market, deployment, test_account(role.account).address, params.verify_timeout_s
            )
            if why_not is not None:
                raise DemoError(f"{role.name}: {why_not}")
        tell("every provider is verified: the client starts")

        plan = ClientPlan(
            jobs=tuple(
                JobPlan(i, test_account(role.account).address, wave=0) for i, role in enumerate(params.providers)
            )
            + ((JobPlan(len(params.providers), None, wave=1),) if params.open_job else ()),
            max_price=params.max_price,
            max_duration=params.max_duration,
            gpu_class=CPU_DEV.id,
            wave_timeout_s=params.wave_timeout_s,
            image=params.image,
        )
        reports = launcher.run_client(f"test-account:{CLIENT_ACCOUNT}", deployment, plan, tell)
        stopped = launcher.stopped_services()
        if stopped:
            raise DemoError("services stopped during the story: " + "; ".join(stopped))
        result = judge(market, deployment, roles, reports, before, launcher.runtime.kind)
    return result


def fund_roles(market: Market, providers: Sequence[ProviderRole], provider_mint: int, client_mint: int) -> None:
    """Mint and approve: stake tokens to each provider, payment tokens to the client (mock tokens)."""
    for role in providers:
        key = test_account(role.account)
        token = market.stake_token.with_signer(key)
        token.mint(key.address, provider_mint)
        token.approve(market.address)
    client = test_account(CLIENT_ACCOUNT)
    token = market.payment_token.with_signer(client)
    token.mint(client.address, client_mint)
    token.approve(market.address)


def wait_verified(
    launcher: Launcher, market: Market, deployment: MarketDeployment, provider: str, timeout_s: float
) -> str | None:
    """None once the committee verified `provider`; why not when it rejected its hardware or time ran
    out. LaunchError when a service stopped meanwhile."""
    deadline = time.monotonic() + timeout_s
    while not market.is_verified(provider):
        rejected = [
            e
            for e in scan_events(market, [HardwareRejected.name], from_block=deployment.block)
            if isinstance(e, HardwareRejected) and e.provider == provider
        ]
        if rejected:
            return (
                f"the committee rejected its hardware ({rejected[0].measured_throughput} of "
                f"{rejected[0].required_throughput} GOPS, slashed {rejected[0].slashed})"
            )
        stopped = launcher.stopped_services()
        if stopped:
            raise LaunchError("services stopped: " + "; ".join(stopped))
        if time.monotonic() > deadline:
            return f"the committee did not verify it within {timeout_s:g} s"
        time.sleep(0.25)
    return None
