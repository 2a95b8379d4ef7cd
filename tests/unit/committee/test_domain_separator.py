"""domain_separator(): EIP-712 hashStruct of (name "gpumarket", version "1", chain id, this contract)."""

from __future__ import annotations

from gpumarket.signing import eip712
from gpumarket.signing.eip712 import Domain


def test_equals_off_chain_domain_separator(market, domain):
    assert bytes(market.domain_separator()) == eip712.domain_separator(domain)


def test_each_deployment_has_its_own(market, chain, deploy_market, stake_token, payment_token, committee):
    other = deploy_market(stake_token, payment_token, committee.addresses, committee.threshold)
    other_domain = Domain(chain_id=chain.chain_id, verifying_contract=other.address)
    assert bytes(other.domain_separator()) == eip712.domain_separator(other_domain)
    assert bytes(other.domain_separator()) != bytes(market.domain_separator())
