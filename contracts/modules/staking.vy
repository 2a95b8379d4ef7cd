# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Staking: free, locked and unbonding stake; collateral; slashing
@custom:contract-name staking
@license GNU Affero General Public License v3.0 only
@notice A provider's stake is free (can back new jobs or be unstaked),
        locked (collateral of running jobs, never unstakeable) or unbonding
        (waiting UNBONDING_PERIOD to be withdrawn, and slashable until then).
        Collateral is locked from free stake only, so unbonding can never
        take away what a running job is owed.
"""

from modules import governance
from modules import ledger
from modules import token_io

uses: governance
uses: ledger


# @dev Low 128 bits of a packed stake word.
LOW_128: constant(uint256) = 2**128 - 1


# @dev A provider's stake as the views return it.
struct StakeView:
    free: uint256
    locked: uint256
    unbonding: uint256
    release_at: uint256


# @dev The single unbonding entry of a provider. A new request adds to it and
# restarts its clock (one entry keeps withdraw and slashing loop-free).
struct Unbonding:
    amount: uint256
    release_at: uint256


# @dev provider => free stake (low 128 bits) | locked stake (high 128 bits).
# One slot, because accept_job and settle move stake between the two and
# each extra cold slot costs 2,100-22,100 gas on those paths.
_stake: HashMap[address, uint256]
# @dev provider => its unbonding entry (`stake_of` shows it).
_unbonding: HashMap[address, Unbonding]


# @dev Emitted when a provider adds stake.
event Staked:
    provider: indexed(address)
    amount: uint256


# @dev Emitted when free stake starts unbonding.
event UnstakeRequested:
    provider: indexed(address)
    amount: uint256
    unbonding_total: uint256
    release_at: uint256


# @dev Emitted when released stake is paid out.
event Withdrawn:
    provider: indexed(address)
    amount: uint256


# @dev Emitted when stake is slashed; `beneficiary` (the harmed client, or
# the zero address) receives `beneficiary_share`, the treasury the rest.
event Slashed:
    provider: indexed(address)
    amount: uint256
    beneficiary: indexed(address)
    beneficiary_share: uint256


@deploy
def __init__():
    pass


@external
def stake(amount: uint256):
    """
    @notice Adds `amount` of STAKE_TOKEN to the caller's free stake. Needs an
            allowance; fee-on-transfer tokens are refused.
    @param amount Stake-token base units, non-zero.
    """
    assert amount != 0, "staking: zero amount"
    free: uint256 = 0
    locked: uint256 = 0
    free, locked = self._unpack(self._stake[msg.sender])
    # free + locked stays below 2**128: locking and slashing only move or
    # remove stake, so neither half of the packed word can overflow.
    assert free + locked + amount <= LOW_128, "staking: stake too large"
    self._stake[msg.sender] = self._pack(free + amount, locked)
    token_io._pull_exact(ledger.STAKE_TOKEN, msg.sender, amount)
    log Staked(provider=msg.sender, amount=amount)


@external
def request_unstake(amount: uint256):
    """
    @notice Moves `amount` of free stake to unbonding. The whole unbonding
            entry becomes withdrawable UNBONDING_PERIOD from now, and stays
            slashable until it is withdrawn.
    @param amount Stake-token base units, at most the free stake.
    """
    assert amount != 0, "staking: zero amount"
    free: uint256 = 0
    locked: uint256 = 0
    free, locked = self._unpack(self._stake[msg.sender])
    assert free >= amount, "staking: insufficient free stake"
    self._stake[msg.sender] = self._pack(free - amount, locked)
    entry: Unbonding = self._unbonding[msg.sender]
    entry.amount += amount
    entry.release_at = block.timestamp + governance.unbonding_period
    self._unbonding[msg.sender] = entry
    log UnstakeRequested(provider=msg.sender, amount=amount, unbonding_total=entry.amount, release_at=entry.release_at)


@external
def withdraw() -> uint256:
    """
    @notice Pays the caller its unbonding stake once released.
    @return uint256 The amount paid.
    """
    entry: Unbonding = self._unbonding[msg.sender]
    assert entry.amount != 0, "staking: nothing unbonding"
    assert block.timestamp >= entry.release_at, "staking: unbonding not released"
    self._unbonding[msg.sender] = empty(Unbonding)
    token_io._push(ledger.STAKE_TOKEN, msg.sender, entry.amount)
    log Withdrawn(provider=msg.sender, amount=entry.amount)
    return entry.amount


@external
@view
def stake_of(provider: address) -> StakeView:
    """
    @notice `provider`'s free, locked and unbonding stake, and when the
            unbonding stake is released.
    """
    free: uint256 = 0
    locked: uint256 = 0
    free, locked = self._unpack(self._stake[provider])
    entry: Unbonding = self._unbonding[provider]
    return StakeView(free=free, locked=locked, unbonding=entry.amount, release_at=entry.release_at)


@internal
def _lock_collateral(provider: address, collateral: uint256):
    """
    @dev Locks `collateral` from free stake, keeping at least MIN_STAKE free.
    """
    free: uint256 = 0
    locked: uint256 = 0
    free, locked = self._unpack(self._stake[provider])
    assert free >= governance.min_stake + collateral, "staking: free stake too low"
    self._stake[provider] = self._pack(free - collateral, locked + collateral)


@internal
def _release_collateral(provider: address, collateral: uint256, slashed: uint256, beneficiary: address):
    """
    @dev Ends a job's lock: `slashed` of `collateral` is taken (the
         beneficiary's CLIENT_SHARE_BPS share rounded up, the rest to the
         treasury), the remainder returns to free stake.
    """
    free: uint256 = 0
    locked: uint256 = 0
    free, locked = self._unpack(self._stake[provider])
    self._stake[provider] = self._pack(free + collateral - slashed, locked - collateral)
    if slashed != 0:
        self._distribute_slash(provider, slashed, beneficiary)


@internal
def _slash_unlocked(provider: address, slash_bps: uint256) -> uint256:
    """
    @dev Slashes `slash_bps` of the provider's whole stake (free, locked and
         unbonding), rounded up, taken from free stake first and then from
         unbonding stake; locked collateral stays with its jobs, so the slash
         is capped at free + unbonding. All of it goes to the treasury.
    @return uint256 The amount slashed.
    """
    free: uint256 = 0
    locked: uint256 = 0
    free, locked = self._unpack(self._stake[provider])
    entry: Unbonding = self._unbonding[provider]
    amount: uint256 = self._bps_round_up(free + locked + entry.amount, slash_bps)
    amount = min(amount, free + entry.amount)
    if amount == 0:
        return 0
    from_free: uint256 = min(amount, free)
    self._stake[provider] = self._pack(free - from_free, locked)
    if amount > from_free:
        self._unbonding[provider].amount = entry.amount - (amount - from_free)
    self._distribute_slash(provider, amount, empty(address))
    return amount


@internal
def _distribute_slash(provider: address, amount: uint256, beneficiary: address):
    beneficiary_share: uint256 = 0
    if beneficiary != empty(address):
        # Rounded up: the harmed client is compensated first.
        beneficiary_share = self._bps_round_up(amount, governance.client_share_bps)
        ledger._credit(ledger.STAKE_TOKEN, beneficiary, beneficiary_share)
    ledger._credit(ledger.STAKE_TOKEN, governance.treasury, amount - beneficiary_share)
    log Slashed(provider=provider, amount=amount, beneficiary=beneficiary, beneficiary_share=beneficiary_share)


@internal
@pure
def _bps_round_up(amount: uint256, bps: uint256) -> uint256:
    """
    @dev ceil(amount * bps / 10,000). Rounding up favours the protocol and
         the harmed party over the provider being charged.
    """
    # `10_000 - 1` cannot underflow; `amount * bps` is checked.
    return (amount * bps + unsafe_sub(governance.BPS, 1)) // governance.BPS


@internal
@pure
def _pack(free: uint256, locked: uint256) -> uint256:
    # `stake` keeps free + locked below 2**128, so neither half overflows.
    return free | (locked << 128)


@internal
@pure
def _unpack(word: uint256) -> (uint256, uint256):
    return word & LOW_128, word >> 128
