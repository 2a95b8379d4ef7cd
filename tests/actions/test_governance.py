"""gpumarket.actions.governance on the embedded chain: committee and parameters, owner only,
bounds from gpumarket.chain.params (the contract's)."""

from __future__ import annotations

from gpumarket.actions import governance
from gpumarket.chain.params import PARAMETER_BOUNDS
from gpumarket.testing.committee import Committee

from .test_provider import refused


def test_committee_show_is_the_deployed_committee(world):
    info = governance.committee_show(world.market())
    assert list(info.members) == world.params.committee.members
    assert info.threshold == world.params.committee.threshold
    assert info.owner == world.owner.address and info.epoch == 1
    assert info.to_json()["members"] == world.params.committee.members
    assert "2 of 3" in info.render()


def test_committee_set_checks_owner_members_and_threshold(world):
    members = Committee.of_size(5, threshold=3).addresses
    stranger = world.market(world.new_key())
    refused("not_owner", governance.committee_set, stranger, members, 3)
    owner = world.market(world.owner)
    refused("bad_threshold", governance.committee_set, owner, members, 2)  # 2 of 5 is no majority
    refused("bad_threshold", governance.committee_set, owner, members, 6)
    refused("bad_committee", governance.committee_set, owner, [members[0], members[0], members[1]], 2)
    refused("bad_committee", governance.committee_set, owner, [], 1)
    refused("bad_address", governance.committee_set, owner, ["0xnope"], 1)
    current = governance.committee_show(owner)
    refused("no_change", governance.committee_set, owner, list(current.members), current.threshold)

    result = governance.committee_set(owner, members, 3)
    assert result.details["epoch"] == current.epoch + 1
    after = governance.committee_show(owner)
    assert (list(after.members), after.threshold, after.epoch) == (members, 3, current.epoch + 1)


def test_params_show_lists_every_parameter_with_its_bounds(world):
    rows = governance.params_show(world.market())
    values = world.market().parameters()
    assert [(r.name, r.value, (r.lower, r.upper)) for r in rows] == [
        (name, values[name], PARAMETER_BOUNDS[name]) for name in PARAMETER_BOUNDS
    ]
    text = governance.render_params(rows)
    assert all(name in text for name in PARAMETER_BOUNDS)


def test_params_set_checks_name_bounds_and_owner(world):
    owner = world.market(world.owner)
    refused("unknown_parameter", governance.params_set, owner, "max_fun", 1)
    lower, upper = PARAMETER_BOUNDS["unbonding_period"]
    refused("out_of_bounds", governance.params_set, owner, "unbonding_period", lower - 1)
    error = refused("out_of_bounds", governance.params_set, owner, "unbonding_period", upper + 1)
    assert f"{lower:,} .. {upper:,}" in error.hint
    refused("not_owner", governance.params_set, world.market(world.new_key()), "unbonding_period", lower)
    current = owner.parameters()["unbonding_period"]
    refused("no_change", governance.params_set, owner, "unbonding_period", current)

    result = governance.params_set(owner, "unbonding_period", upper)
    assert owner.parameters()["unbonding_period"] == upper
    assert (result.details["old"], result.details["value"]) == (current, upper)
