"""The fuzz cast: three providers, three clients, two treasuries, and both token layouts.

The root conftest has two providers and two clients; the third of each and a second
treasury come from the spare test accounts. Deployments stay module-scoped: the state
machine snapshots and restores the chain around each hypothesis example itself.
"""

from __future__ import annotations

import os

import pytest

from gpumarket.testing.hypothesis_profiles import ENV_VAR
from helpers.constants import TOKEN

# Root conftest uses accounts[0..7]; these are the spare ones.
PROVIDER3_INDEX, CLIENT3_INDEX, SECOND_TREASURY_INDEX = 8, 9, 10
MINTED = 1_000_000 * TOKEN


@pytest.fixture(scope="module")
def fuzz_providers(accounts, provider, provider2):
    return [provider, provider2, accounts[PROVIDER3_INDEX]]


@pytest.fixture(scope="module")
def fuzz_clients(accounts, client, client2):
    return [client, client2, accounts[CLIENT3_INDEX]]


@pytest.fixture(scope="module")
def fuzz_treasuries(accounts, treasury):
    """The deployment's treasury, and the account governance may switch it to."""
    return [treasury, accounts[SECOND_TREASURY_INDEX]]


@pytest.fixture(scope="module")
def shared_token_market(deploy_market, stake_token, committee):
    """A market whose stake and payment token are the same ERC20 (docs/PROTOCOL.md allows it)."""
    return deploy_market(stake_token, stake_token, committee.addresses, committee.threshold)


@pytest.fixture(
    scope="module",
    params=[
        "two_tokens",
        # The security suite checks one-token conservation step by step; fuzzing it too
        # doubles the run, so only the thorough profile (make fuzz) does.
        pytest.param(
            "shared_token",
            marks=pytest.mark.skipif(
                os.environ.get(ENV_VAR, "").strip() != "thorough",
                reason="fuzzed by the thorough profile only (GPUMARKET_HYPOTHESIS_PROFILE=thorough, make fuzz)",
            ),
        ),
    ],
)
def fuzz_market(request, market, shared_token_market, stake_token, payment_token, fuzz_providers, fuzz_clients, funded):
    """(market, stake token, payment token) with every cast member funded and approved."""
    if request.param == "two_tokens":
        deployment = (market, stake_token, payment_token)
    else:
        deployment = (shared_token_market, stake_token, stake_token)
    chosen_market, *tokens = deployment
    for account in (*fuzz_providers, *fuzz_clients):
        for token in {str(t): t for t in tokens}.values():
            if token.balanceOf(account) < MINTED:
                token.mint(account, MINTED, sender=account)
            token.approve(chosen_market, 2**256 - 1, sender=account)
    return deployment
