"""A peer that signs two different reports for one job is slashed by an honest oracle that saw both:
real HTTP between the oracles, the oracle's SQLite store, real signatures and transactions on the
embedded chain, the market's OracleBonds."""

from __future__ import annotations

from dataclasses import replace

from gpumarket.chain.connection import fund
from gpumarket.oracle.equivocation import EquivocationReporter
from gpumarket.oracle.peers import PeerClient
from gpumarket.oracle.signer import SignedReport
from gpumarket.signing.eip712 import Outcome, address_of, digest, sign
from gpumarket.testing.committee import job_report, oracle_key

from .conftest import World

JOB = 9_001
BOND = 3_000 * 10**18


def signed_by(index: int, domain, report) -> SignedReport:
    key = oracle_key(index)
    return SignedReport(
        kind="job",
        report=report,
        signature=sign(key, domain, report),
        signer=address_of(key),
        digest=digest(domain, report),
    )


def test_an_equivocating_peer_loses_its_bond_and_its_seat(world: World):
    market = world.market()
    honest, liar_index = world.oracles[0], 1
    liar = world.oracles[liar_index].key
    # The liar holds a bond: it posted it as any member does.
    fund(world.w3, liar.address, 10**18)
    as_liar = world.market(liar)
    as_liar.stake_token.mint(liar.address, BOND)
    as_liar.stake_token.approve(as_liar.bonds.address)
    as_liar.bonds.post_bond(BOND)

    provider = "0x" + "ee" * 20
    ours = job_report(JOB, provider, Outcome.COMPLETED, 300, epoch=market.epoch())
    theirs = replace(ours, outcome=Outcome.FAILED, gpu_seconds=0, result_hash=b"\0" * 32, evidence_hash=b"\0" * 32)
    honest.signer.decide_and_sign(ours)
    peer = PeerClient(honest.api.url, market.domain)
    assert peer.push(signed_by(liar_index, market.domain, ours)).status == 202
    assert peer.push(signed_by(liar_index, market.domain, theirs)).status == 409

    reporter_account = honest.submitter.market.sender
    reporter = EquivocationReporter(honest.store, honest.submitter.market)
    [done] = reporter.tick()
    assert done.signer == liar.address
    [recorded] = honest.store.equivocations()
    assert recorded.outcome == "proven" and recorded.proof_tx is not None
    bonds = market.bonds
    assert bonds.bond_of(liar.address) == 0
    assert bonds.flagged(liar.address)
    assert not bonds.eligible(liar.address)
    assert bonds.claimable(reporter_account) == BOND // 10
    assert bonds.claimable(market.treasury()) >= BOND - BOND // 10
    # Once proven, never again: the next pass has nothing to do.
    assert reporter.tick() == []


def test_an_honest_peer_is_never_reported(world: World):
    market = world.market()
    honest, other = world.oracles[0], world.oracles[2]
    report = job_report(JOB + 1, "0x" + "ef" * 20, Outcome.COMPLETED, 60, epoch=market.epoch())
    honest.signer.decide_and_sign(report)
    signed = other.signer.decide_and_sign(report)
    peer = PeerClient(honest.api.url, market.domain)
    assert peer.push(signed).status == 202
    # The same signature again, and the same report re-signed: no second report, no proof.
    peer.push(signed)
    assert other.signer.sign_job(JOB + 1).digest == signed.digest
    assert EquivocationReporter(honest.store, honest.submitter.market).tick() == []
    assert not market.bonds.flagged(other.key.address)
