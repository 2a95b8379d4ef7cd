# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Governance: bounded parameters, treasury, GPU class table, pause
@custom:contract-name governance
@license GNU Affero General Public License v3.0 only
@notice Every parameter from docs/PROTOCOL.md lives here with its bounds. Each
        setter is owner-only, checks its bounds and logs the change, so a
        compromised or careless owner can never set a value that breaks the
        economics (a zero collateral, a 100% fee, a one-second unbonding).
        The pause stops new jobs only: settling, expiring, cancelling,
        unstaking, withdrawing and claiming always work, so a pause never
        traps funds.
"""

from snekmate.auth import ownable
from snekmate.utils import pausable

uses: ownable
uses: pausable


# @dev Basis points denominator.
BPS: constant(uint256) = 10_000
# @dev Upper bound of any single stake, price or payment amount: amounts are
# packed into 128- or 96-bit fields in storage (see `escrow` and `staking`).
MAX_AMOUNT: constant(uint256) = 2**128 - 1
# @dev Fixed-point scale of `collateral_rate` (1e18 means one to one).
RATE_SCALE: constant(uint256) = 10**18
# @dev Highest `collateral_rate` (1e18 stake units per payment unit). A job
# whose value * bps * rate would pass 2**256 cannot be accepted: the checked
# multiplication in escrow reverts.
MAX_COLLATERAL_RATE: constant(uint256) = 10**36
# @dev A job runs at most this long (bounds escrow and collateral lock time).
MAX_JOB_DURATION: constant(uint256) = 30 * 86_400

# Bounds of each parameter, from docs/PROTOCOL.md.
MIN_UNBONDING_PERIOD: constant(uint256) = 3_600
MAX_UNBONDING_PERIOD: constant(uint256) = 90 * 86_400
MIN_COLLATERAL_BPS: constant(uint256) = 500
MAX_PROTOCOL_FEE_BPS: constant(uint256) = 1_000
MAX_SPOOF_SLASH_BPS: constant(uint256) = 5_000
MIN_SETTLE_GRACE: constant(uint256) = 300
MAX_SETTLE_GRACE: constant(uint256) = 7 * 86_400
MIN_HARDWARE_VALIDITY: constant(uint256) = 3_600
MAX_HARDWARE_VALIDITY: constant(uint256) = 30 * 86_400
MAX_JAIL_AFTER_FAILURES: constant(uint256) = 10


# @dev Free stake a provider keeps on top of all job collateral.
min_stake: public(uint256)
# @dev Seconds between `request_unstake` and `withdraw`.
unbonding_period: public(uint256)
# @dev Collateral locked per job, in bps of the job's value.
collateral_bps: public(uint256)
# @dev Stake-token base units locked per payment-token base unit of job value,
# scaled by RATE_SCALE: it converts between the two tokens' decimals and prices.
collateral_rate: public(uint256)
# @dev Share of a failed job's collateral that is slashed, in bps.
slash_bps: public(uint256)
# @dev Share of a slash paid to the harmed client, in bps.
client_share_bps: public(uint256)
# @dev Protocol fee on each payment, in bps, credited to the treasury.
protocol_fee_bps: public(uint256)
# @dev Share of a provider's whole stake slashed for spoofed hardware, in bps.
spoof_slash_bps: public(uint256)
# @dev Seconds the committee has to report after a job's maximum duration.
settle_grace: public(uint256)
# @dev Longest time a passing hardware report keeps a provider verified.
hardware_validity: public(uint256)
# @dev Consecutive failed jobs after which a provider is jailed.
jail_after_failures: public(uint256)
# @dev Account credited with protocol fees and the treasury's slash share.
treasury: public(address)
# @dev Throughput floor per GPU of each class (giga-operations per second);
# zero means the class does not exist.
class_floor: public(HashMap[uint16, uint256])


# @dev Emitted when a numeric parameter changes.
event ParameterChanged:
    name: String[32]
    old_value: uint256
    new_value: uint256


# @dev Emitted when the treasury account changes.
event TreasuryChanged:
    old_treasury: indexed(address)
    new_treasury: indexed(address)


# @dev Emitted when a GPU class is added, changed or removed (floor zero).
event GpuClassSet:
    gpu_class: indexed(uint16)
    floor_per_gpu: uint256


@deploy
def __init__(treasury_: address):
    """
    @dev Sets the defaults from docs/PROTOCOL.md. `min_stake` assumes an 18-decimal
         stake token; the deployer changes it through `set_min_stake`.
    @param treasury_ The account that receives fees and slash shares.
    """
    assert treasury_ != empty(address), "governance: zero treasury"
    self.treasury = treasury_
    self.min_stake = 1_000 * 10**18
    self.unbonding_period = 7 * 86_400
    self.collateral_bps = 2_000
    self.collateral_rate = RATE_SCALE
    self.slash_bps = 10_000
    self.client_share_bps = 5_000
    self.protocol_fee_bps = 250
    self.spoof_slash_bps = 1_000
    self.settle_grace = 3_600
    self.hardware_validity = 86_400
    self.jail_after_failures = 3


@external
def set_min_stake(new_value: uint256):
    """
    @notice Sets the free stake a provider must keep besides job collateral.
    @param new_value In stake-token base units, 1 .. 2**128 - 1.
    """
    self._check_and_log_change("min_stake", self.min_stake, new_value, 1, MAX_AMOUNT)
    self.min_stake = new_value


@external
def set_unbonding_period(new_value: uint256):
    """
    @notice Sets the unbonding period.
    @param new_value Seconds, 1 hour .. 90 days.
    """
    self._check_and_log_change("unbonding_period", self.unbonding_period, new_value, MIN_UNBONDING_PERIOD, MAX_UNBONDING_PERIOD)
    self.unbonding_period = new_value


@external
def set_collateral_bps(new_value: uint256):
    """
    @notice Sets the collateral locked per job. Running jobs keep the value
            they were accepted with.
    @param new_value Basis points of the job's value, 500 .. 10,000.
    """
    self._check_and_log_change("collateral_bps", self.collateral_bps, new_value, MIN_COLLATERAL_BPS, BPS)
    self.collateral_bps = new_value


@external
def set_collateral_rate(new_value: uint256):
    """
    @notice Sets how many stake-token base units back one payment-token base
            unit of job value, scaled by 1e18 (1e18 when both tokens are the
            same or at par with equal decimals). Running jobs keep the
            collateral they locked.
    @param new_value 1 .. 1e36.
    """
    self._check_and_log_change("collateral_rate", self.collateral_rate, new_value, 1, MAX_COLLATERAL_RATE)
    self.collateral_rate = new_value


@external
def set_slash_bps(new_value: uint256):
    """
    @notice Sets the share of a failed job's collateral that is slashed.
    @param new_value Basis points, 1 .. 10,000.
    """
    self._check_and_log_change("slash_bps", self.slash_bps, new_value, 1, BPS)
    self.slash_bps = new_value


@external
def set_client_share_bps(new_value: uint256):
    """
    @notice Sets the share of a slash paid to the harmed client.
    @param new_value Basis points, 0 .. 10,000.
    """
    self._check_and_log_change("client_share_bps", self.client_share_bps, new_value, 0, BPS)
    self.client_share_bps = new_value


@external
def set_protocol_fee_bps(new_value: uint256):
    """
    @notice Sets the protocol fee taken from each provider payment.
    @param new_value Basis points, 0 .. 1,000.
    """
    self._check_and_log_change("protocol_fee_bps", self.protocol_fee_bps, new_value, 0, MAX_PROTOCOL_FEE_BPS)
    self.protocol_fee_bps = new_value


@external
def set_spoof_slash_bps(new_value: uint256):
    """
    @notice Sets the share of a provider's stake slashed for spoofed hardware.
    @param new_value Basis points of the whole stake, 0 .. 5,000.
    """
    self._check_and_log_change("spoof_slash_bps", self.spoof_slash_bps, new_value, 0, MAX_SPOOF_SLASH_BPS)
    self.spoof_slash_bps = new_value


@external
def set_settle_grace(new_value: uint256):
    """
    @notice Sets the committee's time to report after a job's maximum duration.
    @param new_value Seconds, 5 minutes .. 7 days.
    """
    self._check_and_log_change("settle_grace", self.settle_grace, new_value, MIN_SETTLE_GRACE, MAX_SETTLE_GRACE)
    self.settle_grace = new_value


@external
def set_hardware_validity(new_value: uint256):
    """
    @notice Sets how long a passing hardware report verifies a provider.
    @param new_value Seconds, 1 hour .. 30 days.
    """
    self._check_and_log_change("hardware_validity", self.hardware_validity, new_value, MIN_HARDWARE_VALIDITY, MAX_HARDWARE_VALIDITY)
    self.hardware_validity = new_value


@external
def set_jail_after_failures(new_value: uint256):
    """
    @notice Sets how many consecutive failed jobs jail a provider.
    @param new_value 1 .. 10.
    """
    self._check_and_log_change("jail_after_failures", self.jail_after_failures, new_value, 1, MAX_JAIL_AFTER_FAILURES)
    self.jail_after_failures = new_value


@external
def set_treasury(new_treasury: address):
    """
    @notice Sets the account credited with fees and slash shares. Amounts
            already credited stay claimable by the old treasury.
    @param new_treasury A non-zero address.
    """
    ownable._check_owner()
    assert new_treasury != empty(address), "governance: zero treasury"
    log TreasuryChanged(old_treasury=self.treasury, new_treasury=new_treasury)
    self.treasury = new_treasury


@external
def set_gpu_class(gpu_class: uint16, floor_per_gpu: uint256):
    """
    @notice Adds or changes a GPU class, or removes it with a zero floor.
            Removing a class stops new registrations and jobs of that class;
            running jobs still settle.
    @param gpu_class Class id, non-zero (the table lives in gpumarket.measure).
    @param floor_per_gpu Throughput floor per GPU in giga-operations/second.
    """
    ownable._check_owner()
    assert gpu_class != 0, "governance: class id zero"
    assert floor_per_gpu <= MAX_AMOUNT, "governance: floor out of bounds"
    self.class_floor[gpu_class] = floor_per_gpu
    log GpuClassSet(gpu_class=gpu_class, floor_per_gpu=floor_per_gpu)


@external
def pause():
    """
    @notice Stops new jobs (create_job, accept_job). Everything that moves
            existing funds keeps working.
    """
    ownable._check_owner()
    pausable._pause()


@external
def unpause():
    """
    @notice Lifts the pause.
    """
    ownable._check_owner()
    pausable._unpause()


@internal
def _check_and_log_change(name: String[32], old_value: uint256, new_value: uint256, lower: uint256, upper: uint256):
    """
    @dev Shared guard and log of every numeric setter (one copy of the
         event's encoding, not one per setter: the market is near EIP-170).
    """
    ownable._check_owner()
    assert new_value >= lower and new_value <= upper, "governance: value out of bounds"
    log ParameterChanged(name=name, old_value=old_value, new_value=new_value)


@internal
@view
def _require_class_exists(gpu_class: uint16):
    """
    @dev Throws unless governance lists `gpu_class`.
    """
    assert self.class_floor[gpu_class] != 0, "governance: unknown gpu class"
