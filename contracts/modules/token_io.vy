# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Token transfers that tolerate non-standard ERC20s
@custom:contract-name token_io
@license GNU Affero General Public License v3.0 only
@notice Stateless helpers. Transfers accept tokens that return nothing
        (USDT-like) and revert on tokens that return false or revert.
        Incoming transfers are checked by balance delta, so a fee-on-transfer
        token is refused instead of leaving the books short.
"""

from ethereum.ercs import IERC20


@internal
def _pull_exact(token: address, sender: address, amount: uint256):
    """
    @dev Moves exactly `amount` of `token` from `sender` to this contract.
         Throws if the contract received any other amount (fee-on-transfer).
    """
    balance_before: uint256 = staticcall IERC20(token).balanceOf(self)
    self._call_token(
        token,
        abi_encode(sender, self, amount, method_id=method_id("transferFrom(address,address,uint256)")),
    )
    balance_after: uint256 = staticcall IERC20(token).balanceOf(self)
    assert balance_after == balance_before + amount, "token_io: fee-on-transfer token"


@internal
def _push(token: address, recipient: address, amount: uint256):
    """
    @dev Sends `amount` of `token` to `recipient`.
    """
    self._call_token(token, abi_encode(recipient, amount, method_id=method_id("transfer(address,uint256)")))


@internal
def _call_token(token: address, payload: Bytes[100]):
    """
    @dev Calls `token` and accepts either no return data or an ABI `true`.
         `raw_call` into an account without code would succeed silently; the
         only tokens called are STAKE_TOKEN and PAYMENT_TOKEN, whose code
         `ledger` checks at deployment (`claim` of any other token has
         nothing to pay and reverts before calling it).
    """
    success: bool = False
    response: Bytes[32] = b""
    success, response = raw_call(token, payload, max_outsize=32, revert_on_failure=False)
    assert success, "token_io: transfer reverted"
    if len(response) != 0:
        assert convert(response, bool), "token_io: token returned false"
