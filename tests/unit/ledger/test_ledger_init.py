"""GpuMarket's constructor, ledger side: the two tokens are fixed and must have code.

A token without code would make every transfer to it a silent no-op (raw_call succeeds).
"""

from __future__ import annotations

import ape
import pytest

from helpers.constants import NO_COMPANIONS
from unit.expectations import ZERO_ADDRESS

EOA = "0x000000000000000000000000000000000000dEaD"


def test_tokens_are_the_constructor_arguments(market, stake_token, payment_token):
    assert market.STAKE_TOKEN() == stake_token.address
    assert market.PAYMENT_TOKEN() == payment_token.address


def test_one_token_may_serve_as_both(project, owner, treasury, stake_token, committee):
    same = project.GpuMarket.deploy(
        stake_token, stake_token, treasury, committee.addresses, committee.threshold, *NO_COMPANIONS, sender=owner
    )
    assert same.STAKE_TOKEN() == same.PAYMENT_TOKEN() == stake_token.address


@pytest.mark.parametrize("codeless", [EOA, ZERO_ADDRESS], ids=["eoa", "zero-address"])
@pytest.mark.parametrize("role", ["stake", "payment"])
def test_token_without_code_reverts(
    project, owner, treasury, stake_token, payment_token, committee, codeless: str, role: str
):
    stake, payment = (codeless, payment_token) if role == "stake" else (stake_token, codeless)
    with ape.reverts(f"ledger: {role} token has no code"):
        project.GpuMarket.deploy(
            stake, payment, treasury, committee.addresses, committee.threshold, *NO_COMPANIONS, sender=owner
        )
