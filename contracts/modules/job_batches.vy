# pragma version ~=0.4.3
"""
@title Job batches: one committee signature over many job reports
@custom:contract-name job_batches
@license GNU Affero General Public License v3.0 only
@notice The committee may sign one EIP-712 `JobReportBatch(bytes32 root,
        uint256 epoch)` under the market's own domain instead of one
        signature per report. `root` is a Merkle root whose leaves are the
        reports' EIP-712 struct hashes (`committee._job_report_hash`, each a
        hash of 256 bytes, so no inner node of 64 bytes can pass for one),
        inner nodes hash their two children in ascending order. Any subset
        of the leaves is proven at once with a multiproof (leaves in the
        order the off-chain tree gives, sibling hashes, and one flag per
        inner node hashed: whether its second child comes from the leaves
        and hashes already known or from the proof), as in OpenZeppelin's
        MerkleProof, written here for Vyper. The flags travel as one word,
        bit i for the i-th node hashed: there are always leaves + proof
        hashes - 1 of them (at most MAX_FLAGS, 255), so their number is not
        sent, and a bit set above it is a malformed proof. (As an array of
        bools they cost a calldata word and a memory word each.)
        Stateless: the market's companion contracts share it.
@custom:security The multiproof is sound for leaves that cannot be inner
        nodes (above) when every proof hash is consumed and every hash read
        was computed before (DynArray bounds checks).
"""

from modules import committee
from modules import eip712_domain


# @dev Most reports one batch settlement carries.
MAX_BATCH: constant(uint256) = committee.MAX_BATCH
# @dev Most sibling hashes a multiproof carries.
MAX_PROOF: constant(uint256) = 128
# @dev Flags: one per inner node hashed, leaves + proof - 1 (fits one word).
MAX_FLAGS: constant(uint256) = MAX_BATCH + MAX_PROOF - 1

JOB_REPORT_BATCH_TYPEHASH: constant(bytes32) = keccak256("JobReportBatch(bytes32 root,uint256 epoch)")


# @dev What the batch companions read of the market's committee.
interface CommitteeOf:
    def epoch() -> uint256: view
    def threshold() -> uint256: view
    def was_member(committee_epoch: uint256, account: address) -> bool: view


@internal
@view
def _batch_digest(market: address, root: bytes32, batch_epoch: uint256) -> bytes32:
    """
    @dev The EIP-712 digest the committee signs for a batch root.
    """
    return eip712_domain._hash_typed_data_of(market, keccak256(abi_encode(JOB_REPORT_BATCH_TYPEHASH, root, batch_epoch)))


@internal
@pure
def _multiproof_root(leaves: DynArray[bytes32, MAX_BATCH], proof: DynArray[bytes32, MAX_PROOF], proof_flags: uint256) -> bytes32:
    """
    @dev The root `leaves` and `proof` hash up to. Throws on a malformed
         multiproof: a flag bit set past the last node, a proof hash left
         over, a flag that asks for a hash not computed yet.
    """
    leaf_count: uint256 = len(leaves)
    assert leaf_count != 0, "job_batches: no reports"
    total: uint256 = leaf_count + len(proof) - 1
    assert proof_flags >> total == 0, "job_batches: bad multiproof shape"
    hashes: DynArray[bytes32, MAX_FLAGS] = []
    leaf_pos: uint256 = 0
    hash_pos: uint256 = 0
    proof_pos: uint256 = 0
    for i: uint256 in range(total, bound=MAX_FLAGS):
        a: bytes32 = empty(bytes32)
        if leaf_pos < leaf_count:
            a = leaves[leaf_pos]
            leaf_pos += 1
        else:
            a = hashes[hash_pos]
            hash_pos += 1
        b: bytes32 = empty(bytes32)
        if (proof_flags >> i) & 1 == 0:
            b = proof[proof_pos]
            proof_pos += 1
        elif leaf_pos < leaf_count:
            b = leaves[leaf_pos]
            leaf_pos += 1
        else:
            b = hashes[hash_pos]
            hash_pos += 1
        hashes.append(self._hash_pair(a, b))
    if total == 0:
        return leaves[0]
    assert proof_pos == len(proof), "job_batches: proof hashes left over"
    return hashes[total - 1]


@internal
@view
def _check_quorum_size(market: address, signature_count: uint256, batch_epoch: uint256):
    """
    @dev As the market's own quorum check, against its committee read
         through calls: the batch is of the current epoch and carries at
         least `threshold` signatures. `_next_signer` then checks each one;
         the caller loops over them, so that no copy of all the signatures
         sits in a frame below its own variables.
    """
    assert batch_epoch == staticcall CommitteeOf(market).epoch(), "job_batches: wrong epoch"
    assert signature_count >= staticcall CommitteeOf(market).threshold(), "job_batches: not enough signatures"


@internal
@view
def _next_signer(market: address, digest: bytes32, signature: Bytes[65], batch_epoch: uint256, previous_signer: uint256) -> uint256:
    """
    @dev The signer of `signature`, as a number: a member of `batch_epoch`'s
         committee, above `previous_signer` (signers strictly ascending).
    """
    signer: address = self._signer(digest, signature)
    assert convert(signer, uint256) > previous_signer, "job_batches: signers not ascending"
    assert staticcall CommitteeOf(market).was_member(batch_epoch, signer), "job_batches: signer not a member"
    return convert(signer, uint256)


@internal
@pure
def _signer(digest: bytes32, signature: Bytes[65]) -> address:
    """
    @dev The signer of a 65-byte low-s signature (the market's own rules).
    """
    assert len(signature) == 65, "job_batches: bad signature length"
    return committee._recover(digest, signature)


@internal
@pure
def _hash_pair(a: bytes32, b: bytes32) -> bytes32:
    if convert(a, uint256) < convert(b, uint256):
        return keccak256(concat(a, b))
    return keccak256(concat(b, a))
