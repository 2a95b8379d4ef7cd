# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Ledger: the two tokens and pull-based balances
@custom:contract-name ledger
@license GNU Affero General Public License v3.0 only
@notice Every payout (payments, refunds, fees, slash shares) is credited here
        and pulled by its owner with `claim`, so a recipient that cannot
        receive blocks nobody else. STAKE_TOKEN and PAYMENT_TOKEN are fixed at
        deployment and may be the same token.
"""

from modules import token_io


# @dev The token providers stake; slashes are paid in it.
STAKE_TOKEN: public(immutable(address))
# @dev The token clients pay jobs in.
PAYMENT_TOKEN: public(immutable(address))


# @dev token => account => claimable amount + 1, or 0 if never credited.
# `claim` leaves 1, not 0, so a payee's later credits rewrite a non-zero slot
# (5,000 gas) instead of filling an empty one (22,100 gas) on every settle.
_claimable: HashMap[address, HashMap[address, uint256]]


# @dev Emitted when an account pulls its balance.
event Claimed:
    account: indexed(address)
    token: indexed(address)
    amount: uint256


@deploy
def __init__(stake_token_: address, payment_token_: address):
    """
    @param stake_token_ ERC20 staked by providers.
    @param payment_token_ ERC20 in which jobs are paid.
    """
    assert stake_token_.is_contract, "ledger: stake token has no code"
    assert payment_token_.is_contract, "ledger: payment token has no code"
    STAKE_TOKEN = stake_token_
    PAYMENT_TOKEN = payment_token_


@external
def claim(token: address) -> uint256:
    """
    @notice Sends the caller everything credited to it in `token`.
    @param token STAKE_TOKEN or PAYMENT_TOKEN.
    @return uint256 The amount sent.
    """
    amount: uint256 = self._claimable_amount(token, msg.sender)
    assert amount != 0, "ledger: nothing to claim"
    self._claimable[token][msg.sender] = 1
    token_io._push(token, msg.sender, amount)
    log Claimed(account=msg.sender, token=token, amount=amount)
    return amount


@external
@view
def claimable(token: address, account: address) -> uint256:
    """
    @notice What `account` can claim in `token` now.
    """
    return self._claimable_amount(token, account)


@internal
@view
def _claimable_amount(token: address, account: address) -> uint256:
    stored: uint256 = self._claimable[token][account]
    if stored == 0:
        return 0
    # `stored` >= 1 here.
    return unsafe_sub(stored, 1)


@internal
def _credit(token: address, account: address, amount: uint256):
    """
    @dev Credits `amount` to `account`; zero amounts write nothing.
    """
    if amount != 0:
        self._claimable[token][account] = max(self._claimable[token][account], 1) + amount
