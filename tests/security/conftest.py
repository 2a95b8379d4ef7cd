"""Fixtures of the security tests: markets on hostile tokens, and a kit that drives any market.

The root builders (`register`, `verify`, `create_job`, `settle`, ...) are bound to the root
`market`; `MarketKit` does the same steps on a market of the test's choosing (a second
deployment, a market on a USDT-like or re-entrant token), so the attacks below can run
against each of them without copying the steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from gpumarket.signing import eip712
from gpumarket.signing.eip712 import Domain, HardwareReport, JobReport, Outcome
from helpers.accounting import assert_conserved
from helpers.committee import Committee, hardware_report, job_report
from helpers.constants import CPU_DEV, DAY, HOUR, MIN_STAKE, PRICE, TOKEN

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
SPEC_HASH = b"\x5e" * 32
# Enough of each token for every role in every test here.
FUNDING = 1_000_000 * TOKEN


@dataclass
class MarketKit:
    """One market, its tokens, committee and EIP-712 domain, and the steps every test repeats."""

    market: Any
    stake_token: Any
    payment_token: Any
    committee: Committee
    domain: Domain
    chain: Any
    keeper: Any
    providers: list = field(default_factory=list)
    accounts: list = field(default_factory=list)

    @property
    def tokens(self) -> list:
        return [self.stake_token, self.payment_token]

    def fund(self, *accounts) -> None:
        """Mints both tokens to each account and approves the market for all of it."""
        for account in accounts:
            for token in {str(t): t for t in self.tokens}.values():
                token.mint(account, FUNDING, sender=account)
                token.approve(self.market, 2**256 - 1, sender=account)

    def register(self, account, price: int = PRICE, gpu_count: int = 1) -> None:
        self.market.register(CPU_DEV, gpu_count, price, "http://127.0.0.1:8700", sender=account)

    def hardware_report(self, account, measured: int | None = None, valid_for: int = DAY) -> HardwareReport:
        """A report of `account`'s current claim (class, count and claim version); passing (the
        class floor) unless `measured` says. valid_until is `valid_for` after the pending block
        time, and a report may be valid at most HARDWARE_VALIDITY (a day by default) ahead."""
        record = self.market.providers(account)
        floor = self.market.class_floor(record.gpu_class) * record.gpu_count
        return hardware_report(
            account,
            record.gpu_class,
            record.gpu_count,
            floor if measured is None else measured,
            self.chain.pending_timestamp + valid_for,
            epoch=self.market.epoch(),
            claim_version=record.claim_version,
        )

    def submit_hardware(self, report: HardwareReport):
        signatures = self.committee.sign(self.domain, report)
        return self.market.submit_hardware_report(report, signatures, sender=self.keeper)

    def ready_provider(self, account, stake: int = MIN_STAKE + 100 * TOKEN, price: int = PRICE, gpu_count: int = 1):
        """Registered (`gpu_count` GPUs, so that many 1-GPU jobs can run at once), verified
        for cpu-dev and staked."""
        self.register(account, price=price, gpu_count=gpu_count)
        self.submit_hardware(self.hardware_report(account))
        self.market.stake(stake, sender=account)
        return account

    def create_job(
        self, client, max_price: int = 2 * PRICE, max_duration: int = HOUR, provider=None, gpu_count: int = 1
    ) -> int:
        self.market.create_job(
            CPU_DEV,
            gpu_count,
            max_price,
            max_duration,
            SPEC_HASH,
            provider or ZERO_ADDRESS,
            self.chain.pending_timestamp + HOUR,
            sender=client,
        )
        # Not tx.return_value: py-evm's provider cannot trace it (see test_bounded_loops).
        return self.market.job_count()

    def running_job(self, client, provider, **job) -> int:
        job_id = self.create_job(client, **job)
        self.market.accept_job(job_id, sender=provider)
        return job_id

    def job_report(self, job_id: int, outcome: Outcome = Outcome.COMPLETED, gpu_seconds: int = 0) -> JobReport:
        provider = self.market.get_job(job_id).provider
        return job_report(job_id, provider, outcome, gpu_seconds, epoch=self.market.epoch())

    def settle(self, job_id: int, outcome: Outcome = Outcome.COMPLETED, gpu_seconds: int = 0):
        report = self.job_report(job_id, outcome, gpu_seconds)
        return self.market.settle(report, self.committee.sign(self.domain, report), sender=self.keeper)

    def assert_conserved(self) -> None:
        assert_conserved(self.market, self.tokens, self.providers, self.accounts)


@pytest.fixture(scope="session")
def token_args() -> Callable[[str], tuple]:
    """Constructor arguments shared by every mock token: name, symbol, decimals."""
    return lambda symbol: (f"{symbol} token", symbol, 18)


@pytest.fixture(scope="module")
def deploy_token(project, owner, token_args):
    """Builder: deploys the mock token contract `name` (contracts/mocks/<name>.vy)."""

    def deploy(name: str, symbol: str):
        return getattr(project, name).deploy(*token_args(symbol), sender=owner)

    return deploy


@pytest.fixture(scope="module")
def wrap_kit(chain, keeper, provider, provider2, client, client2, attacker, treasury):
    """Builder: a MarketKit around a deployed market, with the roles the books cover."""

    def wrap(market, stake_token, payment_token, members: Committee) -> MarketKit:
        return MarketKit(
            market=market,
            stake_token=stake_token,
            payment_token=payment_token,
            committee=members,
            domain=Domain(chain_id=chain.chain_id, verifying_contract=market.address),
            chain=chain,
            keeper=keeper,
            providers=[provider, provider2],
            accounts=[provider, provider2, client, client2, attacker, keeper, treasury],
        )

    return wrap


@pytest.fixture(scope="module")
def make_kit(deploy_market, wrap_kit, committee, provider, provider2, client, client2, attacker):
    """Builder: a fresh market on the given tokens (and committee), every role funded."""

    def make(stake_token, payment_token, members: Committee | None = None) -> MarketKit:
        members = members or committee
        market = deploy_market(stake_token, payment_token, members.addresses, members.threshold)
        kit = wrap_kit(market, stake_token, payment_token, members)
        kit.fund(provider, provider2, client, client2, attacker)
        return kit

    return make


@pytest.fixture(scope="module")
def hostile_kit(deploy_token, make_kit):
    """Builder: a market whose stake and payment tokens are two instances of mock `name`."""

    def make(name: str) -> MarketKit:
        return make_kit(deploy_token(name, "STK"), deploy_token(name, "PAY"))

    return make


@pytest.fixture(scope="module")
def root_kit(market, stake_token, payment_token, committee, wrap_kit, funded) -> MarketKit:
    """The root `market` (already funded by the root `funded` fixture) as a MarketKit."""
    return wrap_kit(market, stake_token, payment_token, committee)


@dataclass
class QuorumCase:
    """A report the committee may sign, on one market, and how to submit it there.

    Job reports (settle) and hardware reports (submit_hardware_report) go through the same
    quorum check, so every signature rule is tested on both.
    """

    kit: MarketKit
    report: JobReport | HardwareReport

    @property
    def accepted_event(self) -> str:
        return "JobSettled" if isinstance(self.report, JobReport) else "HardwareVerified"

    def sign(self, keys, domain: Domain | None = None, report=None) -> list[bytes]:
        """Signatures of `report` (default: this case's) by `keys`, sorted by signer."""
        return eip712.quorum_signatures(domain or self.kit.domain, report or self.report, keys)

    def submit(self, signatures: list[bytes], report=None):
        report = report or self.report
        market = self.kit.market
        if isinstance(report, JobReport):
            return market.settle(report, signatures, sender=self.kit.keeper)
        return market.submit_hardware_report(report, signatures, sender=self.kit.keeper)

    def assert_accepted(self, signatures: list[bytes], report=None) -> None:
        tx = self.submit(signatures, report)
        assert len(tx.decode_logs(getattr(self.kit.market, self.accepted_event))) == 1


@pytest.fixture(scope="module")
def make_case(provider, client):
    """Builder: a QuorumCase of `kind` ("job": a running job's COMPLETED report; "hardware":
    a passing report of a registered provider) on `kit`'s market."""

    def make(kit: MarketKit, kind: str) -> QuorumCase:
        if kind == "job":
            if kit.market.providers(provider).gpu_count == 0:
                kit.ready_provider(provider)
            job_id = kit.running_job(client, provider)
            return QuorumCase(kit, kit.job_report(job_id, Outcome.COMPLETED, gpu_seconds=60))
        if kit.market.providers(provider).gpu_count == 0:
            kit.register(provider)
        return QuorumCase(kit, kit.hardware_report(provider))

    return make


@pytest.fixture(params=["job", "hardware"])
def case(request, make_case, root_kit) -> QuorumCase:
    """A QuorumCase on the root market, once per report kind."""
    return make_case(root_kit, request.param)
