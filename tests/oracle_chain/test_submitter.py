"""ChainSubmitter on the embedded chain: settle and hardware reports go through once; an already
settled job or an already applied report is recognised as such and never resubmitted."""

from __future__ import annotations

import time

import pytest

from gpumarket.chain.events import JobCreated
from gpumarket.chain.keys import test_account
from gpumarket.oracle.chain_submitter import AlreadySettled
from gpumarket.oracle.peers import gather_job_signatures
from gpumarket.oracle.settlement import SettlementSubmitter, SubmitOutcome, submit_if_due
from gpumarket.signing.eip712 import Outcome
from gpumarket.testing.committee import Committee, hardware_report, job_report

from .conftest import CPU_DEV, PRICE, World

COMMITTEE = Committee.of_size(3, threshold=2)


@pytest.fixture(scope="module")
def provider(world: World) -> str:
    """A registered, staked provider verified directly with the test committee's signatures."""
    key = test_account(4)
    market = world.market(key)
    market.stake_token.mint(key.address, 10**24)
    market.stake_token.approve(market.address)
    market.stake(10**23)  # the minimum stake plus room for the jobs' collateral
    market.register(CPU_DEV, 1, PRICE, "http://127.0.0.1:9/unused")
    report = hardware_report(
        key.address, CPU_DEV, 1, market.class_floor(CPU_DEV), market.block_timestamp() + 7_200, epoch=market.epoch()
    )
    submitter = world.oracles[0].submitter
    assert submitter.submit_hardware(report, COMMITTEE.sign(market.domain, report)) is not None
    # The same report again (e.g. a fallback racing the designated one): already applied.
    assert submitter.submit_hardware(report, COMMITTEE.sign(market.domain, report)) is None
    assert market.is_verified(key.address)
    return key.address


def _running_job(world: World, provider: str) -> int:
    client = test_account(9)
    market = world.market(client)
    market.payment_token.mint(client.address, 10**24)
    market.payment_token.approve(market.address)
    job_id = (
        market.create_job(CPU_DEV, 1, PRICE, 60, b"\x01" * 32, market.block_timestamp() + 600, provider=provider)
        .event(JobCreated)
        .job_id
    )
    world.market(test_account(4)).accept_job(job_id)
    return job_id


def test_is_a_settlement_submitter(world: World) -> None:
    assert isinstance(world.oracles[0].submitter, SettlementSubmitter)


def test_already_settled_job_is_never_resubmitted(world: World, provider: str) -> None:
    job_id = _running_job(world, provider)
    first, second = world.oracles[0], world.oracles[1]
    assert not first.submitter.is_settled(job_id)
    market = world.market()
    report = job_report(job_id, provider, Outcome.COMPLETED, gpu_seconds=5, epoch=market.epoch())
    second.signer.decide_and_sign(report)
    signatures = COMMITTEE.sign(market.domain, report)
    assert first.submitter.submit_settlement(report, signatures).startswith("0x")
    assert second.submitter.is_settled(job_id)
    with pytest.raises(AlreadySettled):
        second.submitter.submit_settlement(report, signatures)
    status = second.store.settlement(job_id)
    assert status is not None and status.settled


def test_quorum_settles_once_through_the_designated_submitter(world: World, provider: str) -> None:
    job_id = _running_job(world, provider)
    market = world.market()
    report = job_report(job_id, provider, Outcome.COMPLETED, gpu_seconds=3, epoch=market.epoch())
    for oracle in world.oracles:
        oracle.signer.decide_and_sign(report)
    now = time.time()
    outcomes = []
    for i, oracle in enumerate(world.oracles):
        peers = [o.hv.peers for o in world.oracles][i]
        gather_job_signatures(oracle.store, job_id, peers)
        outcomes.append(
            submit_if_due(oracle.signer, oracle.submitter, job_id, now=now, job_end=now, fallback_delay=30.0).outcome
        )
    assert outcomes.count(SubmitOutcome.SUBMITTED) == 1, outcomes
    assert market.get_job(job_id).state.terminal
    # A second round: everyone now sees it settled; nothing is sent again (even a late fallback).
    for oracle in world.oracles:
        again = submit_if_due(
            oracle.signer, oracle.submitter, job_id, now=now + 3_600, job_end=now, fallback_delay=30.0
        )
        assert again.outcome is SubmitOutcome.ALREADY_SETTLED
