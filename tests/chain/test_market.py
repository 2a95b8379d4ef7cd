"""gpumarket.chain.market: every user action through web3 with a local key, its decoded
events, and its typed revert (ContractRevert with the contract's reason)."""

from __future__ import annotations

import pytest
from eth_account import Account

from gpumarket.chain.connection import advance_time, fund
from gpumarket.chain.errors import ContractRevert
from gpumarket.chain.events import (
    Claimed,
    HardwareRejected,
    HardwareVerified,
    JobAccepted,
    JobCancelled,
    JobCreated,
    JobExpired,
    JobSettled,
    ProviderRegistered,
    ProviderUpdated,
    Staked,
    UnstakeRequested,
    Withdrawn,
)
from gpumarket.chain.market import Market
from gpumarket.chain.models import ZERO_ADDRESS, JobState
from gpumarket.signing import eip712
from gpumarket.signing.eip712 import Outcome

from .conftest import CPU_DEV, FUNDING, HOUR, PRICE, SPEC_HASH, TOKEN


def test_reads_of_a_fresh_deployment(kit, params, committee):
    market = kit.market()
    assert market.epoch() == 1
    assert market.members() == committee.addresses
    assert market.threshold() == 2
    assert market.job_count() == 0
    assert market.class_floor(CPU_DEV) == 10
    assert market.class_floor(999) == 0
    assert market.parameters() == {**market.parameters(), **params.overrides()}
    assert market.treasury() == kit.roles.deployer.address
    assert market.owner() == kit.roles.deployer.address
    assert not market.paused()
    assert market.domain_separator() == eip712.domain_separator(market.domain)
    job = market.get_job(1)
    assert job.state == JobState.NONE and not job.exists
    record = market.providers(kit.roles.provider.address)
    assert not record.registered and record.endpoint == ""


def test_register_update_and_their_reverts(kit):
    key = kit.roles.provider
    market = kit.market(key)
    registered = market.register(CPU_DEV, 2, PRICE, "http://127.0.0.1:8700").event(ProviderRegistered)
    assert (registered.provider, registered.gpu_count, registered.endpoint) == (key.address, 2, "http://127.0.0.1:8700")
    with pytest.raises(ContractRevert) as caught:
        market.register(CPU_DEV, 1, PRICE, "http://x")
    assert caught.value.reason == "registry: already registered"
    assert caught.value.function == "register"

    updated = market.update_provider(CPU_DEV, 2, 2 * PRICE, "http://127.0.0.1:8701").event(ProviderUpdated)
    assert (updated.price_per_gpu_second, updated.claim_version) == (2 * PRICE, 0)  # the same claim
    record = market.providers(key.address)
    assert (record.price_per_gpu_second, record.endpoint) == (2 * PRICE, "http://127.0.0.1:8701")
    assert record.registered
    assert (record.claim_version, record.recent_failures, record.failure_window_start) == (0, 0, 0)
    new_claim = market.update_provider(CPU_DEV, 3, 2 * PRICE, "http://127.0.0.1:8701").event(ProviderUpdated)
    assert new_claim.claim_version == 1
    assert market.providers(key.address).claim_version == 1
    with pytest.raises(ContractRevert, match="registry: empty endpoint"):
        market.update_provider(CPU_DEV, 2, PRICE, "")
    with pytest.raises(ContractRevert, match="registry: not registered"):
        kit.market(kit.roles.provider2).update_provider(CPU_DEV, 1, PRICE, "http://x")


def test_hardware_reports_verify_and_reject(kit, committee):
    key = kit.roles.provider
    kit.fund(key)
    market = kit.market(key)
    market.register(CPU_DEV, 1, PRICE, "http://127.0.0.1:8700")
    report = kit.hardware_report(key)
    keeper_market = kit.market(kit.roles.keeper)
    assert keeper_market.hardware_report_digest(report) == eip712.digest(market.domain, report)
    signatures = committee.sign(market.domain, report)
    verified = keeper_market.submit_hardware_report(report, signatures).event(HardwareVerified)
    assert verified.provider == key.address and verified.epoch == 1 and verified.claim_version == 0
    assert market.is_verified(key.address)
    assert market.last_report_valid_until(key.address, 0) == report.valid_until

    with pytest.raises(ContractRevert, match="verification: stale report"):
        keeper_market.submit_hardware_report(report, committee.sign(market.domain, report))
    with pytest.raises(ContractRevert, match="committee: not enough signatures"):
        keeper_market.submit_hardware_report(report, committee.sign(market.domain, report, signers=1))

    with pytest.raises(ContractRevert, match="verification: too far ahead"):
        far = kit.hardware_report(key, valid_for=25 * HOUR)
        keeper_market.submit_hardware_report(far, committee.sign(market.domain, far))
    advance_time(kit.w3, 60)  # a later report, valid no further than hardware_validity ahead
    low = kit.hardware_report(key, measured=1)
    rejected = keeper_market.submit_hardware_report(low, committee.sign(market.domain, low)).event(HardwareRejected)
    assert rejected.required_throughput == 10 and rejected.measured_throughput == 1
    assert rejected.claim_version == 0
    assert not market.is_verified(key.address)


