# pragma version ~=0.4.3
"""
@title FalseReturningToken
@custom:contract-name FalseReturningToken
@license GNU Affero General Public License v3.0 only
@notice TEST ONLY. Simulates the old ERC20s that signal failure by returning
        `false` instead of reverting: a transfer without enough balance or
        allowance moves nothing and returns false. `set_refuse_all(True)`
        makes every transfer fail that way (a frozen token). A caller that
        ignores the return value would credit tokens it never received.
"""

from ethereum.ercs import IERC20

implements: IERC20

# @dev Token name, symbol and decimals.
name: public(String[32])
symbol: public(String[8])
decimals: public(uint8)
# @dev ERC20 balances, allowances and supply.
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
totalSupply: public(uint256)
# @dev When set, every transfer returns false and moves nothing.
refuse_all: public(bool)


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
def set_refuse_all(refuse: bool):
    """
    @notice Anyone freezes or unfreezes every transfer: test chains only.
    """
    self.refuse_all = refuse


@external
def transfer(receiver: address, amount: uint256) -> bool:
    """
    @notice Returns false (moving nothing) instead of reverting on failure.
    """
    return self._transfer(msg.sender, receiver, amount)


@external
def transferFrom(sender: address, receiver: address, amount: uint256) -> bool:
    """
    @notice Returns false (moving nothing) instead of reverting on failure.
    """
    allowed: uint256 = self.allowance[sender][msg.sender]
    if allowed < amount:
        return False
    if not self._transfer(sender, receiver, amount):
        return False
    if allowed != max_value(uint256):
        self.allowance[sender][msg.sender] = allowed - amount
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@internal
def _transfer(sender: address, receiver: address, amount: uint256) -> bool:
    if self.refuse_all or self.balanceOf[sender] < amount:
        return False
    self.balanceOf[sender] -= amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=sender, receiver=receiver, value=amount)
    return True
