"""deploy_market and write_deployment: ape's way into the one deploy (deploy_market_web3),
as the script, the walkthrough and the gas benchmark call it.

Every test runs on ethereum:local:test (py-evm behind web3): the deploy sends through ape's
JSON-RPC connection, which titanoboa, the contract tests' provider, does not have.
"""

from __future__ import annotations

import json

import ape
import pytest
from ape_accounts.accounts import KeyfileAccount
from eth_account import Account

from gpumarket.chain.ape_bridge import BridgeError, connected_web3
from gpumarket.chain.deploy import deploy_market, deployment_path, write_deployment
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import read_back
from gpumarket.chain.params import PARAMETER_BOUNDS, ParamsError, load_params, parse_params

# Defaults from docs/PROTOCOL.md that the contract starts with.
PROTOCOL_DEFAULTS = {
    "min_stake": 1_000 * 10**18,
    "unbonding_period": 7 * 86_400,
    "collateral_bps": 2_000,
    "collateral_rate": 10**18,
    "slash_bps": 10_000,
    "client_share_bps": 5_000,
    "protocol_fee_bps": 250,
    "spoof_slash_bps": 1_000,
    "settle_grace": 3_600,
    "hardware_validity": 86_400,
    "jail_after_failures": 3,
}


@pytest.fixture(autouse=True)
def py_evm():
    """ape's py-evm provider for each test (the session's titanoboa comes back after it).
    Fixtures that deploy name it too: ape's plugin orders a test's fixtures its own way."""
    with ape.networks.parse_network_choice("ethereum:local:test") as provider:
        yield provider


def on_chain(market) -> dict:
    """read_back of an ape contract, through a web3 Market on the same chain."""
    return read_back(Market(connected_web3(), market.address))


@pytest.fixture
def existing_stake_token(py_evm, project, owner):
    # Not named stake_token: shadowing tests/conftest.py's module-scoped fixture with a
    # function-scoped one breaks ape's snapshot restore under boa ("No checkpoint N").
    return project.MockToken.deploy("Stake", "STK", 18, sender=owner)


@pytest.fixture
def existing_payment_token(py_evm, project, owner):
    return project.MockToken.deploy("Payment", "PAY", 6, sender=owner)


@pytest.fixture
def mock_deployment(py_evm, project, owner, default_params_path):
    params = load_params(default_params_path)
    reported: list[str] = []
    deployment, market = deploy_market(
        params, owner, params_file=default_params_path, project=project, report=reported.append
    )
    # The report tells what got deployed, in order.
    assert reported[0].startswith("stake_token: deployed MockToken mSTK at ")
    assert f"GpuMarket deployed at {market.address} (block {deployment.block})" in reported
    return params, deployment, market


def test_default_params_deploy_mock_tokens_classes_and_overrides(project, owner, mock_deployment):
    params, deployment, market = mock_deployment
    for field in ("stake_token", "payment_token"):
        token = project.MockToken.at(getattr(deployment, field))
        assert token.decimals() == 18
        assert str(getattr(market, field.upper())()) == getattr(deployment, field)
    assert deployment.stake_token != deployment.payment_token
    assert market.treasury() == owner.address  # "deployer"
    assert market.owner() == owner.address
    assert market.members() == params.committee.members
    assert market.threshold() == params.committee.threshold
    assert market.epoch() == 1
    for gpu_class in params.gpu_classes:
        assert market.class_floor(gpu_class.id) == gpu_class.floor_per_gpu_gops
    for name, value in params.overrides().items():
        assert getattr(market, name)() == value


def test_deployment_record_says_what_the_chain_holds(chain, owner, mock_deployment, default_params_path):
    params, deployment, market = mock_deployment
    record = deployment.to_json()
    assert {
        k: record[k] for k in ("ecosystem", "network", "chain_id", "deployer", "market", "mock_tokens", "params_file")
    } == {
        "ecosystem": "ethereum",
        "network": "local",
        "chain_id": chain.chain_id,
        "deployer": owner.address,
        "market": market.address,
        "mock_tokens": True,
        "params_file": str(default_params_path),
    }
    assert chain.get_receipt(market.txn_hash).block_number == record["block"]
    assert record["params"]["treasury"] == owner.address
    assert record["params"]["stake_token"] == record["stake_token"]
    assert record["params"]["committee"] == on_chain(market)["committee"]
    assert record["params"]["gpu_classes"] == [c.model_dump() for c in params.gpu_classes]
    assert record["params"]["parameters"] == on_chain(market)["parameters"]


