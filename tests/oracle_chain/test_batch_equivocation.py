"""A peer that signs a batch root over one report of a job and, alone, another report of the same
job is slashed: the proposer keeps the root signature it gathered over HTTP as the peer's
signature of each report in the batch (with the report's Merkle path), and the market's
OracleBonds accepts that batched attestation as half of the proof. Real HTTP, SQLite stores and
transactions on the embedded chain; its own deployment, since it flags a committee member."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from web3 import Web3

from gpumarket.chain.artifacts import load_artifacts
from gpumarket.chain.connection import EMBEDDED, connect, fund
from gpumarket.chain.keys import ServiceKey, test_account, test_oracle
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import deploy_market_web3
from gpumarket.chain.params import load_params
from gpumarket.oracle.api import OracleAPI
from gpumarket.oracle.batches import settle_batch
from gpumarket.oracle.chain_submitter import ChainSubmitter
from gpumarket.oracle.equivocation import EquivocationReporter
from gpumarket.oracle.peers import PeerClient
from gpumarket.oracle.signer import OracleSigner, SignedReport
from gpumarket.oracle.store import DecisionStore
from gpumarket.oracle.sync import CommitteeSync
from gpumarket.signing.eip712 import Outcome, digest, sign
from gpumarket.testing.committee import job_report, oracle_key

from .conftest import PARAMS

BOND = 3_000 * 10**18
# The jobs need not exist: the evidence is the signatures, and the market skips, in a batch, a
# job that is not running.
JOBS = (101, 102, 103)
PROVIDER = "0x" + "ee" * 20


@dataclass
class Member:
    key: ServiceKey
    store: DecisionStore
    signer: OracleSigner
    api: OracleAPI


@dataclass
class Chain:
    w3: Web3
    market: Market
    members: list[Member]

    def as_account(self, key: ServiceKey) -> Market:
        return Market(self.w3, self.market.address, signer=key)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    """A fresh market and two of its committee's oracles, each with its store and live API."""
    w3 = connect(EMBEDDED)
    deployment = deploy_market_web3(w3, test_account(0), load_params(PARAMS), artifacts=load_artifacts())
    market = deployment.market_at(w3)
    members = []
    try:
        for i in range(2):
            key = test_oracle(i)
            store = DecisionStore.open(tmp_path / f"oracle{i}.db", market.domain, key.address)
            CommitteeSync(store, market).load_current()
            signer = OracleSigner(store, key)
            members.append(Member(key, store, signer, OracleAPI(store, signer).start()))
        yield Chain(w3, market, members)
    finally:
        for member in members:
            member.api.stop()
            member.store.close()


def test_a_peer_that_signed_a_batch_root_and_another_report_alone_loses_its_bond(chain: Chain) -> None:
    proposer, liar = chain.members
    fund(chain.w3, liar.key.address, 10**18)
    as_liar = chain.as_account(liar.key)
    as_liar.stake_token.mint(liar.key.address, BOND)
    as_liar.stake_token.approve(as_liar.bonds.address)
    as_liar.bonds.post_bond(BOND)

    epoch = chain.market.epoch()
    ours = [job_report(job_id, PROVIDER, Outcome.COMPLETED, 60, epoch=epoch) for job_id in JOBS]
    for report in ours:  # both decide alike, so the liar signs the proposer's root
        proposer.signer.decide_and_sign(report)
        liar.signer.decide_and_sign(report)
    submitter = ChainSubmitter(chain.as_account(test_account(5)), proposer.store)
    result = settle_batch(proposer.signer, submitter, [PeerClient(liar.api.url, chain.market.domain)], JOBS)
    assert result.tx_hash is not None, result.detail
    assert proposer.store.equivocations() == []

    # The liar then signs, alone (its key, past its store), another report of one of those jobs.
    domain = chain.market.domain
    theirs = replace(ours[1], outcome=Outcome.FAILED, gpu_seconds=0, result_hash=b"\0" * 32, evidence_hash=b"\0" * 32)
    signed = SignedReport("job", theirs, sign(oracle_key(1), domain, theirs), liar.key.address, digest(domain, theirs))
    assert PeerClient(proposer.api.url, domain).push(signed).status == 409  # not our decision: kept as evidence
    [found] = proposer.store.equivocations()
    assert found.first.report == ours[1] and found.first.path is not None  # the root's signature
    assert found.second.report == theirs and found.second.path is None

    reporter = EquivocationReporter(proposer.store, submitter.market)
    [done] = reporter.tick()
    assert done.signer == liar.key.address
    [recorded] = proposer.store.equivocations()
    assert recorded.outcome == "proven" and recorded.proof_tx is not None
    bonds = chain.market.bonds
    assert bonds.bond_of(liar.key.address) == 0
    assert bonds.flagged(liar.key.address)
    assert bonds.claimable(submitter.market.sender) == BOND // 10
