# pragma version ~=0.4.3
# pragma nonreentrancy on
# pragma optimize gas
"""
@title BatchSettler
@custom:contract-name BatchSettler
@license GNU Affero General Public License v3.0 only
@notice Settles many jobs of one GpuMarket under one committee signature:
        the committee signs a JobReportBatch root (see `job_batches`) and
        anyone submits any subset of its reports with a multiproof, each
        job settled at most once (the market skips a job no longer
        running), the rest later or alone. The quorum is the market's: the
        current epoch's members and threshold. A companion of the market
        (created by the market's constructor), which applies the reports exactly as its
        own `settle` does, in one call; it holds no tokens and no state.
"""

from modules import committee
from modules import job_batches


# @dev The market's entry for reports whose quorum this contract checked.
interface MarketSettlement:
    def settle_verified(reports: DynArray[committee.JobReport, committee.MAX_BATCH]) -> uint256: nonpayable


# @dev A multiproof's leaves and inner nodes together.
MAX_NODES: constant(uint256) = job_batches.MAX_BATCH + job_batches.MAX_FLAGS

# @dev The market whose jobs this contract settles.
MARKET: public(immutable(address))


# @dev Emitted once per batch settlement.
event BatchSettled:
    root: indexed(bytes32)
    epoch: uint256
    reports: uint256
    settled: uint256


@deploy
def __init__(market: address):
    """
    @param market The GpuMarket this settler serves: the market creates it
           from a blueprint in its own constructor, and nothing else may.
    """
    assert msg.sender == market, "BatchSettler: not created by its market"
    MARKET = market


@external
def settle_batch(
    reports: DynArray[committee.JobReport, job_batches.MAX_BATCH],
    proof: DynArray[bytes32, job_batches.MAX_PROOF],
    proof_flags: uint256,
    signatures: DynArray[Bytes[65], committee.MAX_MEMBERS],
) -> uint256:
    """
    @notice Settles `reports`, all of one epoch, proven by the multiproof
            in a root that at least `threshold` members of the current
            epoch signed. Anyone may submit it.
    @param reports The reports, in the multiproof's leaf order.
    @param proof The multiproof's sibling hashes.
    @param proof_flags The multiproof's flags, bit i for the i-th node
           hashed (`job_batches`).
    @param signatures 65-byte signatures of the root, sorted by signer.
    @return uint256 How many of the jobs this call settled (those still
            running).
    """
    assert len(reports) != 0, "BatchSettler: no reports"
    batch_epoch: uint256 = reports[0].epoch
    leaf_count: uint256 = len(reports)
    # The leaves, then each inner node as it is hashed: the multiproof of
    # `job_batches._multiproof_root` run in place (same steps, same checks,
    # same reasons), since calling it would copy the leaves, the proof and
    # the flags into its frame, which lies below every variable here and
    # below the market call's buffer (28 KB): memory is paid by its highest
    # address, so those copies cost more than the hashing.
    nodes: DynArray[bytes32, MAX_NODES] = []
    for report: committee.JobReport in reports:
        assert report.epoch == batch_epoch, "BatchSettler: reports of different epochs"
        nodes.append(committee._job_report_hash(report))
    # One flag per inner node hashed, bit i for the i-th: leaves + proof - 1 of
    # them (at most MAX_FLAGS, 255), no bit set above.
    total: uint256 = leaf_count + len(proof) - 1
    assert proof_flags >> total == 0, "job_batches: bad multiproof shape"
    # Leaves are consumed first, then hashes in the order computed, so one
    # position walks `nodes`; reading past its end (a hash not computed
    # yet) or past the proof's fails the bounds check. The positions stay
    # below 2 * MAX_FLAGS: unchecked adds.
    node: uint256 = 0
    proof_pos: uint256 = 0
    for i: uint256 in range(total, bound=job_batches.MAX_FLAGS):
        a: bytes32 = nodes[node]
        b: bytes32 = empty(bytes32)
        if (proof_flags >> i) & 1 != 0:
            b = nodes[unsafe_add(node, 1)]
            node = unsafe_add(node, 2)
        else:
            b = proof[proof_pos]
            proof_pos = unsafe_add(proof_pos, 1)
            node = unsafe_add(node, 1)
        # job_batches._hash_pair, inline: children in ascending order.
        if convert(a, uint256) > convert(b, uint256):
            nodes.append(keccak256(concat(b, a)))
        else:
            nodes.append(keccak256(concat(a, b)))
    assert proof_pos == len(proof), "job_batches: proof hashes left over"
    root: bytes32 = nodes[leaf_count + total - 1]
    digest: bytes32 = job_batches._batch_digest(MARKET, root, batch_epoch)
    job_batches._check_quorum_size(MARKET, len(signatures), batch_epoch)
    signer: uint256 = 0
    for signature: Bytes[65] in signatures:
        signer = job_batches._next_signer(MARKET, digest, signature, batch_epoch, signer)
    settled: uint256 = extcall MarketSettlement(MARKET).settle_verified(reports)
    log BatchSettled(root=root, epoch=batch_epoch, reports=len(reports), settled=settled)
    return settled
