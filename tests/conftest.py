"""Role-named fixtures and builders shared by every contract test.

Roles: owner (governance), treasury, provider / provider2, client / client2,
keeper (anyone), attacker; `committee` holds the oracle keys (2-of-3).
Deployments are module-scoped; ape's isolation snapshots the chain per test.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gpumarket.chain.anvil import ANVIL_NPM_PACKAGE, find_anvil
from gpumarket.containers.local_image import ImageBuildError, ensure_python_image
from gpumarket.signing.eip712 import Domain, Outcome
from gpumarket.testing.hypothesis_profiles import register_profiles
from helpers.committee import Committee, hardware_report, job_report
from helpers.constants import CLASS_FLOORS, CPU_DEV, DAY, HOUR, MIN_STAKE, NO_COMPANIONS, PRICE, TOKEN

register_profiles()


@pytest.fixture
def anvil_binary() -> Path:
    """anvil's binary (the off-chain suites' local node). Skipped, saying why, only where neither
    anvil nor npm exists; with npm present an uninstalled anvil is a failure: `make test`
    installs it (`make anvil`)."""
    binary = find_anvil()
    if binary is None:
        if shutil.which("npm") is not None:
            pytest.fail(f"anvil is not installed but npm is: run `make anvil` (npm install {ANVIL_NPM_PACKAGE})")
        reason = f"neither anvil nor npm is installed: this test needs anvil ({ANVIL_NPM_PACKAGE} from npm)"
        print(reason)
        pytest.skip(reason)
    return binary


PODMAN_CONF = Path(__file__).resolve().parents[1] / "deploy" / "podman" / "containers.conf"


def _can_install_containers() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


@pytest.fixture(scope="session")
def podman_env() -> dict[str, str]:
    """The environment podman runs with in tests (the project's containers.conf). Skipped, saying
    why, only where podman is missing and cannot be installed (no root or no apt-get); where it
    could be, a missing podman is a failure: `make test` installs it (`make containers`)."""
    if shutil.which("podman") is None or shutil.which("runc") is None:
        if _can_install_containers():
            pytest.fail("podman is not installed but could be: run `make containers`")
        reason = "podman and runc are not installed and cannot be here (needs root and apt-get)"
        print(reason)
        pytest.skip(reason)
    return {"CONTAINERS_CONF": str(PODMAN_CONF)}


@pytest.fixture(scope="session")
def python_image(podman_env) -> str:
    """A local Python image pinned by digest (built once, about 20 s; gpumarket.containers.local_image)."""
    try:
        return ensure_python_image(podman_env)
    except ImageBuildError as error:
        pytest.fail(f"the local Python image could not be built: {error}")


@pytest.fixture(scope="session")
def owner(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def treasury(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def provider(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def provider2(accounts):
    return accounts[3]


@pytest.fixture(scope="session")
def client(accounts):
    return accounts[4]


@pytest.fixture(scope="session")
def client2(accounts):
    return accounts[5]


@pytest.fixture(scope="session")
def keeper(accounts):
    return accounts[6]


@pytest.fixture(scope="session")
def attacker(accounts):
    return accounts[7]


@pytest.fixture(scope="session")
def committee():
    return Committee.of_size(3, threshold=2)


@pytest.fixture(scope="module")
def stake_token(project, owner):
    return project.MockToken.deploy("Stake", "STK", 18, sender=owner)


@pytest.fixture(scope="module")
def payment_token(project, owner):
    return project.MockToken.deploy("Payment", "PAY", 18, sender=owner)


@pytest.fixture(scope="module")
def deploy_market(project, owner, treasury):
    """Builder: a GpuMarket with the test GPU classes listed; `companions` (bond amount,
    withdrawal delay) has it create its BatchSettler and OracleBonds from blueprints."""

    def deploy(stake, payment, members, threshold, companions: tuple[int, int] | None = None):
        last = NO_COMPANIONS
        if companions is not None:
            blueprints = [
                project[name].declare(sender=owner).contract_address for name in ("BatchSettler", "OracleBonds")
            ]
            last = (*blueprints, *companions)
        market = project.GpuMarket.deploy(stake, payment, treasury, members, threshold, *last, sender=owner)
        for gpu_class, floor in CLASS_FLOORS.items():
            market.set_gpu_class(gpu_class, floor, sender=owner)
        return market

    return deploy


@pytest.fixture(scope="module")
def market(deploy_market, stake_token, payment_token, committee):
    return deploy_market(stake_token, payment_token, committee.addresses, committee.threshold)


@pytest.fixture(scope="module")
def domain(market, chain):
    return Domain(chain_id=chain.chain_id, verifying_contract=market.address)


@pytest.fixture(scope="module")
def funded(stake_token, payment_token, market, provider, provider2, client, client2, attacker):
    """Mints both tokens to every role and approves the market."""
    for account in (provider, provider2, client, client2, attacker):
        for token in (stake_token, payment_token):
            token.mint(account, 1_000_000 * TOKEN, sender=account)
            token.approve(market, 2**256 - 1, sender=account)
    return True


@pytest.fixture(scope="module")
def register(market, funded):
    """Builder: registers `account` as a cpu-dev provider."""

    def do(account, gpu_class=CPU_DEV, gpu_count=1, price=PRICE, endpoint="http://127.0.0.1:8700"):
        return market.register(gpu_class, gpu_count, price, endpoint, sender=account)

    return do


@pytest.fixture(scope="module")
def verify(market, committee, domain, chain, keeper):
    """Builder: submits a passing hardware report for `account`'s current claim."""

    def do(account, measured=None, valid_for=DAY):
        record = market.providers(account)
        floor = market.class_floor(record.gpu_class) * record.gpu_count
        # Pin the report's block time to the one valid_until is computed from: the pending
        # time follows the wall clock and could tick in between (see next_tx_at).
        at = chain.pending_timestamp
        chain.pending_timestamp = at
        report = hardware_report(
            account,
            record.gpu_class,
            record.gpu_count,
            floor if measured is None else measured,
            at + valid_for,
            epoch=market.epoch(),
            claim_version=record.claim_version,
        )
        return market.submit_hardware_report(report, committee.sign(domain, report), sender=keeper)

    return do


@pytest.fixture(scope="module")
def ready_provider(register, verify, market):
    """Builder: registered, verified and staked (MIN_STAKE plus `extra`)."""

    def do(account, extra=100 * TOKEN, **claim):
        register(account, **claim)
        verify(account)
        market.stake(MIN_STAKE + extra, sender=account)
        return account

    return do


@pytest.fixture(scope="module")
def create_job(market, chain, funded):
    """Builder: creates a job and returns its id."""

    def do(
        sender,
        gpu_class=CPU_DEV,
        gpu_count=1,
        max_price=2 * PRICE,
        max_duration=HOUR,
        spec_hash=b"\x5e" * 32,
        provider=None,
        accept_window=HOUR,
    ):
        tx = market.create_job(
            gpu_class,
            gpu_count,
            max_price,
            max_duration,
            spec_hash,
            provider or "0x0000000000000000000000000000000000000000",
            chain.pending_timestamp + accept_window,
            sender=sender,
        )
        return tx.return_value

    return do


@pytest.fixture(scope="module")
def running_job(ready_provider, create_job, market):
    """Builder: a job created by `client_account` and accepted by `provider_account`."""

    def do(client_account, provider_account, **job):
        if market.providers(provider_account).gpu_count == 0:
            ready_provider(provider_account)
        job_id = create_job(client_account, **job)
        market.accept_job(job_id, sender=provider_account)
        return job_id

    return do


@pytest.fixture(scope="module")
def settle(market, committee, domain, keeper):
    """Builder: settles `job_id` with a quorum-signed report."""

    def do(job_id, outcome=Outcome.COMPLETED, gpu_seconds=0, sender=None):
        job = market.get_job(job_id)
        report = job_report(job_id, job.provider, outcome, gpu_seconds, epoch=market.epoch())
        return market.settle(report, committee.sign(domain, report), sender=sender or keeper)

    return do
