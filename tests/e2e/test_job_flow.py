"""The whole story of one job, completed and failed, with the books checked."""

from gpumarket.signing.eip712 import Outcome
from helpers.accounting import assert_conserved
from helpers.constants import COMPLETED, FAILED, PRICE, RUNNING


def test_completed_job_pays_provider_fee_and_refund(
    market, client, provider, treasury, running_job, settle, stake_token, payment_token
):
    job_id = running_job(client, provider)
    job = market.get_job(job_id)
    assert job.state == RUNNING
    assert market.stake_of(provider).locked == job.collateral

    settle(job_id, Outcome.COMPLETED, gpu_seconds=1_800)

    payment = PRICE * 1_800
    fee = -(-payment * market.protocol_fee_bps() // 10_000)
    assert market.get_job(job_id).state == COMPLETED
    assert market.claimable(payment_token, provider) == payment - fee
    assert market.claimable(payment_token, treasury) == fee
    assert market.claimable(payment_token, client) == job.escrow - payment
    assert market.stake_of(provider).locked == 0
    assert_conserved(market, [stake_token, payment_token], [provider], [client, provider, treasury])


def test_failed_job_refunds_client_and_slashes(
    market, client, provider, treasury, running_job, settle, stake_token, payment_token
):
    job_id = running_job(client, provider)
    job = market.get_job(job_id)
    stake_before = market.stake_of(provider)

    settle(job_id, Outcome.FAILED)

    assert market.get_job(job_id).state == FAILED
    assert market.claimable(payment_token, client) == job.escrow
    client_share = -(-job.collateral * market.client_share_bps() // 10_000)
    assert market.claimable(stake_token, client) == client_share
    assert market.claimable(stake_token, treasury) == job.collateral - client_share
    assert market.stake_of(provider).free == stake_before.free
    assert market.stake_of(provider).locked == 0
    assert_conserved(market, [stake_token, payment_token], [provider], [client, provider, treasury])
