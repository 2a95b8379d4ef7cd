# pragma version ~=0.4.3
# pragma nonreentrancy on
# pragma optimize gas
"""
@title OracleBonds
@custom:contract-name OracleBonds
@license GNU Affero General Public License v3.0 only
@notice Makes an oracle that signs two different reports for one job (or
        one hardware measurement) in one epoch pay for it. Committee members
        post a bond in the market's stake token, at least `bond_amount`
        (governed by the market's owner), before governance can name them
        in a committee (the market asks `eligible`). Anyone holding two such
        signatures of one member submits them: the member's whole bond is
        slashed, REPORTER_SHARE_BPS of it to the reporter and the rest to the
        market's treasury, and the member is flagged, which keeps it out of
        every later committee until governance clears the flag. A signature
        counts whether it was given to a report alone or to a batch root
        (with the report's Merkle path, see `job_batches`). Honest oracles
        never sign two reports with one key: their decisions are write-once.
        A bond is withdrawn once its owner has left the committee, a
        `withdrawal_delay` after asking, so evidence of its last epochs can
        still reach it. A companion of the market, created by its constructor.
@custom:security Its own books: the stake-token balance of this contract is
        the sum of bonds and of claimable slash shares. Payouts are pulled.
"""

from modules import committee
from modules import eip712_domain
from modules import job_batches
from modules import token_io


# @dev Share of a slashed bond paid to whoever proved the equivocation.
REPORTER_SHARE_BPS: constant(uint256) = 1_000
BPS: constant(uint256) = 10_000
# @dev Bounds of the withdrawal delay: a day, so evidence has time to be
# submitted, up to 90 days.
MIN_WITHDRAWAL_DELAY: constant(uint256) = 86_400
MAX_WITHDRAWAL_DELAY: constant(uint256) = 90 * 86_400
# @dev Deepest Merkle path of one report in a batch (2**32 reports).
MAX_PATH: constant(uint256) = 32


# @dev What this contract reads of its market.
interface Market:
    def owner() -> address: view
    def treasury() -> address: view
    def is_member(account: address) -> bool: view
    def was_member(committee_epoch: uint256, account: address) -> bool: view
    def epoch() -> uint256: view


# @dev One member's signature of one job report: given to the report alone
# (`batched` false, `path` empty) or to a batch root that `path` proves the
# report is a leaf of.
struct JobAttestation:
    report: committee.JobReport
    signature: Bytes[65]
    batched: bool
    path: DynArray[bytes32, MAX_PATH]


# @dev One member's signature of one hardware report.
struct HardwareAttestation:
    report: committee.HardwareReport
    signature: Bytes[65]


# @dev The market whose committee this contract bonds.
MARKET: public(immutable(address))
# @dev The market's stake token, in which bonds are posted.
STAKE_TOKEN: public(immutable(address))

# @dev Bond a committee member must hold.
bond_amount: public(uint256)
# @dev Seconds between asking to withdraw a bond and withdrawing it.
withdrawal_delay: public(uint256)
# @dev account => bonded amount.
bond_of: public(HashMap[address, uint256])
# @dev account => when its bond can be withdrawn (0: not asked).
withdrawable_at: public(HashMap[address, uint256])
# @dev account => caught equivocating and not cleared since.
flagged: public(HashMap[address, bool])
# @dev account => evidence of this epoch or earlier no longer counts (set when
# governance clears a flag).
cleared_through_epoch: public(HashMap[address, uint256])
# @dev account => slash shares it can claim.
claimable: public(HashMap[address, uint256])


event BondPosted:
    member: indexed(address)
    amount: uint256
    bond: uint256

event BondWithdrawalRequested:
    member: indexed(address)
    withdrawable_at: uint256

event BondWithdrawn:
    member: indexed(address)
    amount: uint256

event EquivocationSlashed:
    member: indexed(address)
    reporter: indexed(address)
    epoch: uint256
    kind: String[8]
    first_hash: bytes32
    second_hash: bytes32
    slashed: uint256
    reporter_share: uint256

event FlagCleared:
    member: indexed(address)
    through_epoch: uint256

event BondParameterChanged:
    name: String[32]
    old_value: uint256
    new_value: uint256

event Claimed:
    account: indexed(address)
    amount: uint256