def test_stake_unstake_withdraw(kit, params):
    key = kit.roles.provider
    kit.fund(key)
    market = kit.market(key)
    with pytest.raises(ContractRevert, match="staking: zero amount"):
        market.stake(0)
    assert market.stake(10 * TOKEN).event(Staked).amount == 10 * TOKEN
    requested = market.request_unstake(4 * TOKEN).event(UnstakeRequested)
    assert requested.unbonding_total == 4 * TOKEN
    stake = market.stake_of(key.address)
    assert (stake.free, stake.locked, stake.unbonding) == (6 * TOKEN, 0, 4 * TOKEN)
    assert stake.release_at == requested.release_at
    with pytest.raises(ContractRevert, match="staking: unbonding not released"):
        market.withdraw()
    with pytest.raises(ContractRevert, match="staking: insufficient free stake"):
        market.request_unstake(7 * TOKEN)
    advance_time(kit.w3, params.parameters.unbonding_period)
    before = market.stake_token.balance_of(key.address)
    assert market.withdraw().event(Withdrawn).amount == 4 * TOKEN
    assert market.stake_token.balance_of(key.address) == before + 4 * TOKEN
    with pytest.raises(ContractRevert, match="staking: nothing unbonding"):
        market.withdraw()


def test_create_accept_settle_claim(kit, committee):
    roles = kit.roles
    provider = kit.ready_provider(roles.provider)
    kit.fund(roles.client)
    client = kit.market(roles.client)
    paid_before = client.payment_token.balance_of(roles.client.address)
    created = client.create_job(CPU_DEV, 1, 2 * PRICE, HOUR, SPEC_HASH, kit.now() + HOUR).event(JobCreated)
    assert (created.client, created.provider, created.escrow) == (roles.client.address, ZERO_ADDRESS, 2 * PRICE * HOUR)
    assert client.payment_token.balance_of(roles.client.address) == paid_before - created.escrow
    job_id = created.job_id

    assert provider.gpus_in_use(roles.provider.address) == 0
    accepted = provider.accept_job(job_id).event(JobAccepted)
    assert accepted.price_per_gpu_second == PRICE
    assert provider.gpus_in_use(roles.provider.address) == 1
    job = client.get_job(job_id)
    assert job.state == JobState.RUNNING and job.provider == roles.provider.address
    assert job.collateral == accepted.collateral and job.spec_hash == SPEC_HASH
    assert job.end_deadline == job.started_at + HOUR
    assert provider.stake_of(roles.provider.address).locked == accepted.collateral

    report = kit.job_report(job_id, Outcome.COMPLETED, gpu_seconds=600)
    assert client.job_report_digest(report) == eip712.digest(client.domain, report)
    keeper = kit.market(roles.keeper)
    with pytest.raises(ContractRevert, match="committee: not enough signatures"):
        keeper.settle(report, committee.sign(client.domain, report, signers=1))
    settled = keeper.settle(report, committee.sign(client.domain, report)).event(JobSettled)
    assert (settled.outcome, settled.gpu_seconds) == (Outcome.COMPLETED, 600)
    assert settled.provider_payment + settled.protocol_fee == 600 * PRICE
    assert settled.client_refund == created.escrow - 600 * PRICE
    assert client.get_job(job_id).state == JobState.COMPLETED
    assert provider.gpus_in_use(roles.provider.address) == 0
    with pytest.raises(ContractRevert, match="escrow: job not running"):
        keeper.settle(report, committee.sign(client.domain, report))

    owed = provider.claimable(provider.payment_token, roles.provider.address)
    assert owed == settled.provider_payment
    claimed = provider.claim(provider.payment_token).event(Claimed)
    assert (claimed.account, claimed.amount) == (roles.provider.address, owed)
    with pytest.raises(ContractRevert, match="ledger: nothing to claim"):
        provider.claim(provider.payment_token)
    assert client.claim(client.payment_token.address).event(Claimed).amount == settled.client_refund


