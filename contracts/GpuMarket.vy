# pragma version ~=0.4.3
# pragma nonreentrancy on
# pragma optimize codesize
"""
@title GpuMarket
@custom:contract-name GpuMarket
@license GNU Affero General Public License v3.0 only
@notice An open market for GPU compute. Providers register hardware claims
        and stake; clients escrow payment for jobs; an oracle committee
        measures hardware and jobs and signs EIP-712 reports from which this
        contract pays, refunds and slashes. One deployable composes the
        modules so that one token balance backs one set of books:
        token balance == free + locked + unbonding stake + escrow + claimable.
@custom:security Every external function is non-reentrant (pragma), transfers
        tolerate USDT-like tokens and refuse fee-on-transfer ones, payouts
        are pulled, and every loop is bounded (the committee's MAX_MEMBERS).
@custom:kill The owner's `pause()` stops new jobs (create_job, accept_job);
        settle, expire_job, cancel_job, request_unstake, withdraw and claim
        keep working so no funds are ever trapped. There is no upgrade path
        and no way to take funds: to retire a deployment, pause it and let
        every job reach a terminal state.
"""

from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from snekmate.utils import pausable

from modules import eip712_domain
from modules import governance
from modules import ledger
from modules import committee
from modules import registry
from modules import staking
from modules import escrow
from modules import verification

initializes: ownable
initializes: ownable_2step[ownable := ownable]
initializes: pausable
initializes: governance[ownable := ownable, pausable := pausable]
initializes: ledger
initializes: committee[ownable := ownable]
initializes: registry[ownable := ownable, governance := governance]
initializes: staking[governance := governance, ledger := ledger]
initializes: escrow[
    pausable := pausable,
    governance := governance,
    ledger := ledger,
    committee := committee,
    registry := registry,
    staking := staking,
]
initializes: verification[
    governance := governance,
    committee := committee,
    registry := registry,
    staking := staking,
]

# Ownership is two-step; `renounce_ownership` is deliberately not exported,
# since a market without governance could never rotate its committee.
exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
    pausable.paused,
    eip712_domain.eip712Domain,
)
exports: governance.__interface__
exports: ledger.__interface__
exports: committee.__interface__
exports: registry.__interface__
exports: staking.__interface__
exports: escrow.__interface__
exports: verification.__interface__


# @dev Emitted once, when the constructor creates the companion contracts.
event CompanionsSet:
    batch_settler: address
    oracle_bonds: address


@deploy
def __init__(
    stake_token: address,
    payment_token: address,
    treasury: address,
    committee_members: DynArray[address, committee.MAX_MEMBERS],
    committee_threshold: uint256,
    settler_blueprint: address,
    bonds_blueprint: address,
    bond_amount: uint256,
    bond_withdrawal_delay: uint256,
):
    """
    @dev The deployer becomes the owner. Parameters start at docs/PROTOCOL.md's
         defaults; the deploy script sets GPU classes and overrides.
    @param stake_token ERC20 staked by providers.
    @param payment_token ERC20 in which jobs are paid (may equal stake_token).
    @param treasury Receives protocol fees and the treasury's slash shares.
    @param committee_members The first oracle committee (epoch 1).
    @param committee_threshold Signatures needed, a strict majority.
    @param settler_blueprint ERC-5202 blueprint of BatchSettler, or zero for
           a market without companions (no batches, no bonds).
    @param bonds_blueprint ERC-5202 blueprint of OracleBonds (zero with the
           settler's).
    @param bond_amount OracleBonds' bond per committee member, stake tokens.
    @param bond_withdrawal_delay OracleBonds' withdrawal delay, seconds.
    """
    ownable.__init__()
    ownable_2step.__init__()
    pausable.__init__()
    governance.__init__(treasury)
    ledger.__init__(stake_token, payment_token)
    committee.__init__(committee_members, committee_threshold)
    registry.__init__()
    staking.__init__()
    escrow.__init__()
    verification.__init__()
    # The companions are created here, after the first committee (named
    # before any bond can exist), so each is bound to this market from its
    # first block and no one can wire in others later.
    if settler_blueprint != empty(address):
        escrow.batch_settler = create_from_blueprint(settler_blueprint, self)
        committee.oracle_bonds = create_from_blueprint(bonds_blueprint, self, stake_token, bond_amount, bond_withdrawal_delay)
        log CompanionsSet(batch_settler=escrow.batch_settler, oracle_bonds=committee.oracle_bonds)

