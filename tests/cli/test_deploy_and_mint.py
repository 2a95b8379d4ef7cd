"""`gpumarket market deploy` and `gpumarket market mint` against anvil: a deployment without an
ape project (its record written and usable), mock tokens minted, and the refusals."""

from __future__ import annotations

import json

from gpumarket.chain.keys import test_account
from gpumarket.chain.market_deploy import MarketDeployment

from .conftest import ok, refused


def test_deploy_writes_a_record_the_other_commands_use(cli_world):
    out = cli_world.folder / "second.json"
    document = ok(cli_world.invoke("market", "deploy", "--mock-tokens", "--out", str(out), "--json", key=0))
    record = MarketDeployment.read(out)
    assert document["market"] == record.market != cli_world.deployment.market
    assert record.chain_id == cli_world.deployment.chain_id and record.mock_tokens
    # The new market answers through its own record, with the committee of the params file.
    shown = ok(
        cli_world.invoke(
            "market", "committee", "--json", "--rpc", cli_world.node.url, "--deployment", str(out), connect_flags=False
        )
    )
    assert shown["members"] == cli_world.params.committee.members


def test_deploy_refusals(cli_world):
    bad = cli_world.folder / "bad.yaml"
    bad.write_text("treasury: [not an address]\n")
    refused(
        cli_world.invoke(
            "market", "deploy", "--params", str(bad), "--out", str(cli_world.folder / "x.json"), "--json", key=0
        ),
        "bad_params",
    )
    refused(cli_world.invoke("market", "deploy", "--out", str(cli_world.folder / "y.json"), "--json"), "no_key")
    assert not (cli_world.folder / "x.json").exists() and not (cli_world.folder / "y.json").exists()


def test_mint_gives_mock_tokens_to_the_key_or_to_another(cli_world):
    market = cli_world.market()
    me, other = test_account(9).address, test_account(10).address
    before = market.stake_token.balance_of(me), market.payment_token.balance_of(other)
    ok(cli_world.invoke("market", "mint", "stake", "3 tokens", "--json", key=9))
    ok(cli_world.invoke("market", "mint", "payment", "12345", "--to", other, "--json", key=9))
    assert market.stake_token.balance_of(me) == before[0] + 3 * 10**18
    assert market.payment_token.balance_of(other) == before[1] + 12345
    refused(cli_world.invoke("market", "mint", "stake", "0", "--json", key=9), "bad_amount")
    refused(cli_world.invoke("market", "mint", "stake", "lots", "--json", key=9), "bad_amount")
    refused(cli_world.invoke("market", "mint", "stake", "1", "--to", "0x1234", "--json", key=9), "bad_address")
    usage = cli_world.invoke("market", "mint", "gold", "1", key=9)
    assert usage.exit_code == 2
    assert json.loads(cli_world.invoke("market", "mint", "stake", "1", "--json").stdout)["error"] == "no_key"
