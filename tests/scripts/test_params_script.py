"""`ape run params show|set` against one anvil and one `ape run deploy` (TEST::0 owns it)."""

from __future__ import annotations

import json
import re

from gpumarket.chain.params import PARAMETER_BOUNDS

OWNER, NOT_OWNER = 0, 1


def _show(world) -> dict[str, dict]:
    result = world.run("params", "show", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_show_lists_every_parameter_with_its_bounds(script_world):
    shown = _show(script_world)
    on_chain = script_world.market().parameters()
    assert list(shown) == list(PARAMETER_BOUNDS)
    for name, (lower, upper) in PARAMETER_BOUNDS.items():
        assert shown[name] == {"name": name, "value": str(on_chain[name]), "min": str(lower), "max": str(upper)}
    text = script_world.run("params", "show").stdout
    lower, upper = PARAMETER_BOUNDS["unbonding_period"]
    row = rf"^unbonding_period\s+{on_chain['unbonding_period']:,}\s+{lower:,}\s+{upper:,}$"
    assert re.search(row, text, flags=re.MULTILINE), text


def test_set_checks_bounds_and_owner_before_sending(script_world):
    name = "unbonding_period"
    lower, upper = PARAMETER_BOUNDS[name]
    before = script_world.market().parameters()[name]

    message = script_world.refusal(script_world.run("params", "set", name, str(upper + 1), account=OWNER))
    assert f"{name} = {upper + 1} is out of bounds" in message and f"{lower:,} .. {upper:,}" in message
    message = script_world.refusal(script_world.run("params", "set", "unbonding_perod", "1", account=OWNER))
    assert "unknown parameter 'unbonding_perod'" in message and name in message
    message = script_world.refusal(script_world.run("params", "set", name, str(before + 1), account=NOT_OWNER))
    assert "is not the market's owner" in message
    assert script_world.market().parameters()[name] == before

    wanted = min(upper, before * 2)
    result = script_world.run("params", "set", name, f"{wanted:_}", "--json", account=OWNER)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {k: json.loads(result.stdout)[k] for k in ("name", "old", "value")} == {
        "name": name,
        "old": str(before),
        "value": str(wanted),
    }
    assert script_world.market().parameters()[name] == wanted
    assert "already is" in script_world.refusal(script_world.run("params", "set", name, str(wanted), account=OWNER))
