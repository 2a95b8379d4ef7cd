# pragma version ~=0.4.3
"""
@title ReentrantToken
@custom:contract-name ReentrantToken
@license GNU Affero General Public License v3.0 only
@notice TEST ONLY. Simulates a hostile ERC20 (or an ERC777-style token with
        transfer hooks) that calls back into a target contract in the middle
        of `transfer` / `transferFrom`, after moving the balances. The test
        arms it with a target and calldata (e.g. the market's claim, withdraw
        or settle); the hook fires once, then disarms. It records whether the
        re-entrant call succeeded and what it returned, and either swallows a
        failure (`bubble_failure` false: the outer call goes on, so the test
        can see why the inner one failed) or reverts the transfer with it.
        `execute` makes the same call as the token outside any transfer: the
        control that shows the calldata would succeed if it were not
        re-entrant.
"""

from ethereum.ercs import IERC20

implements: IERC20

# @dev Largest callback calldata (a settle with up to 23 signatures fits).
MAX_PAYLOAD: constant(uint256) = 4_096
# @dev Return data kept from the re-entrant call (a revert reason fits).
MAX_RETURN: constant(uint256) = 256

# @dev Token name, symbol and decimals.
name: public(String[32])
symbol: public(String[8])
decimals: public(uint8)
# @dev ERC20 balances, allowances and supply.
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
totalSupply: public(uint256)
# @dev Whether the next transfer calls back, into what, with which calldata.
armed: public(bool)
target: public(address)
payload: public(Bytes[MAX_PAYLOAD])
# @dev Whether a failed callback reverts the transfer that made it.
bubble_failure: public(bool)
# @dev What happened to the last callback.
reentry_attempted: public(bool)
reentry_succeeded: public(bool)
reentry_returndata: public(Bytes[MAX_RETURN])


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
def arm(target_: address, payload_: Bytes[MAX_PAYLOAD], bubble_failure_: bool):
    """
    @notice The next transfer or transferFrom calls `target_` with
            `payload_` (once). Clears the record of the last callback.
    @param bubble_failure_ Whether a failed callback reverts the transfer.
    """
    self.armed = True
    self.target = target_
    self.payload = payload_
    self.bubble_failure = bubble_failure_
    self.reentry_attempted = False
    self.reentry_succeeded = False
    self.reentry_returndata = b""


@external
def execute(target_: address, payload_: Bytes[MAX_PAYLOAD]) -> Bytes[MAX_RETURN]:
    """
    @notice Calls `target_` with `payload_` as this token, outside any
            transfer; reverts if the call does.
    """
    return raw_call(target_, payload_, max_outsize=MAX_RETURN)


@external
def transfer(receiver: address, amount: uint256) -> bool:
    self._transfer(msg.sender, receiver, amount)
    self._call_back()
    return True


@external
def transferFrom(sender: address, receiver: address, amount: uint256) -> bool:
    allowed: uint256 = self.allowance[sender][msg.sender]
    assert allowed >= amount, "ReentrantToken: insufficient allowance"
    if allowed != max_value(uint256):
        self.allowance[sender][msg.sender] = allowed - amount
    self._transfer(sender, receiver, amount)
    self._call_back()
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@internal
def _transfer(sender: address, receiver: address, amount: uint256):
    assert self.balanceOf[sender] >= amount, "ReentrantToken: insufficient balance"
    self.balanceOf[sender] -= amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=sender, receiver=receiver, value=amount)


@internal
def _call_back():
    if not self.armed:
        return
    # Disarm first, so a callback that transfers again cannot loop.
    self.armed = False
    self.reentry_attempted = True
    success: bool = False
    response: Bytes[MAX_RETURN] = b""
    success, response = raw_call(self.target, self.payload, max_outsize=MAX_RETURN, revert_on_failure=False)
    self.reentry_succeeded = success
    self.reentry_returndata = response
    if not success and self.bubble_failure:
        raise "ReentrantToken: re-entrant call failed"
