"""The oracle service proves a peer's equivocation on its own: two different signed reports of a
job it decided, pushed to its API, and its loop has the peer's bond slashed and the peer flagged."""

from __future__ import annotations

from dataclasses import replace

from gpumarket.chain.connection import fund
from gpumarket.oracle.peers import PeerClient
from gpumarket.oracle.signer import SignedReport
from gpumarket.signing.eip712 import Outcome, address_of, digest, sign
from gpumarket.testing.committee import job_report, oracle_key

from .conftest import Market3, wait_for

BOND = 2_000 * 10**18


def test_the_service_slashes_a_peer_that_signed_two_reports(world: Market3) -> None:
    market = world.market()
    honest = world.oracles[0]
    liar_key = world.oracles[1].config.key
    fund(world.w3, liar_key.address, 10**18)
    as_liar = world.market(liar_key)
    as_liar.stake_token.mint(liar_key.address, BOND)
    as_liar.stake_token.approve(as_liar.bonds.address)
    as_liar.bonds.post_bond(BOND)

    ours = job_report(77_777, "0x" + "ab" * 20, Outcome.COMPLETED, 120, epoch=market.epoch())
    theirs = replace(ours, gpu_seconds=99_999)
    assert honest.signer is not None and honest.store is not None
    honest.signer.decide_and_sign(ours)
    peer = PeerClient(honest.url, market.domain)
    for report in (ours, theirs):
        key = oracle_key(1)
        peer.push(
            SignedReport(
                kind="job",
                report=report,
                signature=sign(key, market.domain, report),
                signer=address_of(key),
                digest=digest(market.domain, report),
            )
        )
    wait_for(lambda: market.bonds.flagged(liar_key.address), 30, "the liar flagged")
    assert market.bonds.bond_of(liar_key.address) == 0
    [found] = honest.store.equivocations()
    assert found.outcome == "proven"
