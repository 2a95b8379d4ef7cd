"""eip712Domain (EIP-5267): the domain the committee's off-chain signer must use."""

from __future__ import annotations

from gpumarket.signing.eip712 import Domain

# EIP-5267 field bitmap: name, version, chainId, verifyingContract present; no salt.
FIELDS_NAME_VERSION_CHAIN_CONTRACT = bytes([0b01111])


def test_describes_this_deployment_on_this_chain(market, chain):
    fields, name, version, chain_id, verifying_contract, salt, extensions = market.eip712Domain()
    expected = Domain(chain_id=chain.chain_id, verifying_contract=market.address)
    assert bytes(fields) == FIELDS_NAME_VERSION_CHAIN_CONTRACT
    assert (name, version, chain_id, verifying_contract) == (
        expected.name,
        expected.version,
        expected.chain_id,
        expected.verifying_contract,
    )
    assert bytes(salt) == bytes(32)
    assert list(extensions) == []


def test_each_deployment_names_itself(market, deploy_market, stake_token, payment_token, committee):
    other = deploy_market(stake_token, payment_token, committee.addresses, committee.threshold)
    assert other.eip712Domain()[4] == other.address
    assert other.eip712Domain()[4] != market.eip712Domain()[4]
