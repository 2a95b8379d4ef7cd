"""Every owner-only function refuses any other caller with snekmate's ownable message.

One shape for all of them, so one parametrized file. The arguments are valid ones, so
the only reason left to revert is the caller. `unjail` is checked against a really
jailed provider in tests/unit/registry/test_unjail.py.
"""

from __future__ import annotations

import ape
import pytest

from .governance_parameters import PARAMETERS

# (function, argument builder) with arguments an owner call would accept.
OWNER_ONLY_CALLS = [
    *[(parameter.setter, lambda roles, p=parameter: [p.lower]) for parameter in PARAMETERS],
    ("set_treasury", lambda roles: [roles["client"]]),
    ("set_gpu_class", lambda roles: [7, 1_000]),
    ("pause", lambda roles: []),
    ("set_committee", lambda roles: [roles["committee"].addresses, roles["committee"].threshold]),
    ("transfer_ownership", lambda roles: [roles["client"]]),
]


@pytest.fixture
def roles(client, committee):
    return {"client": client, "committee": committee}


@pytest.fixture
def non_owners(attacker, treasury, keeper):
    # Requested as fixtures (not getfixturevalue): ape's chain isolation rebuilds
    # module fixtures when a session fixture first appears mid-module.
    return {"attacker": attacker, "treasury": treasury, "keeper": keeper}


@pytest.mark.parametrize("function, arguments", OWNER_ONLY_CALLS, ids=[name for name, _ in OWNER_ONLY_CALLS])
@pytest.mark.parametrize("caller_role", ["attacker", "treasury", "keeper"])
def test_non_owner_is_refused(market, owner, non_owners, roles, function: str, arguments, caller_role: str):
    caller = non_owners[caller_role]
    with ape.reverts("ownable: caller is not the owner"):
        getattr(market, function)(*arguments(roles), sender=caller)
    # The same call succeeds for the owner: the caller was the only obstacle.
    getattr(market, function)(*arguments(roles), sender=owner)


def test_non_owner_cannot_unpause(market, owner, attacker):
    market.pause(sender=owner)
    with ape.reverts("ownable: caller is not the owner"):
        market.unpause(sender=attacker)
    assert market.paused() is True
