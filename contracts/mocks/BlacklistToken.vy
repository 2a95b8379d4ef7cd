# pragma version ~=0.4.3
"""
@title BlacklistToken
@custom:contract-name BlacklistToken
@license GNU Affero General Public License v3.0 only
@notice TEST ONLY. Simulates a token with a recipient blacklist (as USDC and
        USDT have): any transfer TO a blacklisted address reverts. It stands
        for every recipient that cannot receive, so tests can check that one
        such account blocks nobody else (pull payments).
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
# @dev Accounts that cannot receive this token.
blacklisted: public(HashMap[address, bool])


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
def set_blacklisted(account: address, is_blacklisted: bool):
    """
    @notice Anyone (un)blacklists a recipient: test chains only.
    """
    self.blacklisted[account] = is_blacklisted


@external
def transfer(receiver: address, amount: uint256) -> bool:
    self._transfer(msg.sender, receiver, amount)
    return True


@external
def transferFrom(sender: address, receiver: address, amount: uint256) -> bool:
    allowed: uint256 = self.allowance[sender][msg.sender]
    assert allowed >= amount, "BlacklistToken: insufficient allowance"
    if allowed != max_value(uint256):
        self.allowance[sender][msg.sender] = allowed - amount
    self._transfer(sender, receiver, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@internal
def _transfer(sender: address, receiver: address, amount: uint256):
    assert not self.blacklisted[receiver], "BlacklistToken: recipient blacklisted"
    assert self.balanceOf[sender] >= amount, "BlacklistToken: insufficient balance"
    self.balanceOf[sender] -= amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=sender, receiver=receiver, value=amount)
