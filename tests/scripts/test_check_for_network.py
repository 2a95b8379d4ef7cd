"""check_for_network: what is safe only on a local chain is refused elsewhere."""

from __future__ import annotations

import pytest

from gpumarket.chain.params import ParamsError, check_for_network, parse_params
from gpumarket.testing.committee import Committee

# Addresses with no known key; stand-ins for a public deployment's real ones.
REAL_MEMBERS = [
    "0x4444444444444444444444444444444444444444",
    "0x5555555555555555555555555555555555555555",
    "0x6666666666666666666666666666666666666666",
]
REAL_TOKEN = "0x1111111111111111111111111111111111111111"


@pytest.fixture
def public_params_data(params_data):
    params_data.update(stake_token=REAL_TOKEN, payment_token=REAL_TOKEN)
    params_data["committee"]["members"] = REAL_MEMBERS
    # A public market is owned by a timelock whose delay outlasts the unbonding period.
    delay = params_data["parameters"]["unbonding_period"] + 1
    params_data["timelock"] = {"min_delay": delay, "proposers": [REAL_MEMBERS[0]], "executors": [REAL_MEMBERS[0]]}
    return params_data


def test_a_public_network_needs_a_timelock(public_params_data):
    del public_params_data["timelock"]
    with pytest.raises(ParamsError, match="^timelock: required on 'sepolia'"):
        check_for_network(
            parse_params(public_params_data), dev_network=False, deploy_mock_tokens=False, network="sepolia"
        )


def test_public_params_pass_on_a_public_network(public_params_data):
    check_for_network(parse_params(public_params_data), dev_network=False, deploy_mock_tokens=False, network="sepolia")


def test_default_params_pass_on_a_local_network(params_data):
    check_for_network(parse_params(params_data), dev_network=True, deploy_mock_tokens=True, network="local")


@pytest.mark.parametrize("field", ["stake_token", "payment_token"])
def test_mock_token_is_refused_on_a_public_network(public_params_data, field):
    public_params_data[field] = "mock"
    with pytest.raises(ParamsError, match=f"^{field}: 'mock' .* only allowed on a local network, not 'sepolia'"):
        check_for_network(
            parse_params(public_params_data), dev_network=False, deploy_mock_tokens=False, network="sepolia"
        )


def test_deploy_mock_tokens_flag_is_refused_on_a_public_network(public_params_data):
    with pytest.raises(ParamsError, match="--deploy-mock-tokens is only allowed on a local network, not 'mainnet'"):
        check_for_network(
            parse_params(public_params_data), dev_network=False, deploy_mock_tokens=True, network="mainnet"
        )


def test_test_oracle_is_refused_on_a_public_network(public_params_data):
    # One derivable key among real ones is enough to forge a quorum with a colluder.
    oracle = Committee.of_size(1, threshold=1, first_index=200).addresses[0]
    public_params_data["committee"]["members"][1] = oracle
    with pytest.raises(ParamsError) as error:
        check_for_network(
            parse_params(public_params_data), dev_network=False, deploy_mock_tokens=False, network="sepolia"
        )
    assert str(error.value) == (
        f"committee.members: {oracle} is a test oracle whose key anyone can derive;"
        " it is only allowed on a local network, not 'sepolia'"
    )
