"""The ten bounded numeric setters (set_min_stake .. set_jail_after_failures).

They share one shape (owner only, inclusive bounds, ParameterChanged with old and new
value), so one parametrized file covers them all against docs/PROTOCOL.md's table.
Access control is in test_owner_only.py.
"""

from __future__ import annotations

import ape
import pytest

from unit.expectations import emitted

from .governance_parameters import PARAMETER_IDS, PARAMETERS, Parameter


def set_parameter(market, parameter: Parameter, value: int, sender):
    return getattr(market, parameter.setter)(value, sender=sender)


def all_parameter_values(market) -> dict[str, int]:
    return {parameter.name: getattr(market, parameter.name)() for parameter in PARAMETERS}


def values_outside(parameter: Parameter) -> list[int]:
    """The values just outside the bounds that a uint256 can carry."""
    outside = [parameter.upper + 1]
    if parameter.lower > 0:
        outside.append(parameter.lower - 1)
    return outside


@pytest.mark.parametrize("parameter", PARAMETERS, ids=PARAMETER_IDS)
@pytest.mark.parametrize("edge", ["lower", "upper"])
def test_accepts_inclusive_bound(market, owner, parameter: Parameter, edge: str):
    value = getattr(parameter, edge)
    set_parameter(market, parameter, value, owner)
    assert getattr(market, parameter.name)() == value


@pytest.mark.parametrize("parameter", PARAMETERS, ids=PARAMETER_IDS)
def test_rejects_values_just_outside_bounds(market, owner, parameter: Parameter):
    for value in values_outside(parameter):
        with ape.reverts("governance: value out of bounds"):
            set_parameter(market, parameter, value, owner)
    assert getattr(market, parameter.name)() == parameter.default


@pytest.mark.parametrize("parameter", PARAMETERS, ids=PARAMETER_IDS)
def test_logs_parameter_changed_with_old_and_new_value(market, owner, parameter: Parameter):
    # Two changes in a row: the second event's old value is the first change's new value.
    expected_old = parameter.default
    for new_value in (parameter.lower, parameter.upper):
        tx = set_parameter(market, parameter, new_value, owner)
        assert emitted(tx, market.ParameterChanged) == [
            {"name": parameter.name, "old_value": expected_old, "new_value": new_value}
        ]
        assert len(tx.events) == 1
        expected_old = new_value


@pytest.mark.parametrize("parameter", PARAMETERS, ids=PARAMETER_IDS)
def test_changes_only_its_own_parameter(market, owner, treasury, parameter: Parameter):
    before = all_parameter_values(market)
    new_value = parameter.lower if parameter.default != parameter.lower else parameter.upper
    set_parameter(market, parameter, new_value, owner)
    assert all_parameter_values(market) == {**before, parameter.name: new_value}
    assert market.treasury() == treasury
