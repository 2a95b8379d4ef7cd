# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Timelock
@custom:contract-name Timelock
@license GNU Affero General Public License v3.0 only
@notice The owner of a public-network GpuMarket: snekmate's timelock
        controller (schedule, wait at least the minimum delay, execute), so
        no change to the market's parameters, GPU classes, committee or
        treasury applies before providers and clients have seen it pending
        for that long. Self-administered from its first block: roles and the
        delay change only through its own timelocked operations.
        One thing skips the delay: a GUARDIAN may pause the market at once,
        since a pause only protects (new jobs stop; settling, expiry,
        claims and withdrawals keep working). Unpausing is an ordinary
        timelocked operation.
"""

from snekmate.auth import access_control
from snekmate.governance import timelock_controller

initializes: access_control
initializes: timelock_controller[access_control := access_control]

exports: timelock_controller.__interface__


# @dev The market calls this contract makes without a delay.
interface GovernedMarket:
    def pause(): nonpayable
    def accept_ownership(): nonpayable


# @dev May pause the market without waiting (and nothing else).
GUARDIAN_ROLE: public(constant(bytes32)) = keccak256("GUARDIAN_ROLE")

# @dev The market this timelock governs.
MARKET: public(immutable(address))


@deploy
def __init__(
    market: address,
    minimum_delay: uint256,
    proposers: DynArray[address, 255],
    executors: DynArray[address, 255],
    guardians: DynArray[address, 255],
):
    """
    @dev No admin: the deployer keeps no role, and every later role or
         delay change is itself a timelocked operation.
    @param market The GpuMarket whose ownership this timelock accepts.
    @param minimum_delay Seconds between scheduling and executing; not zero.
    @param proposers Accounts that may schedule (and cancel) operations.
    @param executors Accounts that may execute ready operations; the zero
           address lets anyone execute.
    @param guardians Accounts that may pause the market at once.
    """
    assert market.is_contract, "Timelock: market has no code"
    assert minimum_delay != 0, "Timelock: zero minimum delay"
    assert len(proposers) != 0, "Timelock: no proposer"
    assert len(executors) != 0, "Timelock: no executor"
    access_control.__init__()
    timelock_controller.__init__(minimum_delay, proposers, executors, empty(address))
    for guardian: address in guardians:
        access_control._grant_role(GUARDIAN_ROLE, guardian)
    MARKET = market


@external
def pause_market():
    """
    @notice Pauses the market now (guardians only): no new jobs until an
            executed, timelocked `unpause`.
    """
    assert access_control.hasRole[GUARDIAN_ROLE][msg.sender], "Timelock: caller not guardian"
    extcall GovernedMarket(MARKET).pause()


@external
def accept_market_ownership():
    """
    @notice Completes the market's two-step ownership hand-over to this
            timelock. Anyone may call it: it succeeds only once the market's
            owner has named this contract its pending owner.
    """
    extcall GovernedMarket(MARKET).accept_ownership()
