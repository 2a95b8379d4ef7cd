"""The market's companion contracts (BatchSettler, OracleBonds) for the unit tests that need them.

The shared `market` fixture is created without companions (a market without them behaves as
before they existed). Test folders that need them re-export this module's `market`, which the
constructor gives both, from blueprints, and the fixtures below that read them back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from gpumarket.signing.batch import Multiproof, ReportTree
from gpumarket.signing.eip712 import JobReport, JobReportBatch, quorum_signatures, to_tuple
from helpers.constants import DAY

BOND = 5_000 * 10**18
WITHDRAWAL_DELAY = 2 * DAY


@pytest.fixture(scope="module")
def market(deploy_market, stake_token, payment_token, committee):
    """The shared market's twin, created with its companions (bond BOND, delay WITHDRAWAL_DELAY)."""
    return deploy_market(
        stake_token, payment_token, committee.addresses, committee.threshold, companions=(BOND, WITHDRAWAL_DELAY)
    )


@pytest.fixture(scope="module")
def companions(project, market):
    """(settler, bonds): the ones `market` created."""
    return project.BatchSettler.at(market.batch_settler()), project.OracleBonds.at(market.oracle_bonds())


@pytest.fixture(scope="module")
def settler(companions):
    return companions[0]


@pytest.fixture(scope="module")
def bonds(companions):
    return companions[1]


def sign_batch(domain, keys: Sequence[bytes], tree: ReportTree) -> list[bytes]:
    """Signatures of `tree`'s root by `keys`, sorted by signer."""
    return quorum_signatures(domain, JobReportBatch(root=tree.root, epoch=tree.epoch), keys)


@pytest.fixture
def settle_batch(settler, committee, domain, keeper) -> Callable[..., object]:
    """Builder: signs one batch root over `reports` with the committee's quorum and settles
    `subset` of them (default: all) in one transaction."""

    def do(reports: Sequence[JobReport], subset: Sequence[JobReport] | None = None, signers=None, sender=None):
        tree = ReportTree(reports)
        proof = tree.multiproof(list(subset) if subset is not None else tree.reports)
        signatures = sign_batch(domain, committee.keys[: signers or committee.threshold], tree)
        return submit(settler, proof, signatures, sender=sender or keeper)

    return do


def submit(settler, proof: Multiproof, signatures: Sequence[bytes], sender):
    """settle_batch of a multiproof (the reports as ABI tuples)."""
    reports = [to_tuple(report) for report in proof.reports]
    return settler.settle_batch(reports, list(proof.proof), proof.flag_bits, list(signatures), sender=sender)


@pytest.fixture
def bonded(bonds, stake_token, committee, accounts):
    """Builder: posts `amount` (default BOND) for the committee member at `index`, sending from
    the member's address (impersonated: the chain is local)."""

    def do(index: int, amount: int = BOND):
        member = accounts.impersonate_account(committee.addresses[index])
        stake_token.mint(member, amount, sender=member)
        stake_token.approve(bonds, amount, sender=member)
        bonds.post_bond(amount, sender=member)
        return member

    return do


@pytest.fixture
def stake_books(bonds, stake_token, committee, keeper, treasury, attacker):
    """Checks the bonds contract's token balance == bonds + claimable slash shares."""

    def check() -> None:
        everyone = [*committee.addresses, keeper.address, treasury.address, attacker.address]
        owed = sum(bonds.bond_of(a) + bonds.claimable(a) for a in everyone)
        assert stake_token.balanceOf(bonds) == owed

    return check
