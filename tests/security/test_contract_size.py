"""GpuMarket fits in one contract (EIP-170): its deployed code is at most 24,576 bytes.

Measured on the chain, from the deployed contract's code: Vyper appends the immutables
(the tokens, the cached EIP-712 domain) to the runtime bytecode when it deploys, so the
compiled runtime alone understates what EIP-170 limits. bench/GAS.md prints the size and
the headroom left.
"""

from __future__ import annotations

EIP170_LIMIT = 24_576


def test_deployed_code_fits_eip170(market, chain):
    size = len(chain.provider.get_code(market.address))
    assert size > 0
    assert size <= EIP170_LIMIT, f"GpuMarket's deployed code is {size:,} bytes, over EIP-170's {EIP170_LIMIT:,}"