def test_write_deployment_writes_the_record_as_json(tmp_path, mock_deployment):
    _, deployment, _ = mock_deployment
    path = write_deployment(deployment, tmp_path / "deployments")
    assert path == tmp_path / "deployments" / "local.json"
    assert json.loads(path.read_text()) == deployment.to_json()


def test_deployment_file_is_named_by_network_with_the_ecosystem_off_ethereum(tmp_path):
    assert deployment_path("ethereum", "sepolia", tmp_path) == tmp_path / "sepolia.json"
    assert deployment_path("arbitrum", "sepolia", tmp_path) == tmp_path / "arbitrum-sepolia.json"


def test_existing_tokens_treasury_owner_and_untouched_defaults(
    project, owner, treasury, existing_stake_token, existing_payment_token, params_data, accounts
):
    new_owner = accounts[9]
    params_data.update(
        stake_token=existing_stake_token.address,
        payment_token=existing_payment_token.address,
        treasury=treasury.address,
        owner=new_owner.address,
    )
    params_data["parameters"] = {"collateral_bps": 3_000}
    deployment, market = deploy_market(parse_params(params_data), owner, project=project)
    assert (deployment.stake_token, deployment.payment_token, deployment.mock_tokens) == (
        existing_stake_token.address,
        existing_payment_token.address,
        False,
    )
    assert market.treasury() == treasury.address
    # Two-step: the new owner is offered the market and must accept it.
    assert market.owner() == owner.address
    assert market.pending_owner() == new_owner.address
    market.accept_ownership(sender=new_owner)
    assert market.owner() == new_owner.address
    assert {name: getattr(market, name)() for name in PARAMETER_BOUNDS} == {
        **PROTOCOL_DEFAULTS,
        "collateral_bps": 3_000,
    }


def test_same_token_for_stake_and_payment(project, owner, existing_stake_token, params_data):
    params_data.update(stake_token=existing_stake_token.address, payment_token=existing_stake_token.address)
    _, market = deploy_market(parse_params(params_data), owner, project=project)
    assert market.STAKE_TOKEN() == market.PAYMENT_TOKEN() == existing_stake_token.address


def test_deploy_mock_tokens_flag_replaces_the_yaml_tokens(
    project, owner, existing_stake_token, existing_payment_token, params_data
):
    params_data.update(stake_token=existing_stake_token.address, payment_token=existing_payment_token.address)
    deployment, _ = deploy_market(parse_params(params_data), owner, deploy_mock_tokens=True, project=project)
    assert deployment.mock_tokens
    assert {deployment.stake_token, deployment.payment_token}.isdisjoint(
        {existing_stake_token.address, existing_payment_token.address}
    )


def test_token_without_code_is_refused_before_any_transaction(project, owner, params_data, accounts):
    params_data["payment_token"] = accounts[10].address  # an account, not a contract
    nonce = owner.nonce
    with pytest.raises(
        ParamsError, match=f"payment_token: no contract code at {accounts[10].address} on ethereum:local"
    ):
        deploy_market(parse_params(params_data), owner, project=project)
    assert owner.nonce == nonce


def test_only_the_deployer_owns_the_new_market(project, owner, attacker, mock_deployment):
    _, _, market = mock_deployment
    with ape.reverts("ownable: caller is not the owner"):
        market.set_gpu_class(3, 1, sender=attacker)


def test_titanoboa_is_refused_with_the_network_to_use(project, owner, params_data):
    with ape.networks.parse_network_choice("ethereum:local:boa"):
        with pytest.raises(BridgeError, match="ethereum:local:test"):
            deploy_market(parse_params(params_data), owner, project=project)


def test_a_keyfile_account_deploys_and_owns_the_market(project, owner, params_data, tmp_path):
    key = Account.create()
    keyfile = tmp_path / "deployer.json"
    keyfile.write_text(json.dumps(Account.encrypt(key.key, "passphrase")))
    deployer = KeyfileAccount(keyfile_path=keyfile)
    deployer.set_autosign(True, passphrase="passphrase")  # what a user types at each prompt
    owner.transfer(deployer, 10**20)
    deployment, market = deploy_market(parse_params(params_data), deployer, project=project, report=lambda _: None)
    assert deployment.deployer == deployer.address == key.address
    assert market.owner() == deployer.address