@deploy
def __init__(market: address, stake_token: address, bond_amount_: uint256, withdrawal_delay_: uint256):
    """
    @param market The GpuMarket whose committee this contract bonds: the
           market creates it from a blueprint in its own constructor (so it
           cannot be called yet), and nothing else may.
    @param stake_token The market's stake token, in which bonds are held.
    @param bond_amount_ Bond each member must hold, in stake-token units.
    @param withdrawal_delay_ Seconds, 1 .. 90 days.
    """
    assert msg.sender == market, "OracleBonds: not created by its market"
    assert withdrawal_delay_ >= MIN_WITHDRAWAL_DELAY and withdrawal_delay_ <= MAX_WITHDRAWAL_DELAY, "OracleBonds: delay out of bounds"
    MARKET = market
    STAKE_TOKEN = stake_token
    self.bond_amount = bond_amount_
    self.withdrawal_delay = withdrawal_delay_


@external
def post_bond(amount: uint256):
    """
    @notice Adds `amount` of the stake token to the caller's bond (needs an
            allowance). A pending withdrawal is cancelled: the whole bond
            backs the caller again.
    @param amount Stake-token base units, non-zero.
    """
    assert amount != 0, "OracleBonds: zero amount"
    self.bond_of[msg.sender] += amount
    self.withdrawable_at[msg.sender] = 0
    token_io._pull_exact(STAKE_TOKEN, msg.sender, amount)
    log BondPosted(member=msg.sender, amount=amount, bond=self.bond_of[msg.sender])


@external
def request_withdrawal():
    """
    @notice Starts the caller's withdrawal delay. Only an account that is
            not a member of the current committee may ask.
    """
    assert self.bond_of[msg.sender] != 0, "OracleBonds: no bond"
    assert not staticcall Market(MARKET).is_member(msg.sender), "OracleBonds: still a committee member"
    release_at: uint256 = block.timestamp + self.withdrawal_delay
    self.withdrawable_at[msg.sender] = release_at
    log BondWithdrawalRequested(member=msg.sender, withdrawable_at=release_at)


@external
def withdraw() -> uint256:
    """
    @notice Pays the caller its whole bond once its delay has passed and it
            is still out of the committee.
    @return uint256 The amount paid.
    """
    release_at: uint256 = self.withdrawable_at[msg.sender]
    assert release_at != 0, "OracleBonds: withdrawal not requested"
    assert block.timestamp >= release_at, "OracleBonds: delay not passed"
    assert not staticcall Market(MARKET).is_member(msg.sender), "OracleBonds: still a committee member"
    amount: uint256 = self.bond_of[msg.sender]
    self.bond_of[msg.sender] = 0
    self.withdrawable_at[msg.sender] = 0
    token_io._push(STAKE_TOKEN, msg.sender, amount)
    log BondWithdrawn(member=msg.sender, amount=amount)
    return amount


@external
@view
def eligible(account: address) -> bool:
    """
    @notice Whether `account` may be named in a committee: it holds the bond,
            is not withdrawing it, and is not flagged.
    """
    return (
        self.bond_of[account] >= self.bond_amount
        and self.withdrawable_at[account] == 0
        and not self.flagged[account]
    )


@external
def prove_job_equivocation(member: address, first: JobAttestation, second: JobAttestation) -> uint256:
    """
    @notice Slashes `member` for signing two different job reports for one
            job in one epoch. Anyone may submit; the caller is the reporter.
    @return uint256 The amount slashed.
    """
    assert first.report.job_id == second.report.job_id, "OracleBonds: different jobs"
    assert first.report.epoch == second.report.epoch, "OracleBonds: different epochs"
    first_hash: bytes32 = committee._job_report_hash(first.report)
    second_hash: bytes32 = committee._job_report_hash(second.report)
    assert first_hash != second_hash, "OracleBonds: same report"
    assert self._job_signer(first, first_hash) == member, "OracleBonds: first not signed by member"
    assert self._job_signer(second, second_hash) == member, "OracleBonds: second not signed by member"
    return self._slash(member, first.report.epoch, "job", first_hash, second_hash)


@external
def prove_hardware_equivocation(member: address, first: HardwareAttestation, second: HardwareAttestation) -> uint256:
    """
    @notice Slashes `member` for signing two different hardware reports of
            one measurement (provider, claim version, valid_until) in one
            epoch. Anyone may submit; the caller is the reporter.
    @return uint256 The amount slashed.
    """
    assert first.report.provider == second.report.provider and first.report.claim_version == second.report.claim_version and first.report.valid_until == second.report.valid_until, "OracleBonds: different measurements"
    assert first.report.epoch == second.report.epoch, "OracleBonds: different epochs"
    first_hash: bytes32 = committee._hardware_report_hash(first.report)
    second_hash: bytes32 = committee._hardware_report_hash(second.report)
    assert first_hash != second_hash, "OracleBonds: same report"
    assert self._signer(first_hash, first.signature) == member, "OracleBonds: first not signed by member"
    assert self._signer(second_hash, second.signature) == member, "OracleBonds: second not signed by member"
    return self._slash(member, first.report.epoch, "hardware", first_hash, second_hash)


