"""gpumarket.chain.market_deploy: a web3 deployment from the validated params, read back;
the record other processes read; refusals before any transaction."""

from __future__ import annotations

import json
import threading

import pytest

from gpumarket.chain.anvil import AnvilNode
from gpumarket.chain.connection import EMBEDDED, connect, mine
from gpumarket.chain.errors import ChainMismatch
from gpumarket.chain.market_deploy import (
    BLUEPRINT_PREAMBLE,
    MarketDeployment,
    blueprint_initcode,
    deploy_market_web3,
    deploy_mock_token,
    read_back,
)
from gpumarket.chain.params import ParamsError, parse_params
from gpumarket.chain.transactions import Transactor


def test_deployment_reads_back_as_the_params_say(kit, params):
    market = kit.market()
    assert market.parameters() == {**market.parameters(), **params.overrides()}
    for gpu_class in params.gpu_classes:
        assert market.class_floor(gpu_class.id) == gpu_class.floor_per_gpu_gops
    assert market.members() == params.committee.members
    deployment = kit.deployment
    assert deployment.mock_tokens and deployment.deployer == kit.roles.deployer.address
    assert (market.stake_token.symbol(), market.payment_token.symbol()) == ("mSTK", "mPAY")
    assert kit.w3.eth.get_code(deployment.market)
    # The deployed code is the compiled runtime followed by its immutables (the two tokens).
    runtime = bytes(kit.w3.eth.get_code(deployment.market)).hex()
    assert runtime.startswith(kit.artifacts["GpuMarket"].runtime_bytecode.removeprefix("0x"))


def test_the_market_created_its_companions_from_the_blueprints(kit):
    market = kit.market()
    created = {"BatchSettler": market.batch_settler(), "OracleBonds": market.oracle_bonds_address()}
    for name, address in created.items():
        # A companion's code is its compiled runtime followed by its immutables (the market, ...).
        code = bytes(kit.w3.eth.get_code(address)).hex()
        assert code.startswith(kit.artifacts[name].runtime_bytecode.removeprefix("0x")), name


def test_a_blueprint_holds_the_initcode_behind_the_erc5202_preamble(kit):
    initcode = bytes.fromhex(kit.artifacts["BatchSettler"].bytecode.removeprefix("0x"))
    sender = Transactor.for_signer(kit.w3, kit.roles.deployer)
    receipt = sender.send(to=None, data="0x" + blueprint_initcode(initcode).hex(), label="deploy a blueprint")
    assert bytes(kit.w3.eth.get_code(receipt["contractAddress"])) == BLUEPRINT_PREAMBLE + initcode
    with pytest.raises(ValueError, match="too large for a blueprint"):
        blueprint_initcode(b"\x00" * 0x10000)


def test_record_round_trip_and_apes_record(kit, tmp_path):
    path = kit.deployment.write(tmp_path / "deployments" / "local.json")
    assert MarketDeployment.read(path) == kit.deployment
    # `ape run deploy` writes more fields; the ones a service needs read the same.
    ape_record = {**kit.deployment.to_json(), "ecosystem": "ethereum", "network": "local", "params": {}}
    assert MarketDeployment.from_json(json.loads(json.dumps(ape_record))) == kit.deployment
    with pytest.raises(ValueError, match="not a deployment record"):
        MarketDeployment.from_json({"market": "0x01"})


def test_market_at_checks_the_chain(kit):
    other_chain = connect(EMBEDDED)
    assert other_chain.eth.chain_id == kit.w3.eth.chain_id  # every embedded chain has eth-tester's id
    mismatched = MarketDeployment(**{**kit.deployment.to_json(), "chain_id": 1})
    with pytest.raises(ChainMismatch, match="deployment is on chain 1"):
        mismatched.market_at(kit.w3)


def test_existing_tokens_ownership_offer_and_missing_code(kit, artifacts, params):
    w3, deployer = kit.w3, kit.roles.deployer
    stake = deploy_mock_token(w3, deployer, "Real Stake", "RSTK", artifacts=artifacts)
    data = params.model_dump(mode="json")
    data.update(stake_token=stake, payment_token=stake, owner=kit.roles.keeper.address)
    reported: list[str] = []
    deployment = deploy_market_web3(w3, deployer, parse_params(data), artifacts=artifacts, report=reported.append)
    assert (deployment.stake_token, deployment.payment_token) == (stake, stake)
    assert not deployment.mock_tokens
    market = deployment.market_at(w3, artifacts=artifacts)
    on_chain = read_back(market)
    assert (on_chain["owner"], on_chain["pending_owner"]) == (deployer.address, kit.roles.keeper.address)
    assert on_chain["stake_token"] == on_chain["payment_token"] == stake
    assert reported[0] == f"GpuMarket deployed at {deployment.market} (block {deployment.block})"
    assert reported[-1] == f"ownership offered to {kit.roles.keeper.address} (it must call accept_ownership)"

    # A token without code is refused before any transaction, a mock token's deployment included.
    head = w3.eth.block_number
    for stake_ref in (stake, "mock"):
        data.update(stake_token=stake_ref, payment_token="0x000000000000000000000000000000000000dEaD")
        with pytest.raises(ParamsError, match="payment_token: no contract code at .* on chain "):
            deploy_market_web3(w3, deployer, parse_params(data), artifacts=artifacts)
        assert w3.eth.block_number == head


def test_mock_tokens_and_test_oracles_are_refused_off_a_local_chain(kit, params, artifacts, anvil_binary, tmp_path):
    with AnvilNode(anvil_binary, chain_id=1, log_path=tmp_path / "anvil.log") as mainnet_like:
        w3 = connect(mainnet_like.url)
        with pytest.raises(ParamsError) as caught:
            deploy_market_web3(w3, kit.roles.deployer, params, artifacts=artifacts)
        assert "only allowed on a local network" in str(caught.value)
        assert "test oracle" in str(caught.value)
        assert w3.eth.block_number == 0
        with pytest.raises(ParamsError, match="only allowed on a local chain"):
            deploy_mock_token(w3, kit.roles.deployer, "X", "X", artifacts=artifacts)


def test_the_deploy_waits_for_its_confirmations_before_returning(anvil, artifacts, roles, params):
    deployed: list[MarketDeployment] = []
    deploy = threading.Thread(
        target=lambda: deployed.append(
            deploy_market_web3(
                connect(anvil.url), roles.deployer, params.model_copy(update={"confirmations": 3}), artifacts=artifacts
            )
        )
    )
    deploy.start()
    miner = connect(anvil.url)
    while deploy.is_alive():  # anvil mines only on transactions: another block every half second
        mine(miner)
        deploy.join(0.5)
    assert deployed, "the deploy raised (see the thread's traceback above)"
    assert int(miner.eth.block_number) >= deployed[0].transactions[-1]["block"] + 3
