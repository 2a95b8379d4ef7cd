"""gpumarket.chain.timelock and a deploy with a timelock: the market's owner is the Timelock,
every change waits its delay, a guardian pauses at once, and the record holds code hashes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from web3 import Web3

from gpumarket.chain.connection import EMBEDDED, advance_time, connect
from gpumarket.chain.errors import ContractRevert
from gpumarket.chain.events import CommitteeChanged
from gpumarket.chain.keys import test_account
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment, code_hash, deploy_market_web3
from gpumarket.chain.params import DeployParams, ParamsError, TimelockParams, check_for_network
from gpumarket.chain.timelock import GUARDIAN_ROLE, PROPOSER_ROLE, MarketCall, Timelock
from gpumarket.testing.committee import Committee

DELAY = 3_600
PROPOSER, EXECUTOR, GUARDIAN, OUTSIDER = (test_account(i) for i in (8, 9, 10, 11))


@pytest.fixture(scope="module")
def timelocked_chain(artifacts, roles, params: DeployParams) -> tuple[Web3, MarketDeployment]:
    governed = params.model_copy(
        update={
            "timelock": TimelockParams(
                min_delay=DELAY,
                proposers=[PROPOSER.address],
                executors=[EXECUTOR.address],
                guardians=[GUARDIAN.address],
            )
        }
    )
    w3 = connect(EMBEDDED)
    return w3, deploy_market_web3(w3, roles.deployer, governed, artifacts=artifacts)


@pytest.fixture
def world(timelocked_chain) -> Iterator[tuple[Web3, MarketDeployment]]:
    w3, _ = timelocked_chain
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    yield timelocked_chain
    w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]


def _timelock(w3: Web3, deployment: MarketDeployment, signer=None) -> Timelock:
    assert deployment.timelock is not None
    return Timelock(w3, deployment.timelock, signer=signer)


def test_the_deploy_hands_the_market_to_the_timelock_in_two_steps(world, roles):
    w3, deployment = world
    market = deployment.market_at(w3)
    timelock = _timelock(w3, deployment)
    assert market.owner() == deployment.timelock and market.pending_owner() == "0x" + "00" * 20
    assert timelock.market_address() == deployment.market and timelock.minimum_delay() == DELAY
    assert timelock.has_role(PROPOSER_ROLE, PROPOSER.address) and timelock.has_role(GUARDIAN_ROLE, GUARDIAN.address)
    assert not timelock.has_role(PROPOSER_ROLE, roles.deployer.address)
    labels = [entry["label"] for entry in deployment.transactions]
    assert labels[-3:] == ["deploy Timelock", "transfer_ownership", "accept_market_ownership"]
    assert set(deployment.contracts) == {"GpuMarket", "BatchSettler", "OracleBonds", "Timelock"}
    for entry in deployment.contracts.values():
        assert entry["code_hash"] == code_hash(w3, entry["address"])
    # The deployer no longer governs.
    with pytest.raises(ContractRevert, match="ownable: caller is not the owner"):
        deployment.market_at(w3, signer=roles.deployer).set_parameter("slash_bps", 5_000)


def test_a_change_waits_the_delay_then_applies(world):
    w3, deployment = world
    market = deployment.market_at(w3)
    operation = _timelock(w3, deployment, PROPOSER).schedule(MarketCall("set_slash_bps", (5_000,)), market)
    assert operation.state == "waiting" and operation.summary == "set_slash_bps(5000)"
    assert [op.hex_id for op in _timelock(w3, deployment).operations(market)] == [operation.hex_id]
    executor = _timelock(w3, deployment, EXECUTOR)
    with pytest.raises(ContractRevert, match="timelock_controller: operation is not ready"):
        executor.execute(operation, market)
    advance_time(w3, DELAY)
    assert executor.operation(operation.id, market).state == "ready"
    executor.execute(operation, market)
    assert market.parameters()["slash_bps"] == 5_000
    assert executor.operation(operation.hex_id, market).state == "done"


def test_the_committee_rotates_through_the_timelock(world):
    w3, deployment = world
    market = deployment.market_at(w3)
    rotated = Committee.of_size(5, threshold=3).addresses
    operation = _timelock(w3, deployment, PROPOSER).schedule(MarketCall("set_committee", (rotated, 3)), market)
    advance_time(w3, DELAY)
    result = _timelock(w3, deployment, EXECUTOR).execute(operation, market)
    assert result.event(CommitteeChanged).epoch == 2 and market.members() == rotated


def test_only_proposers_schedule_and_only_executors_execute(world):
    w3, deployment = world
    market = deployment.market_at(w3)
    with pytest.raises(ContractRevert, match="access_control: account is missing role"):
        _timelock(w3, deployment, OUTSIDER).schedule(MarketCall("set_slash_bps", (5_000,)), market)
    operation = _timelock(w3, deployment, PROPOSER).schedule(MarketCall("set_slash_bps", (5_000,)), market)
    advance_time(w3, DELAY)
    with pytest.raises(ContractRevert, match="access_control: account is missing role"):
        _timelock(w3, deployment, OUTSIDER).execute(operation, market)
    with pytest.raises(ContractRevert, match="timelock_controller: insufficient delay"):
        _timelock(w3, deployment, PROPOSER).schedule(MarketCall("set_slash_bps", (4_000,)), market, delay=DELAY - 1)


def test_a_guardian_pauses_at_once_and_unpausing_waits(world):
    w3, deployment = world
    market = deployment.market_at(w3)
    with pytest.raises(ContractRevert, match="Timelock: caller not guardian"):
        _timelock(w3, deployment, OUTSIDER).pause_market()
    _timelock(w3, deployment, GUARDIAN).pause_market()
    assert market.paused()
    operation = _timelock(w3, deployment, PROPOSER).schedule(MarketCall("unpause"), market)
    with pytest.raises(ContractRevert, match="operation is not ready"):
        _timelock(w3, deployment, EXECUTOR).execute(operation, market)
    advance_time(w3, DELAY)
    _timelock(w3, deployment, EXECUTOR).execute(operation, market)
    assert not market.paused()


def test_a_cancelled_operation_never_executes(world):
    w3, deployment = world
    market = deployment.market_at(w3)
    proposer = _timelock(w3, deployment, PROPOSER)
    operation = proposer.schedule(MarketCall("set_treasury", (OUTSIDER.address,)), market)
    proposer.cancel(operation)
    assert proposer.operation(operation.id, market).state == "cancelled"
    advance_time(w3, DELAY)
    with pytest.raises(ContractRevert, match="operation is not ready"):
        _timelock(w3, deployment, EXECUTOR).execute(operation, market)
    assert market.treasury() != OUTSIDER.address


def test_the_record_round_trips_with_the_timelock_and_hashes(timelocked_chain, tmp_path):
    _, deployment = timelocked_chain
    assert MarketDeployment.read(deployment.write(tmp_path / "record.json")) == deployment


def test_public_networks_need_a_timelock_and_it_excludes_a_plain_owner(params: DeployParams):
    public = params.model_copy(
        update={"committee": params.committee.model_copy(update={"members": [OUTSIDER.address]})}
    )
    public = public.model_copy(update={"committee": public.committee.model_copy(update={"threshold": 1})})
    with pytest.raises(ParamsError, match="timelock: required on 'ethereum:sepolia'"):
        check_for_network(public, dev_network=False, deploy_mock_tokens=False, network="ethereum:sepolia")
    data = params.model_dump(mode="json")
    data.update(
        owner=OUTSIDER.address,
        timelock={"min_delay": 60, "proposers": [PROPOSER.address], "executors": [EXECUTOR.address]},
    )
    with pytest.raises(ValueError, match="owner and timelock both name the market's owner"):
        DeployParams.model_validate(data)


def test_a_market_call_decodes_back_from_its_payload(world):
    w3, deployment = world
    market: Market = deployment.market_at(w3)
    call = MarketCall("set_gpu_class", (7, 123))
    assert MarketCall.decode(market, call.payload(market)) == call


def test_on_a_public_network_the_delay_must_outlast_the_unbonding_period(params: DeployParams):
    public = params.model_copy(
        update={
            "committee": params.committee.model_copy(update={"members": [OUTSIDER.address], "threshold": 1}),
            "stake_token": GUARDIAN.address,  # any address: the check reads no code
            "payment_token": GUARDIAN.address,
            "timelock": TimelockParams(min_delay=DELAY, proposers=[PROPOSER.address], executors=[EXECUTOR.address]),
        }
    )
    unbonding = params.overrides()["unbonding_period"]
    with pytest.raises(ParamsError, match=f"must exceed the unbonding period \\({unbonding:,} s\\)"):
        check_for_network(public, dev_network=False, deploy_mock_tokens=False, network="base:sepolia")
    longer = public.model_copy(update={"timelock": public.timelock.model_copy(update={"min_delay": unbonding + 1})})
    check_for_network(longer, dev_network=False, deploy_mock_tokens=False, network="base:sepolia")
