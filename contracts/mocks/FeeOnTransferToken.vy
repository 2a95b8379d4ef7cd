# pragma version ~=0.4.3
"""
@title FeeOnTransferToken
@custom:contract-name FeeOnTransferToken
@license GNU Affero General Public License v3.0 only
@notice TEST ONLY. Simulates a fee-on-transfer (deflationary) ERC20: every
        `transfer` and `transferFrom` burns 1% of the amount (rounded down),
        so the receiver gets less than the amount named. A market that
        credits the named amount would owe more than it holds; the market
        must refuse such a token (balance-delta check).
"""

from ethereum.ercs import IERC20

implements: IERC20

# @dev Share of each transfer burned, in basis points (1%).
FEE_BPS: constant(uint256) = 100

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
def transfer(receiver: address, amount: uint256) -> bool:
    """
    @notice Moves `amount` from the caller; `receiver` gets 99% of it.
    """
    self._transfer(msg.sender, receiver, amount)
    return True


@external
def transferFrom(sender: address, receiver: address, amount: uint256) -> bool:
    """
    @notice Moves `amount` from `sender`; `receiver` gets 99% of it.
    """
    allowed: uint256 = self.allowance[sender][msg.sender]
    assert allowed >= amount, "FeeOnTransferToken: insufficient allowance"
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
    assert self.balanceOf[sender] >= amount, "FeeOnTransferToken: insufficient balance"
    fee: uint256 = amount * FEE_BPS // 10_000
    self.balanceOf[sender] -= amount
    self.balanceOf[receiver] += amount - fee
    self.totalSupply -= fee
    log Transfer(sender=sender, receiver=receiver, value=amount - fee)
    log Transfer(sender=sender, receiver=empty(address), value=fee)
