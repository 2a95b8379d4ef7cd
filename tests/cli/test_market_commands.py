"""`gpumarket market committee|params` against anvil: show (text and --json), change (owner
only), and the refusals: not the owner, a threshold without a majority, out-of-bounds values."""

from __future__ import annotations

from gpumarket.chain.params import PARAMETER_BOUNDS
from gpumarket.testing.committee import Committee

from .conftest import ok, refused


def test_committee_show_and_set(cli_world):
    shown = ok(cli_world.invoke("market", "committee", "--json"))
    assert shown["members"] == cli_world.params.committee.members
    assert shown["threshold"] == cli_world.params.committee.threshold
    text = cli_world.invoke("market", "committee")
    assert text.exit_code == 0 and "2 of 3" in text.stdout

    members = ",".join(Committee.of_size(4, threshold=3).addresses)
    refused(cli_world.invoke("market", "committee", "--set", members, "--threshold", "3", "--json", key=6), "not_owner")
    refused(
        cli_world.invoke("market", "committee", "--set", members, "--threshold", "2", "--json", key=0), "bad_threshold"
    )
    changed = ok(cli_world.invoke("market", "committee", "--set", members, "--threshold", "3", "--json", key=0))
    assert changed["epoch"] == shown["epoch"] + 1
    market = cli_world.market()
    assert (market.members(), market.threshold(), market.epoch()) == (members.split(","), 3, shown["epoch"] + 1)
    usage = cli_world.invoke("market", "committee", "--set", members, key=0)
    assert usage.exit_code == 2 and "--threshold" in usage.stderr


def test_params_show_and_set(cli_world):
    shown = ok(cli_world.invoke("market", "params", "--json"))
    values = cli_world.market().parameters()
    assert {name: int(row["value"]) for name, row in shown.items()} == values
    assert {name: (int(row["min"]), int(row["max"])) for name, row in shown.items()} == PARAMETER_BOUNDS
    table = cli_world.invoke("market", "params").stdout
    assert all(name in table for name in PARAMETER_BOUNDS)

    lower, upper = PARAMETER_BOUNDS["settle_grace"]
    bounds = refused(
        cli_world.invoke("market", "params", "--set", f"settle_grace={upper + 1}", "--json", key=0), "out_of_bounds"
    )
    assert f"{lower:,} .. {upper:,}" in bounds["hint"]
    refused(cli_world.invoke("market", "params", "--set", "nope=1", "--json", key=0), "unknown_parameter")
    refused(cli_world.invoke("market", "params", "--set", f"settle_grace={lower}", "--json", key=7), "not_owner")
    assert cli_world.invoke("market", "params", "--set", "settle_grace", key=0).exit_code == 2

    changed = ok(cli_world.invoke("market", "params", "--set", f"settle_grace={lower}", "--json", key=0))
    assert changed["old"] == str(values["settle_grace"]) and changed["value"] == str(lower)
    assert cli_world.market().parameters()["settle_grace"] == lower
