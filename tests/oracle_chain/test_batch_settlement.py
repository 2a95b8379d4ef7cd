"""Batch settlement by the oracles on the embedded chain: the designated oracle signs the root of
its decisions, a peer signs the same root over HTTP, one settle_batch settles every job; a batch
a peer cannot sign goes back to single settlement."""

from __future__ import annotations

import pytest

from gpumarket.chain.connection import fund
from gpumarket.chain.events import JobCreated, scan_events
from gpumarket.chain.keys import test_account
from gpumarket.chain.models import JobState
from gpumarket.oracle.batches import settle_batch
from gpumarket.oracle.peers import PeerClient, gather_job_signatures
from gpumarket.signing.eip712 import JobReport, Outcome
from gpumarket.testing.committee import Committee, hardware_report, job_report

from .conftest import CPU_DEV, PRICE, World

COMMITTEE = Committee.of_size(3, threshold=2)
GPUS = 8


@pytest.fixture(scope="module")
def provider(world: World) -> str:
    """A provider of 8 GPUs, verified directly with the test committee's signatures."""
    key = test_account(20)
    fund(world.w3, key.address, 10**19)
    market = world.market(key)
    market.stake_token.mint(key.address, 10**24)
    market.stake_token.approve(market.address)
    market.stake(10**23)
    market.register(CPU_DEV, GPUS, PRICE, "http://127.0.0.1:9/unused")
    floor = market.class_floor(CPU_DEV) * GPUS
    report = hardware_report(key.address, CPU_DEV, GPUS, floor, market.block_timestamp() + 7_200, epoch=market.epoch())
    world.oracles[0].submitter.submit_hardware(report, COMMITTEE.sign(market.domain, report))
    return key.address


def running_jobs(world: World, provider: str, count: int) -> list[int]:
    client = test_account(21)
    fund(world.w3, client.address, 10**19)
    market = world.market(client)
    market.payment_token.mint(client.address, 10**24)
    market.payment_token.approve(market.address)
    ids = []
    for _ in range(count):
        created = market.create_job(
            CPU_DEV, 1, PRICE, 60, b"\x02" * 32, market.block_timestamp() + 600, provider=provider
        )
        job_id = created.event(JobCreated).job_id
        world.market(test_account(20)).accept_job(job_id)
        ids.append(job_id)
    return ids


def decide(world: World, oracles: list[int], job_ids: list[int], provider: str) -> None:
    epoch = world.market().epoch()
    for job_id in job_ids:
        report = job_report(job_id, provider, Outcome.COMPLETED, gpu_seconds=10 + job_id % 7, epoch=epoch)
        for index in oracles:
            world.oracles[index].signer.decide_and_sign(report)


def peers_of(world: World, index: int) -> list[PeerClient]:
    domain = world.market().domain
    return [PeerClient(o.api.url, domain) for i, o in enumerate(world.oracles) if i != index]


def test_one_transaction_settles_the_whole_batch(world: World, provider: str) -> None:
    jobs = running_jobs(world, provider, 5)
    decide(world, [0, 1], jobs, provider)
    proposer = world.oracles[0]
    result = settle_batch(proposer.signer, proposer.submitter, peers_of(world, 0), jobs)
    assert result.tx_hash is not None, result.detail
    market = world.market()
    assert all(market.get_job(job_id).state is JobState.COMPLETED for job_id in jobs)
    receipt = world.w3.eth.get_transaction_receipt(result.tx_hash)
    assert receipt["to"] == market.batch_settler()
    settled = {event.job_id for event in scan_events(market, ["JobSettled"], from_block=receipt["blockNumber"])}
    assert set(jobs) <= settled
    for job_id in jobs:
        status = proposer.store.settlement(job_id)
        assert status is not None and status.tx_hash == result.tx_hash


def test_a_batch_no_peer_can_sign_sends_nothing(world: World, provider: str) -> None:
    jobs = running_jobs(world, provider, 2)
    decide(world, [0], jobs, provider)  # the peers have not decided: they refuse the root
    proposer = world.oracles[0]
    result = settle_batch(proposer.signer, proposer.submitter, peers_of(world, 0), jobs)
    assert result.tx_hash is None and "1 of 2 signatures" in result.detail
    assert all(world.market().get_job(job_id).state is JobState.RUNNING for job_id in jobs)
    # The jobs settle alone once a peer decides them too (what the job loop falls back to).
    decide(world, [1], jobs, provider)
    for job_id in jobs:
        gather_job_signatures(proposer.store, job_id, peers_of(world, 0))
        quorum = proposer.signer.quorum(job_id)
        assert isinstance(quorum.report, JobReport)
        proposer.submitter.submit_settlement(quorum.report, quorum.signatures)
    assert all(world.market().get_job(job_id).state is JobState.COMPLETED for job_id in jobs)
