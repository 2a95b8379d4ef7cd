# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Committee: oracle members, epochs and EIP-712 quorum verification
@custom:contract-name committee
@license GNU Affero General Public License v3.0 only
@notice The oracle committee signs JobReport and HardwareReport messages
        (EIP-712; domain name "gpumarket", version "1", this chain and this
        contract, so no signature replays across chains or deployments).
        Every change of members or threshold starts a new epoch; a report
        carries its epoch and only the current epoch's members count, so
        signatures of a former committee are void. Signatures are passed
        sorted by recovered signer, strictly ascending, so no member counts
        twice; high-s twins and signatures that recover to no address are
        refused.
"""

from snekmate.auth import ownable
from modules import eip712_domain
from interfaces import IOracleBonds

uses: ownable


# @dev Largest committee; bounds the quorum loop (see tests/security for gas).
MAX_MEMBERS: constant(uint256) = 31
# @dev Most reports one batch settlement carries (BatchSettler).
MAX_BATCH: constant(uint256) = 128

# @dev secp256k1n / 2: a signature with a larger s is the malleable twin of
# one with a smaller s.
HALF_CURVE_ORDER: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168

# @dev Report outcomes as signed by the committee.
OUTCOME_COMPLETED: constant(uint8) = 1
OUTCOME_FAILED: constant(uint8) = 2

JOB_REPORT_TYPEHASH: constant(bytes32) = keccak256(
    "JobReport(uint256 job_id,address provider,uint8 outcome,uint256 gpu_seconds,bytes32 result_hash,bytes32 evidence_hash,uint256 epoch)"
)
HARDWARE_REPORT_TYPEHASH: constant(bytes32) = keccak256(
    "HardwareReport(address provider,uint16 gpu_class,uint16 gpu_count,uint64 claim_version,uint256 measured_throughput,uint64 valid_until,uint256 epoch)"
)


# @dev The committee's verdict on one job.
struct JobReport:
    job_id: uint256
    provider: address
    outcome: uint8
    gpu_seconds: uint256
    result_hash: bytes32
    evidence_hash: bytes32
    epoch: uint256


# @dev The committee's measurement of one provider's hardware: the claim it
# measured (class, count and the registry's claim version) and the result.
struct HardwareReport:
    provider: address
    gpu_class: uint16
    gpu_count: uint16
    claim_version: uint64
    measured_throughput: uint256
    valid_until: uint64
    epoch: uint256


# @dev Current epoch; starts at 1 with the constructor's committee.
epoch: public(uint256)
# @dev Signatures needed from the current epoch's members.
threshold: public(uint256)
# @dev The current members, in the order governance gave them.
_members: DynArray[address, MAX_MEMBERS]
# @dev epoch => account => member of that epoch's committee.
_membership: HashMap[uint256, HashMap[address, bool]]
# @dev The contract that holds the members' bonds (created by the
# deployable's constructor, after its first committee); while unset, a
# committee needs no bonds.
oracle_bonds: public(address)


# @dev Emitted when governance installs a committee (a new epoch).
event CommitteeChanged:
    epoch: indexed(uint256)
    members: DynArray[address, MAX_MEMBERS]
    threshold: uint256


@deploy
def __init__(members_: DynArray[address, MAX_MEMBERS], threshold_: uint256):
    """
    @dev Installs the first committee as epoch 1.
    """
    self._set_committee(members_, threshold_)


@external
def set_committee(new_members: DynArray[address, MAX_MEMBERS], new_threshold: uint256):
    """
    @notice Replaces the committee and starts a new epoch. Reports signed for
            an earlier epoch no longer verify.
    @param new_members Distinct non-zero addresses, 1 .. 31 of them.
    @param new_threshold A strict majority: len/2 < threshold <= len.
    """
    ownable._check_owner()
    self._set_committee(new_members, new_threshold)


@external
@view
def members() -> DynArray[address, MAX_MEMBERS]:
    """
    @notice The current epoch's members.
    """
    return self._members


@external
@view
def is_member(account: address) -> bool:
    """
    @notice Whether `account` is a member of the current epoch's committee.
    """
    return self._membership[self.epoch][account]


@external
@view
def was_member(committee_epoch: uint256, account: address) -> bool:
    """
    @notice Whether `account` was a member of `committee_epoch`'s committee:
            the companion contracts check batch signatures and equivocation
            evidence of any epoch against it.
    """
    return self._membership[committee_epoch][account]


@external
@view
def job_report_digest(report: JobReport) -> bytes32:
    """
    @notice The EIP-712 digest the committee signs for `report`.
    """
    return self._job_report_digest(report)


@external
@view
def hardware_report_digest(report: HardwareReport) -> bytes32:
    """
    @notice The EIP-712 digest the committee signs for `report`.
    """
    return self._hardware_report_digest(report)


@external
@view
def domain_separator() -> bytes32:
    """
    @notice The EIP-712 domain separator of this deployment on this chain.
    """
    return eip712_domain._domain_separator()


@internal
def _set_committee(new_members: DynArray[address, MAX_MEMBERS], new_threshold: uint256):
    count: uint256 = len(new_members)
    assert count != 0, "committee: no members"
    assert new_threshold != 0 and new_threshold <= count, "committee: bad threshold"
    assert new_threshold * 2 > count, "committee: no majority threshold"
    new_epoch: uint256 = self.epoch + 1
    bonds: address = self.oracle_bonds
    for member: address in new_members:
        assert member != empty(address), "committee: zero address member"
        assert not self._membership[new_epoch][member], "committee: duplicate member"
        if bonds != empty(address):
            assert staticcall IOracleBonds(bonds).eligible(member), "committee: member not eligible"
        self._membership[new_epoch][member] = True
    self.epoch = new_epoch
    self.threshold = new_threshold
    self._members = new_members
    log CommitteeChanged(epoch=new_epoch, members=new_members, threshold=new_threshold)


@internal
@view
def _verify_quorum(digest: bytes32, signatures: DynArray[Bytes[65], MAX_MEMBERS], report_epoch: uint256):
    """
    @dev Throws unless `signatures` hold at least `threshold` valid signatures
         of `digest` by distinct members of the current epoch, sorted by
         signer. Any invalid, unsorted or outsider signature fails the call.
    """
    current_epoch: uint256 = self.epoch
    assert report_epoch == current_epoch, "committee: wrong epoch"
    assert len(signatures) >= self.threshold, "committee: not enough signatures"
    previous_signer: uint256 = 0
    for signature: Bytes[65] in signatures:
        # Only the 65-byte form: EIP-2098 compact signatures are a second
        # encoding of the same signature and buy nothing here.
        assert len(signature) == 65, "committee: bad signature length"
        signer: address = self._recover(digest, signature)
        assert convert(signer, uint256) > previous_signer, "committee: signers not ascending"
        assert self._membership[current_epoch][signer], "committee: signer not a member"
        previous_signer = convert(signer, uint256)


@internal
@pure
def _recover(digest: bytes32, signature: Bytes[65]) -> address:
    """
    @dev The signer of a 65-byte (r, s, v) signature. Only the low-s form is
         accepted; a v other than 27 or 28 recovers no address and fails.
         (Our own few lines rather than snekmate's ecdsa, whose EIP-2098
         path we refuse anyway: the market is near the EIP-170 size limit.)
    """
    r: uint256 = extract32(signature, 0, output_type=uint256)
    s: uint256 = extract32(signature, 32, output_type=uint256)
    v: uint256 = convert(slice(signature, 64, 1), uint256)
    assert s <= HALF_CURVE_ORDER, "committee: high-s signature"
    signer: address = ecrecover(digest, v, r, s)
    assert signer != empty(address), "committee: invalid signature"
    return signer


@internal
@view
def _job_report_digest(report: JobReport) -> bytes32:
    return eip712_domain._hash_typed_data(self._job_report_hash(report))


@internal
@pure
def _job_report_hash(report: JobReport) -> bytes32:
    """
    @dev The report's EIP-712 struct hash: what the committee signs alone,
         and a leaf of a batch's Merkle tree.
    """
    return keccak256(
        abi_encode(
            JOB_REPORT_TYPEHASH,
            report.job_id,
            report.provider,
            report.outcome,
            report.gpu_seconds,
            report.result_hash,
            report.evidence_hash,
            report.epoch,
        )
    )


@internal
@view
def _hardware_report_digest(report: HardwareReport) -> bytes32:
    return eip712_domain._hash_typed_data(self._hardware_report_hash(report))


@internal
@pure
def _hardware_report_hash(report: HardwareReport) -> bytes32:
    """
    @dev The report's EIP-712 struct hash.
    """
    return keccak256(
        abi_encode(
            HARDWARE_REPORT_TYPEHASH,
            report.provider,
            report.gpu_class,
            report.gpu_count,
            report.claim_version,
            report.measured_throughput,
            report.valid_until,
            report.epoch,
        )
    )
