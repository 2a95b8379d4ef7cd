"""PARAMETER_BOUNDS mirror the contract's setters, so YAML validation refuses exactly
what the chain would refuse (and nothing it would accept)."""

from __future__ import annotations

import ape
import pytest

from gpumarket.chain.params import PARAMETER_BOUNDS


@pytest.mark.parametrize("name", PARAMETER_BOUNDS)
def test_contract_accepts_the_bounds_and_refuses_beyond(market, owner, name):
    lower, upper = PARAMETER_BOUNDS[name]
    setter = getattr(market, f"set_{name}")
    for value in (lower, upper):
        setter(value, sender=owner)
        assert getattr(market, name)() == value
    beyond = [upper + 1] + ([lower - 1] if lower > 0 else [])
    for value in beyond:
        with ape.reverts("governance: value out of bounds"):
            setter(value, sender=owner)
