# pragma version ~=0.4.3
"""
@title UsdtLikeToken
@custom:contract-name UsdtLikeToken
@license GNU Affero General Public License v3.0 only
@notice TEST ONLY. Simulates USDT on Ethereum mainnet: `transfer`,
        `transferFrom` and `approve` return NOTHING (no ABI bool), and
        failures revert. A caller that decodes a `bool` return would revert
        on every call; the market must accept the empty return.
"""

# @dev Token name, symbol and decimals.
name: public(String[32])
symbol: public(String[8])
decimals: public(uint8)
# @dev ERC20 balances, allowances and supply.
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
totalSupply: public(uint256)


event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256


event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256


@deploy
def __init__(name_: String[32], symbol_: String[8], decimals_: uint8):
    self.name = name_
    self.symbol = symbol_
    self.decimals = decimals_


@external
def mint(to: address, amount: uint256):
    """
    @notice Anyone mints: test chains only.
    """
    self.balanceOf[to] += amount
    self.totalSupply += amount
    log Transfer(sender=empty(address), receiver=to, value=amount)


@external
def transfer(receiver: address, amount: uint256):
    """
    @notice Moves `amount` to `receiver`; returns nothing, like USDT.
    """
    self._transfer(msg.sender, receiver, amount)


@external
def transferFrom(sender: address, receiver: address, amount: uint256):
    """
    @notice Moves `amount` from `sender` using the caller's allowance;
            returns nothing, like USDT.
    """
    allowed: uint256 = self.allowance[sender][msg.sender]
    assert allowed >= amount, "UsdtLikeToken: insufficient allowance"
    if allowed != max_value(uint256):
        self.allowance[sender][msg.sender] = allowed - amount
    self._transfer(sender, receiver, amount)


@external
def approve(spender: address, amount: uint256):
    """
    @notice Sets `spender`'s allowance; returns nothing, like USDT.
    """
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)


@internal
def _transfer(sender: address, receiver: address, amount: uint256):
    assert self.balanceOf[sender] >= amount, "UsdtLikeToken: insufficient balance"
    self.balanceOf[sender] -= amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=sender, receiver=receiver, value=amount)