def test_failed_job_slashes_collateral(kit, committee):
    roles = kit.roles
    provider = kit.ready_provider(roles.provider)
    kit.fund(roles.client)
    job_id = kit.create_job(roles.client)
    collateral = provider.accept_job(job_id).event(JobAccepted).collateral
    report = kit.job_report(job_id, Outcome.FAILED)
    settled = kit.market(roles.keeper).settle(report, committee.sign(provider.domain, report)).event(JobSettled)
    assert settled.outcome == Outcome.FAILED and settled.slashed == collateral
    assert provider.get_job(job_id).state == JobState.FAILED
    record = provider.providers(roles.provider.address)
    failed_at = provider.block_timestamp(settled.meta.block_number)
    assert (record.recent_failures, record.failure_window_start) == (1, failed_at)
    assert provider.claimable(provider.stake_token, roles.client.address) > 0


def test_accept_reverts(kit):
    roles = kit.roles
    kit.fund(roles.client)
    job_id = kit.create_job(roles.client)
    kit.fund(roles.provider2)
    unverified = kit.market(roles.provider2)
    with pytest.raises(ContractRevert, match="registry: not registered"):
        unverified.accept_job(job_id)
    unverified.register(CPU_DEV, 1, PRICE, "http://x")
    with pytest.raises(ContractRevert, match="registry: hardware not verified"):
        unverified.accept_job(job_id)
    provider = kit.ready_provider(roles.provider)
    with pytest.raises(ContractRevert, match="escrow: job not open"):
        provider.accept_job(job_id + 1)
    directed = kit.create_job(roles.client, provider=roles.provider2.address)
    with pytest.raises(ContractRevert, match="escrow: job directed elsewhere"):
        provider.accept_job(directed)
    provider.accept_job(job_id)  # its one GPU is now held
    with pytest.raises(ContractRevert, match="registry: not enough free gpus"):
        provider.accept_job(kit.create_job(roles.client))


def test_cancel_and_its_reverts(kit):
    roles = kit.roles
    kit.fund(roles.client)
    job_id = kit.create_job(roles.client)
    with pytest.raises(ContractRevert, match="escrow: caller is not the client"):
        kit.market(roles.attacker).cancel_job(job_id)
    client = kit.market(roles.client)
    cancelled = client.cancel_job(job_id).event(JobCancelled)
    assert cancelled.refund == client.get_job(job_id).escrow
    assert client.get_job(job_id).state == JobState.CANCELLED
    with pytest.raises(ContractRevert) as caught:
        client.cancel_job(job_id)
    assert caught.value.reason == "escrow: job not open"
    assert str(caught.value) == "cancel_job: reverted: escrow: job not open"


def test_expire_open_and_running_jobs(kit, params):
    roles = kit.roles
    kit.fund(roles.client)
    keeper = kit.market(roles.keeper)
    open_job = kit.create_job(roles.client)
    with pytest.raises(ContractRevert, match="escrow: deadline not passed"):
        keeper.expire_job(open_job)
    provider = kit.ready_provider(roles.provider)
    running = kit.create_job(roles.client, max_duration=600)
    provider.accept_job(running)
    with pytest.raises(ContractRevert, match="escrow: settle grace not passed"):
        keeper.expire_job(running)
    advance_time(kit.w3, HOUR + params.parameters.settle_grace + 1)
    expired = keeper.expire_job(open_job).event(JobExpired)
    assert expired.previous_state == JobState.OPEN
    expired_running = keeper.expire_job(running).event(JobExpired)
    assert expired_running.previous_state == JobState.RUNNING and expired_running.collateral_released > 0
    with pytest.raises(ContractRevert, match="escrow: job not open or running"):
        keeper.expire_job(running)


