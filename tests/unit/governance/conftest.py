"""Fixtures for the governance tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def successor(accounts):
    """An account governance hands something to: a new treasury or a new owner."""
    return accounts[8]


@pytest.fixture(scope="module", autouse=True)
def _chain_fixtures_before_any_snapshot(
    owner, treasury, provider, provider2, client, client2, keeper, attacker, committee, successor,
    stake_token, payment_token, deploy_market, market, domain, funded,
    register, verify, ready_provider, create_job, running_job, settle,
):
    """Sets up every shared fixture when the module starts.

    ape-titanoboa 0.8.0a1 cannot restore its snapshots once a session- or
    module-scoped fixture first appears after a test's snapshot was taken ("No
    checkpoint N was found" at teardown), so none may appear mid-module.
    """