@external
def clear_flag(member: address):
    """
    @notice Governance (the market's owner) clears a flag: the member may be
            named again once bonded, and evidence up to the current epoch no
            longer counts against it.
    """
    assert msg.sender == staticcall Market(MARKET).owner(), "OracleBonds: caller is not the market owner"
    assert self.flagged[member], "OracleBonds: member not flagged"
    self.flagged[member] = False
    through: uint256 = staticcall Market(MARKET).epoch()
    self.cleared_through_epoch[member] = through
    log FlagCleared(member=member, through_epoch=through)


@external
def set_bond_amount(new_value: uint256):
    """
    @notice Governance sets the bond a member must hold to be named; members
            already named keep their seat until the next committee.
    """
    self._check_owner()
    log BondParameterChanged(name="bond_amount", old_value=self.bond_amount, new_value=new_value)
    self.bond_amount = new_value


@external
def set_withdrawal_delay(new_value: uint256):
    """
    @notice Governance sets the withdrawal delay, 1 .. 90 days; requests
            already made keep their time.
    """
    self._check_owner()
    assert new_value >= MIN_WITHDRAWAL_DELAY and new_value <= MAX_WITHDRAWAL_DELAY, "OracleBonds: delay out of bounds"
    log BondParameterChanged(name="withdrawal_delay", old_value=self.withdrawal_delay, new_value=new_value)
    self.withdrawal_delay = new_value


@external
def claim() -> uint256:
    """
    @notice Sends the caller the slash shares credited to it.
    @return uint256 The amount sent.
    """
    amount: uint256 = self.claimable[msg.sender]
    assert amount != 0, "OracleBonds: nothing to claim"
    self.claimable[msg.sender] = 0
    token_io._push(STAKE_TOKEN, msg.sender, amount)
    log Claimed(account=msg.sender, amount=amount)
    return amount


@internal
@view
def _check_owner():
    assert msg.sender == staticcall Market(MARKET).owner(), "OracleBonds: caller is not the market owner"


@internal
@view
def _job_signer(attestation: JobAttestation, leaf: bytes32) -> address:
    """
    @dev Who signed the report, alone (the market's report digest) or as a
         leaf of a batch root.
    """
    if not attestation.batched:
        assert len(attestation.path) == 0, "OracleBonds: path without a batch"
        return self._signer(leaf, attestation.signature)
    # A one-leaf multiproof: every flag false, each path hash consumed in turn.
    path: DynArray[bytes32, job_batches.MAX_PROOF] = []
    for node: bytes32 in attestation.path:
        path.append(node)
    root: bytes32 = job_batches._multiproof_root([leaf], path, 0)
    return job_batches._signer(job_batches._batch_digest(MARKET, root, attestation.report.epoch), attestation.signature)


@internal
@view
def _signer(struct_hash: bytes32, signature: Bytes[65]) -> address:
    """
    @dev The signer of a report signed alone, under the market's domain.
    """
    return job_batches._signer(eip712_domain._hash_typed_data_of(MARKET, struct_hash), signature)


@internal
def _slash(member: address, report_epoch: uint256, kind: String[8], first_hash: bytes32, second_hash: bytes32) -> uint256:
    assert staticcall Market(MARKET).was_member(report_epoch, member), "OracleBonds: not a member of that epoch"
    assert report_epoch > self.cleared_through_epoch[member], "OracleBonds: evidence cleared by governance"
    assert not self.flagged[member], "OracleBonds: member already flagged"
    amount: uint256 = self.bond_of[member]
    reporter_share: uint256 = amount * REPORTER_SHARE_BPS // BPS
    self.bond_of[member] = 0
    self.withdrawable_at[member] = 0
    self.flagged[member] = True
    if amount != 0:
        self.claimable[msg.sender] += reporter_share
        self.claimable[staticcall Market(MARKET).treasury()] += amount - reporter_share
    log EquivocationSlashed(
        member=member,
        reporter=msg.sender,
        epoch=report_epoch,
        kind=kind,
        first_hash=first_hash,
        second_hash=second_hash,
        slashed=amount,
        reporter_share=reporter_share,
    )
    return amount