def test_create_job_reverts(kit):
    kit.fund(kit.roles.client)
    client = kit.market(kit.roles.client)
    with pytest.raises(ContractRevert, match="escrow: empty spec hash"):
        client.create_job(CPU_DEV, 1, PRICE, HOUR, b"\x00" * 32, kit.now() + HOUR)
    with pytest.raises(ContractRevert, match="escrow: deadline out of range"):
        client.create_job(CPU_DEV, 1, PRICE, HOUR, SPEC_HASH, kit.now() - 1)
    with pytest.raises(ContractRevert, match="escrow: duration out of range"):
        client.create_job(CPU_DEV, 1, PRICE, 0, SPEC_HASH, kit.now() + HOUR)
    broke = kit.market(kit.roles.attacker)
    with pytest.raises(ContractRevert):
        broke.create_job(CPU_DEV, 1, PRICE, HOUR, SPEC_HASH, kit.now() + HOUR)


def test_tokens_approve_mint_transfer(kit):
    key, other = kit.roles.client, kit.roles.client2
    token = kit.market(key).payment_token
    assert (token.symbol(), token.decimals()) == ("mPAY", 18)
    token.mint(key.address, 5 * TOKEN)
    token.approve(other.address, 3 * TOKEN)
    assert token.allowance(key.address, other.address) == 3 * TOKEN
    token.transfer(other.address, 2 * TOKEN)
    assert token.balance_of(other.address) == 2 * TOKEN
    assert token.total_supply() == 5 * TOKEN
    with pytest.raises(ContractRevert, match="MockToken: insufficient balance") as caught:
        token.transfer(other.address, 10 * TOKEN)
    assert caught.value.function == "transfer"
    assert token.approve(other.address).events == ()  # token events are not market events


def test_governance_actions(kit, committee):
    owner = kit.market(kit.roles.deployer)
    owner.set_gpu_class(77, 123)
    assert owner.class_floor(77) == 123
    owner.set_parameter("settle_grace", 600)
    assert owner.parameters()["settle_grace"] == 600
    with pytest.raises(ValueError, match="unknown parameter"):
        owner.set_parameter("no_such", 1)
    with pytest.raises(ContractRevert, match="governance"):
        owner.set_parameter("settle_grace", 1)
    with pytest.raises(ContractRevert, match="ownable: caller is not the owner"):
        kit.market(kit.roles.attacker).set_gpu_class(78, 1)
    owner.pause()
    assert owner.paused()
    kit.fund(kit.roles.client)
    with pytest.raises(ContractRevert, match="pausable: contract is paused"):
        kit.market(kit.roles.client).create_job(CPU_DEV, 1, PRICE, HOUR, SPEC_HASH, kit.now() + HOUR)
    owner.unpause()
    rotated = list(reversed(committee.addresses))
    owner.set_committee(rotated, 2)
    assert owner.epoch() == 2 and owner.members() == rotated


def test_read_at_a_past_block(kit):
    kit.fund(kit.roles.client)
    job_id = kit.create_job(kit.roles.client)
    before = kit.w3.eth.block_number
    kit.market(kit.roles.client).cancel_job(job_id)
    market = kit.market()
    assert market.get_job(job_id, block=before).state == JobState.OPEN
    assert market.get_job(job_id).state == JobState.CANCELLED


def test_read_only_market_refuses_transactions(kit):
    with pytest.raises(ValueError, match="has no signer"):
        kit.market().cancel_job(1)


def test_tx_result_event_lookup(kit):
    kit.fund(kit.roles.client)
    result = kit.market(kit.roles.client).create_job(CPU_DEV, 1, PRICE, HOUR, SPEC_HASH, kit.now() + HOUR)
    assert result.events_of(JobSettled) == []
    with pytest.raises(ValueError, match="expected one JobSettled"):
        result.event(JobSettled)
    assert result.block_number == kit.w3.eth.block_number and result.gas_used > 0


def test_funding_is_what_the_kit_mints(kit):
    kit.fund(kit.roles.client2)
    market: Market = kit.market(kit.roles.client2)
    assert market.payment_token.balance_of(kit.roles.client2.address) == FUNDING


def test_a_plain_local_account_signs_too(kit):
    account = Account.create()
    fund(kit.w3, account.address, 10**18)
    market = kit.market(account)
    registered = market.register(CPU_DEV, 1, PRICE, "http://127.0.0.1:8702").event(ProviderRegistered)
    assert registered.provider == account.address == market.sender
