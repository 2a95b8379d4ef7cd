"""`ape run committee show|set` against one anvil and one `ape run deploy` (TEST::0 owns it)."""

from __future__ import annotations

import json

from gpumarket.chain.keys import test_account
from gpumarket.chain.params import load_params
from gpumarket.testing.committee import Committee

OWNER, NOT_OWNER = 0, 1


def _show(world) -> dict:
    result = world.run("committee", "show", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def _set(world, members: list[str], threshold: int, account: int = OWNER, *extra: str):
    member_options = [option for member in members for option in ("--member", member)]
    return world.run("committee", "set", *member_options, "--threshold", str(threshold), *extra, account=account)


def test_show_then_set_a_new_epoch(script_world, default_params_path):
    committee = load_params(default_params_path).committee
    assert _show(script_world) == {
        "epoch": 1,
        "members": committee.members,
        "threshold": committee.threshold,
        "owner": test_account(OWNER).address,
    }
    text = script_world.run("committee", "show").stdout
    assert f"threshold  {committee.threshold} of {len(committee.members)}" in text
    assert all(member in text for member in committee.members)

    new = Committee.of_size(5, threshold=3, first_index=10).addresses
    message = script_world.refusal(_set(script_world, new, 3, NOT_OWNER))
    assert f"is not the market's owner ({test_account(OWNER).address})" in message
    # A threshold that is no strict majority of 5 members is refused before sending.
    message = script_world.refusal(_set(script_world, new, 2))
    assert "threshold 2 of 5 is not a strict majority" in message and "from 3 to 5" in message
    message = script_world.refusal(_set(script_world, [new[0], new[0]], 2))
    assert f"duplicate member(s): {new[0]}" in message
    assert _show(script_world)["epoch"] == 1

    result = _set(script_world, new, 3, OWNER, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["epoch"] == 2
    assert _show(script_world) == {"epoch": 2, "members": new, "threshold": 3, "owner": test_account(OWNER).address}
