"""The market the soak runs on: the demo's deployment on anvil, the 2-of-3 committee and three
honest cpu-dev providers, every oracle and agent a `gpumarket` process of the devnet's
ProcessLauncher.

    soak_market = bring_up(launcher, client_mint=..., echo=progress)

As the demo's story does it (gpumarket.demo.story): deploy from deploy/params/default.yaml with
mock tokens, the deployer as the treasury; mint and approve; start the three oracles; then one
provider at a time stake, register, start its agent and wait for the committee's hardware
report, with cpu-dev's floor lowered for a shared machine as the story does. Two differences,
both for the soak's sake:

- `settle_grace` is the contract's minimum (300 s, not the 30 minutes of the file), so a job the
  committee never settles can be expired by the soak's keeper within a soak, and a payment
  still stuck after that is seen as stuck;
- a provider the committee does not verify (it rejects its hardware, or its oracles do not
  agree on a report within VERIFY_TIMEOUT_S) does not stop the soak: it is left out of the load
  (`left_out` says why), and its slash, if any, is in the report like any other slash of an
  honest provider.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from web3 import Web3

from gpumarket.chain.keys import test_account
from gpumarket.chain.limits import MIN_SETTLE_GRACE
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment, deploy_market_web3
from gpumarket.chain.params import load_params
from gpumarket.demo.devnet import ProcessLauncher
from gpumarket.demo.judge import Roles
from gpumarket.demo.launcher import LaunchError, OracleSetup, ProviderSetup, free_ports
from gpumarket.demo.story import (
    CLIENT_ACCOUNT,
    COMMITTEE,
    DEFAULT_PARAMS,
    DEPLOYER_ACCOUNT,
    ORACLE_SENDER_ACCOUNTS,
    SHARED_MACHINE_CPU_DEV_FLOOR_GOPS,
    TOKEN,
    ProviderRole,
    fund_roles,
    wait_verified,
)
from gpumarket.measure.classes import CPU_DEV

__all__ = [
    "JOB_MAX_DURATION_S",
    "JOB_MAX_PRICE",
    "SETTLE_GRACE_S",
    "SOAK_PROVIDERS",
    "SoakError",
    "SoakMarket",
    "bring_up",
]

SOAK_PROVIDERS = (
    ProviderRole("provider-1", 1, 10**16),
    ProviderRole("provider-2", 2, 12 * 10**15),
    ProviderRole("provider-3", 3, 8 * 10**15),
)
# The soak's jobs' terms (not the contract's limits, gpumarket.chain.limits).
JOB_MAX_PRICE = 2 * 10**16  # per GPU-second, at or above every provider's price
JOB_MAX_DURATION_S = 120  # a workload takes seconds; minutes on a saturated machine would still fit
SETTLE_GRACE_S = MIN_SETTLE_GRACE  # the contract's minimum: jobs settle soon after they end
PROVIDER_MINT = 2_000 * TOKEN
STAKE = 1_500 * TOKEN
VERIFY_TIMEOUT_S = 90.0  # per provider: three challenges on a machine the busy loops saturate


class SoakError(RuntimeError):
    """The soak could not set its market up (the message says where and why)."""


@dataclass(frozen=True)
class SoakMarket:
    w3: Web3
    deployment: MarketDeployment
    market: Market
    roles: Roles
    oracles: tuple[OracleSetup, ...]
    providers: tuple[ProviderSetup, ...]
    verified: tuple[str, ...]  # names of the providers the committee verified: the load's providers
    left_out: dict[str, str]  # the others: name -> why
    settle_grace_s: int

    def address_of(self, provider_name: str) -> str:
        return self.roles.accounts()[provider_name]


def bring_up(launcher: ProcessLauncher, *, client_mint: int, echo: Callable[[str], None]) -> SoakMarket:
    """Deploy, fund and start everything (see the module docstring)."""
    w3 = launcher.start_chain()
    params = load_params(DEFAULT_PARAMS).with_floor(CPU_DEV.id, SHARED_MACHINE_CPU_DEV_FLOOR_GOPS)
    params = params.model_copy(
        update={"parameters": params.parameters.model_copy(update={"settle_grace": SETTLE_GRACE_S})}
    )
    deployer = test_account(DEPLOYER_ACCOUNT)
    deployment = deploy_market_web3(w3, deployer, params)
    market = deployment.market_at(w3)
    echo(
        f"GpuMarket deployed at {deployment.market} (settle grace {SETTLE_GRACE_S} s, "
        f"cpu-dev floor {SHARED_MACHINE_CPU_DEV_FLOOR_GOPS} GOPS)"
    )
    roles = Roles(
        treasury=deployer.address,
        client=test_account(CLIENT_ACCOUNT).address,
        providers={test_account(role.account).address: role for role in SOAK_PROVIDERS},
    )
    fund_roles(market, SOAK_PROVIDERS, PROVIDER_MINT, client_mint)

    workdir = launcher.workdir
    ports = free_ports(COMMITTEE + len(SOAK_PROVIDERS))
    urls = [f"http://127.0.0.1:{port}" for port in ports[:COMMITTEE]]
    oracles = tuple(
        OracleSetup(
            f"oracle-{i}",
            f"test-oracle:{i}",
            f"test-account:{ORACLE_SENDER_ACCOUNTS[i]}",
            port,
            tuple(url for j, url in enumerate(urls) if j != i),
            workdir / f"oracle-{i}",
        )
        for i, port in enumerate(ports[:COMMITTEE])
    )
    for oracle in oracles:
        oracle.root.mkdir(parents=True, exist_ok=True)
        launcher.start_oracle(oracle, deployment)
        echo(f"{oracle.name} up at {oracle.url}")

    providers = []
    verified = []
    left_out: dict[str, str] = {}
    # One provider at a time, as the story does: the registration challenges then measure one agent.
    for role, port in zip(SOAK_PROVIDERS, ports[COMMITTEE:], strict=True):
        setup = ProviderSetup(role.name, f"test-account:{role.account}", port, workdir / role.name)
        setup.root.mkdir(parents=True, exist_ok=True)
        own = market.with_signer(test_account(role.account))
        own.stake(STAKE)
        own.register(CPU_DEV.id, 1, role.price, setup.url)  # before its agent starts: the agent checks
        launcher.start_provider(setup, deployment)
        providers.append(setup)
        try:
            why_not = wait_verified(launcher, market, deployment, test_account(role.account).address, VERIFY_TIMEOUT_S)
        except LaunchError as error:
            raise SoakError(f"while starting: {error}") from None
        if why_not is None:
            verified.append(role.name)
            echo(f"{role.name}: verified by the committee")
        else:
            left_out[role.name] = why_not
            echo(f"{role.name}: NOT VERIFIED ({why_not}): left out of the load")
    return SoakMarket(
        w3, deployment, market, roles, oracles, tuple(providers), tuple(verified), left_out, SETTLE_GRACE_S
    )
