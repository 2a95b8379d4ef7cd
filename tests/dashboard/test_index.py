"""The dashboard's index on the embedded chain: every event of the story written once, each job's
state, the totals against the chain's own books, the quorum's signers, resuming, and rebuilding
when the chain changes under it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from gpumarket.chain.artifacts import load_artifacts
from gpumarket.chain.connection import EMBEDDED, connect
from gpumarket.chain.events import EVENT_TYPES, scan_events
from gpumarket.chain.follower import FollowerConfig
from gpumarket.chain.keys import test_account
from gpumarket.chain.market_deploy import deploy_market_web3
from gpumarket.chain.models import JobState
from gpumarket.chain.params import load_params
from gpumarket.dashboard.index import MarketIndex
from gpumarket.dashboard.queries import IndexReader, JobFilter
from gpumarket.dashboard.quorum import quorum_signers

from .conftest import CPU_DEV, PARAMS, Story

NOW = FollowerConfig(confirmations=0)
EXPECTED_STATES = {
    "completed": JobState.COMPLETED,
    "failed": JobState.FAILED,
    "running": JobState.RUNNING,
    "cancelled": JobState.CANCELLED,
    "expired": JobState.EXPIRED,
    "open": JobState.OPEN,
}


@pytest.fixture(scope="module")
def indexed(story: Story, tmp_path_factory: pytest.TempPathFactory) -> IndexReader:
    path = tmp_path_factory.mktemp("index") / "index.sqlite"
    index = MarketIndex(story.market(), path, start_block=story.deployment.block, config=NOW)
    try:
        index.poll_once()
        assert index.cursor == story.w3.eth.block_number
    finally:
        index.close()
    return IndexReader(path)


def test_every_event_is_indexed_once_in_chain_order(story: Story, indexed: IndexReader) -> None:
    market = story.market()
    on_chain = list(scan_events(market, list(EVENT_TYPES), from_block=story.deployment.block))
    rows = indexed.events()
    assert [(e.name, e.block, e.log_index) for e in rows] == [
        (e.name, e.meta.block_number, e.meta.log_index) for e in on_chain
    ]
    assert all(row.timestamp == market.block_timestamp(row.block) for row in rows[:3])


def test_each_job_has_its_state_and_parties(story: Story, indexed: IndexReader) -> None:
    for name, state in EXPECTED_STATES.items():
        row = indexed.job(story.jobs[name])
        assert row is not None and row.state is state, name
        assert row.client == story.client
    assert indexed.job(story.jobs["failed"]).provider == story.lazy  # type: ignore[union-attr]
    assert indexed.job(10_000) is None
    counts = indexed.job_states()
    assert counts == {state: 1 for state in EXPECTED_STATES.values()} | {
        s: 0 for s in JobState if s not in EXPECTED_STATES.values() and s is not JobState.NONE
    }


def test_jobs_filter_by_state_provider_and_client(story: Story, indexed: IndexReader) -> None:
    running, total = indexed.jobs(JobFilter(state=JobState.RUNNING))
    assert [row.job_id for row in running] == [story.jobs["running"]] and total == 1
    honest, _ = indexed.jobs(JobFilter(provider=story.honest))
    assert {row.job_id for row in honest} == {story.jobs["completed"], story.jobs["running"]}
    everything, total = indexed.jobs(JobFilter(client=story.client), limit=2, offset=1)
    assert total == len(story.jobs) and [row.job_id for row in everything] == [5, 4]  # newest first, paged
    assert indexed.jobs(JobFilter(client=story.honest)) == ([], 0)


def test_totals_match_the_settlements_and_the_chains_books(story: Story, indexed: IndexReader) -> None:
    market = story.market()
    totals = indexed.totals()
    settled = story.settlements.values()
    assert totals.paid == sum(event.provider_payment for event in settled) > 0
    assert totals.fees == sum(event.protocol_fee for event in settled) > 0
    assert totals.refunded == sum(event.client_refund for event in settled)
    assert totals.slashed == sum(event.amount for event in story.slashes) > 0
    # Staked, less withdrawn and slashed: what the providers hold on chain, free, locked and unbonding.
    held = [market.stake_of(p) for p in (story.honest, story.lazy, story.spoofer)]
    assert totals.staked == sum(s.free + s.locked + s.unbonding for s in held)
    # Escrowed: what the open and running jobs hold.
    live = [market.get_job(story.jobs[name]) for name in ("running", "open")]
    assert totals.escrowed == sum(job.escrow for job in live)


def test_the_quorums_signers_are_recovered_from_the_settling_transaction(story: Story, indexed: IndexReader) -> None:
    signers = set(story.committee.addresses[: story.committee.threshold])
    for event in story.settlements.values():
        assert set(indexed.quorum(event.meta.tx_hash) or ()) == signers
    reports = indexed.events(account=story.spoofer, names=("HardwareRejected",))
    assert set(indexed.quorum(reports[0].tx_hash) or ()) == signers
    signed = indexed.signed_by(story.committee.addresses[0], names=("JobSettled",))
    assert {event.job_id for event in signed} == {story.jobs["completed"], story.jobs["failed"]}
    assert indexed.signed_by(story.committee.addresses[2]) == []  # the third member signed nothing


def test_signers_are_none_for_a_transaction_that_submitted_no_report(story: Story, indexed: IndexReader) -> None:
    accepted = indexed.events(job_id=story.jobs["running"], names=("JobAccepted",))[0]
    assert quorum_signers(story.market(), accepted.tx_hash) is None
    minted = story.market(test_account(4)).payment_token.mint(story.client, 1)  # a call to another contract
    assert quorum_signers(story.market(), minted.tx_hash) is None


def test_slashes_name_their_cause(story: Story, indexed: IndexReader) -> None:
    (job_slash,) = indexed.slashes(story.lazy)
    assert job_slash.job_id == story.jobs["failed"] and not job_slash.hardware
    assert job_slash.event.args["amount"] == story.settlements["failed"].slashed > 0
    (hardware_slash,) = indexed.slashes(story.spoofer)
    assert hardware_slash.job_id is None and hardware_slash.hardware
    assert indexed.slashes(story.honest) == []


def test_a_restarted_index_resumes_without_repeating_an_event(story: Story, tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    first = MarketIndex(story.market(), path, start_block=story.deployment.block, config=NOW)
    written = first.poll_once()
    first.close()
    again = MarketIndex(story.market(), path, start_block=story.deployment.block, config=NOW)
    try:
        assert again.poll_once() == 0
        assert len(IndexReader(path).events()) == written
    finally:
        again.close()


def test_an_index_of_another_history_is_rebuilt_not_followed(story: Story, tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    index = MarketIndex(story.market(), path, start_block=story.deployment.block, config=NOW)
    index.poll_once()
    index.close()
    # A fresh chain, the same deployer: the same market address and chain id, another history
    # (a local node restarted without its state).
    w3 = connect(EMBEDDED)
    deployment = deploy_market_web3(w3, test_account(0), load_params(PARAMS), artifacts=load_artifacts())
    assert deployment.market == story.deployment.market
    other = MarketIndex(deployment.market_at(w3), path, start_block=deployment.block, config=NOW)
    try:
        other.poll_once()  # the stored cursor is not on this chain: emptied
        other.poll_once()  # indexed again from the deployment
        names = Counter(event.name for event in IndexReader(path).events())
        assert names["JobCreated"] == 0 and names["CommitteeChanged"] == 1
        assert other.cursor == w3.eth.block_number
    finally:
        other.close()


def test_a_class_floor_is_read_as_it_was_at_each_block(tmp_path: Path) -> None:
    w3 = connect(EMBEDDED)
    deployment = deploy_market_web3(w3, test_account(0), load_params(PARAMS), artifacts=load_artifacts())
    owner = deployment.market_at(w3, signer=test_account(0))
    before = owner.class_floor(CPU_DEV)
    changed = owner.set_gpu_class(CPU_DEV, before + 5).block_number
    index = MarketIndex(deployment.market_at(w3), tmp_path / "index.sqlite", start_block=deployment.block, config=NOW)
    try:
        index.poll_once()
    finally:
        index.close()
    reader = IndexReader(tmp_path / "index.sqlite")
    assert reader.class_floor(CPU_DEV, changed - 1) == before
    assert reader.class_floor(CPU_DEV, changed) == before + 5
    assert reader.class_floor(CPU_DEV, deployment.block) is None  # listed after the market was deployed
