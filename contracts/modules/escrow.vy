# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Escrow: jobs, their payment and their lifecycle
@custom:contract-name escrow
@license GNU Affero General Public License v3.0 only
@notice OPEN -> RUNNING -> COMPLETED | FAILED, plus CANCELLED (client, while
        OPEN) and EXPIRED (anyone, once no report can be expected). Each job
        reaches exactly one terminal state, and in each one every escrowed
        token is credited to the client, the provider or the treasury.
        Functions follow checks, effects, interactions.
"""

from snekmate.utils import pausable
from modules import governance
from modules import ledger
from modules import committee
from modules import registry
from modules import staking
from modules import token_io

uses: pausable
uses: governance
uses: ledger
uses: committee
uses: registry
uses: staking


# Job states. Zero means "no such job".
OPEN: constant(uint8) = 1
RUNNING: constant(uint8) = 2
COMPLETED: constant(uint8) = 3
FAILED: constant(uint8) = 4
CANCELLED: constant(uint8) = 5
EXPIRED: constant(uint8) = 6

# @dev Latest accept deadline a client may set, from now.
MAX_ACCEPT_WINDOW: constant(uint256) = 30 * 86_400

# Bit layout of the packed job words (see `Job`).
ADDRESS_MASK: constant(uint256) = 2**160 - 1
MASK_96: constant(uint256) = 2**96 - 1
MASK_48: constant(uint256) = 2**48 - 1
MASK_32: constant(uint256) = 2**32 - 1
MASK_16: constant(uint256) = 2**16 - 1
MASK_8: constant(uint256) = 2**8 - 1
STATE_SHIFT: constant(uint256) = 208
STARTED_AT_SHIFT: constant(uint256) = 216
# @dev Collateral is packed into 96 bits beside the provider.
MAX_COLLATERAL: constant(uint256) = 2**96 - 1


# @dev A job in storage: four words, so create_job writes at most four fresh
# slots (22,100 gas each) and accept_job at most one. Layouts, low bits first:
#   client_and_price:        client (160) | accepted price per GPU-second (96)
#   provider_and_collateral: provider (160) | collateral in stake tokens (96)
#   terms: max price (96) | gpu_class (16) | gpu_count (16) | max_duration (32)
#          | accept_deadline (48) | state (8) | started_at (40)
struct Job:
    client_and_price: uint256
    provider_and_collateral: uint256
    spec_hash: bytes32
    terms: uint256


# @dev A job unpacked, as `get_job` returns it.
struct JobView:
    client: address
    provider: address
    state: uint8
    gpu_class: uint16
    gpu_count: uint16
    max_price_per_gpu_second: uint256
    price_per_gpu_second: uint256
    max_duration: uint256
    accept_deadline: uint256
    started_at: uint256
    collateral: uint256
    escrow: uint256
    spec_hash: bytes32


# @dev What settling COMPLETED jobs owes one provider's shared words and the
# treasury. A batch adds it up over a provider's consecutive jobs and writes
# each shared slot once (`_release`), instead of once per job.
struct ProviderRelease:
    provider: address
    collateral: uint256
    gpus: uint256
    payment: uint256
    fee: uint256


# @dev Number of jobs created; ids run from 1.
job_count: public(uint256)
# @dev job id => packed job.
_jobs: HashMap[uint256, Job]
# @dev The companion contract that settles batches of reports under one
# quorum-signed Merkle root (created by the deployable's constructor; unset,
# no batches).
batch_settler: public(address)


# @dev Emitted when a client escrows a job.
event JobCreated:
    job_id: indexed(uint256)
    client: indexed(address)
    provider: indexed(address)
    gpu_class: uint16
    gpu_count: uint16
    max_price_per_gpu_second: uint256
    max_duration: uint256
    accept_deadline: uint256
    escrow: uint256
    spec_hash: bytes32


# @dev Emitted when a provider takes a job and locks its collateral.
event JobAccepted:
    job_id: indexed(uint256)
    provider: indexed(address)
    price_per_gpu_second: uint256
    collateral: uint256
    started_at: uint256


# @dev Emitted when a quorum-signed report settles a job.
event JobSettled:
    job_id: indexed(uint256)
    provider: indexed(address)
    outcome: uint8
    gpu_seconds: uint256
    provider_payment: uint256
    protocol_fee: uint256
    client_refund: uint256
    slashed: uint256
    result_hash: bytes32
    evidence_hash: bytes32


# @dev Emitted when the client cancels an open job.
event JobCancelled:
    job_id: indexed(uint256)
    client: indexed(address)
    refund: uint256


# @dev Emitted when a job expires without acceptance or without a report.
event JobExpired:
    job_id: indexed(uint256)
    previous_state: uint8
    refund: uint256
    collateral_released: uint256


@deploy
def __init__():
    pass


@external
def create_job(
    gpu_class: uint16,
    gpu_count: uint16,
    max_price_per_gpu_second: uint256,
    max_duration: uint256,
    spec_hash: bytes32,
    provider: address,
    accept_deadline: uint256,
) -> uint256:
    """
    @notice Escrows max_price * gpu_count * max_duration of PAYMENT_TOKEN
            (needs an allowance) and opens a job.
    @param gpu_class A class governance lists.
    @param gpu_count GPUs needed, 1 .. 1,024.
    @param max_price_per_gpu_second Highest price accepted, 1 .. 2**96 - 1.
    @param max_duration Seconds, 1 .. 30 days; billing is capped at
           gpu_count * max_duration GPU-seconds.
    @param spec_hash keccak256 of the job spec the client sends the provider.
    @param provider Zero for an open job, or the only provider that may take it.
    @param accept_deadline Unix time after which an untaken job can expire.
    @return uint256 The new job's id.
    """
    pausable._require_not_paused()
    governance._require_class_exists(gpu_class)
    assert gpu_count != 0 and gpu_count <= registry.MAX_GPUS, "escrow: gpu count out of range"
    assert max_price_per_gpu_second != 0 and max_price_per_gpu_second <= registry.MAX_PRICE, "escrow: price out of range"
    assert max_duration != 0 and max_duration <= governance.MAX_JOB_DURATION, "escrow: duration out of range"
    assert accept_deadline > block.timestamp and accept_deadline <= block.timestamp + MAX_ACCEPT_WINDOW, "escrow: deadline out of range"
    assert spec_hash != empty(bytes32), "escrow: empty spec hash"
    if provider != empty(address):
        registry._require_registered(provider)

    # Cannot overflow: 2**96 * 2**10 * 2**22 < 2**256.
    escrow_amount: uint256 = max_price_per_gpu_second * convert(gpu_count, uint256) * max_duration
    job_id: uint256 = self.job_count + 1
    self.job_count = job_id
    # Word by word: an open job leaves its provider word untouched (zero),
    # which saves writing a zero slot.
    self._jobs[job_id].client_and_price = convert(msg.sender, uint256)
    if provider != empty(address):
        self._jobs[job_id].provider_and_collateral = convert(provider, uint256)
    self._jobs[job_id].spec_hash = spec_hash
    self._jobs[job_id].terms = self._pack_terms(
        max_price_per_gpu_second, gpu_class, gpu_count, max_duration, accept_deadline, OPEN
    )
    token_io._pull_exact(ledger.PAYMENT_TOKEN, msg.sender, escrow_amount)
    log JobCreated(
        job_id=job_id,
        client=msg.sender,
        provider=provider,
        gpu_class=gpu_class,
        gpu_count=gpu_count,
        max_price_per_gpu_second=max_price_per_gpu_second,
        max_duration=max_duration,
        accept_deadline=accept_deadline,
        escrow=escrow_amount,
        spec_hash=spec_hash,
    )
    return job_id


@external
def accept_job(job_id: uint256):
    """
    @notice The caller takes an open job at its current price, reserves the
            job's GPUs and locks collateral (job value * COLLATERAL_BPS *
            collateral_rate, rounded up, in stake tokens) from its free
            stake. The caller must be verified for the job's class, not
            jailed, have the job's GPUs free (its gpu_count less those its
            running jobs hold), be priced at or below the job's maximum, and
            keep MIN_STAKE free on top of the collateral.
    @param job_id An OPEN job whose accept deadline has not passed.
    """
    pausable._require_not_paused()
    job: JobView = self._load(job_id)
    assert job.state == OPEN, "escrow: job not open"
    assert block.timestamp <= job.accept_deadline, "escrow: accept deadline passed"
    assert job.provider == empty(address) or job.provider == msg.sender, "escrow: job directed elsewhere"
    price: uint256 = registry._take_gpus_at_price(msg.sender, job.gpu_class, job.gpu_count, job.max_price_per_gpu_second)
    collateral: uint256 = self._collateral(price * convert(job.gpu_count, uint256) * job.max_duration)
    assert collateral <= MAX_COLLATERAL, "escrow: collateral too large"
    staking._lock_collateral(msg.sender, collateral)

    self._jobs[job_id].client_and_price = convert(job.client, uint256) | (price << 160)
    self._jobs[job_id].provider_and_collateral = convert(msg.sender, uint256) | (collateral << 160)
    # Timestamps stay below 2**40 until the year 36812.
    self._jobs[job_id].terms = self._with_state(self._jobs[job_id].terms, RUNNING) | (block.timestamp << STARTED_AT_SHIFT)
    log JobAccepted(
        job_id=job_id,
        provider=msg.sender,
        price_per_gpu_second=price,
        collateral=collateral,
        started_at=block.timestamp,
    )


@external
def settle(report: committee.JobReport, signatures: DynArray[Bytes[65], committee.MAX_MEMBERS]):
    """
    @notice Settles a running job from a report signed by at least
            `threshold` members of the current epoch. Anyone may submit it.
            COMPLETED pays price * min(gpu_seconds, gpu_count * max_duration)
            less PROTOCOL_FEE_BPS (rounded up, to the treasury), refunds the
            rest of the escrow and unlocks the collateral. FAILED refunds
            the client in full, slashes SLASH_BPS of the collateral (at
            least 1 unit), CLIENT_SHARE_BPS of it to the client, and counts
            towards the provider's jail. Either way the job's GPUs are free.
    @param report The committee's JobReport for this job.
    @param signatures 65-byte signatures sorted by signer, strictly ascending.
    """
    job: JobView = self._load(report.job_id)
    assert job.state == RUNNING, "escrow: job not running"
    self._check_report(report, job.provider)
    committee._verify_quorum(committee._job_report_digest(report), signatures, report.epoch)
    self._release(self._apply_report(report, job, empty(ProviderRelease)))


@external
def settle_verified(reports: DynArray[committee.JobReport, committee.MAX_BATCH]) -> uint256:
    """
    @notice Settles reports whose quorum the batch settler has checked (a
            committee-signed Merkle root over them), each as `settle` would.
            A job no longer running (settled alone or in another batch,
            expired) is left alone, so a batch never fails on a race.
    @param reports Reports of the current epoch, proven in the root.
    @return uint256 How many of the jobs this call settled.
    """
    assert msg.sender == self.batch_settler, "escrow: caller not batch settler"
    pending: ProviderRelease = empty(ProviderRelease)
    settled: uint256 = 0
    for report: committee.JobReport in reports:
        job: JobView = self._load(report.job_id)
        if job.state != RUNNING:
            continue
        self._check_report(report, job.provider)
        pending = self._apply_report(report, job, pending)
        settled = unsafe_add(settled, 1)  # at most MAX_BATCH
    self._release(pending)
    return settled


@external
def cancel_job(job_id: uint256):
    """
    @notice The client cancels its job while it is still OPEN; the escrow is
            credited back to it.
    @param job_id An OPEN job created by the caller.
    """
    job: JobView = self._load(job_id)
    assert job.state == OPEN, "escrow: job not open"
    assert msg.sender == job.client, "escrow: caller is not the client"
    self._jobs[job_id].terms = self._with_state(self._jobs[job_id].terms, CANCELLED)
    ledger._credit(ledger.PAYMENT_TOKEN, job.client, job.escrow)
    log JobCancelled(job_id=job_id, client=job.client, refund=job.escrow)


@external
def expire_job(job_id: uint256):
    """
    @notice Anyone ends a job that can no longer be settled in time: an OPEN
            job past its accept deadline, or a RUNNING job past
            started_at + max_duration + SETTLE_GRACE. The client gets the
            whole escrow back; a running job's collateral is unlocked without
            a slash (a silent committee is not the provider's fault) and its
            GPUs are free.
    @param job_id An OPEN or RUNNING job past its deadline.
    """
    job: JobView = self._load(job_id)
    collateral_released: uint256 = 0
    if job.state == OPEN:
        assert block.timestamp > job.accept_deadline, "escrow: deadline not passed"
    elif job.state == RUNNING:
        assert block.timestamp > job.started_at + job.max_duration + governance.settle_grace, "escrow: settle grace not passed"
        collateral_released = job.collateral
    else:
        raise "escrow: job not open or running"
    self._jobs[job_id].terms = self._with_state(self._jobs[job_id].terms, EXPIRED)
    if job.state == RUNNING:
        staking._release_collateral(job.provider, collateral_released, 0, empty(address))
        registry._release_gpus(job.provider, convert(job.gpu_count, uint256))
    ledger._credit(ledger.PAYMENT_TOKEN, job.client, job.escrow)
    log JobExpired(job_id=job_id, previous_state=job.state, refund=job.escrow, collateral_released=collateral_released)


@external
@view
def get_job(job_id: uint256) -> JobView:
    """
    @notice A job, unpacked, with its escrow and collateral. State zero means
            no such job.
    """
    job: JobView = self._load(job_id)
    job.spec_hash = self._jobs[job_id].spec_hash
    return job


@internal
@pure
def _check_report(report: committee.JobReport, provider: address):
    assert report.provider == provider, "escrow: wrong provider"
    assert report.outcome == committee.OUTCOME_COMPLETED or report.outcome == committee.OUTCOME_FAILED, "escrow: unknown outcome"


@internal
def _apply_report(report: committee.JobReport, job: JobView, pending: ProviderRelease) -> ProviderRelease:
    """
    @dev Settles the RUNNING `job` as the checked, quorum-signed `report` says:
         its state, the client's credit, a failure's slash, the event. What
         it owes its provider's shared words and the treasury is added to
         `pending` (written first if it is another provider's) and returned,
         for `_release` to write. Those words are sums, and nothing a report
         does reads them, so writing them late changes no outcome.
    """
    if job.provider != pending.provider:
        self._release(pending)
        pending = ProviderRelease(provider=job.provider, collateral=0, gpus=0, payment=0, fee=0)
    # The sums below add at most MAX_BATCH jobs' packed amounts (16-bit GPU
    # counts, 96-bit collateral, payments below 2**144): unchecked.
    pending.gpus = unsafe_add(pending.gpus, convert(job.gpu_count, uint256))
    provider_payment: uint256 = 0
    protocol_fee: uint256 = 0
    client_refund: uint256 = job.escrow
    slashed: uint256 = 0
    billed_seconds: uint256 = 0
    if report.outcome == committee.OUTCOME_COMPLETED:
        # Unchecked: the packed widths bound the products (16 + 32 bits, then
        # 96 + 48 bits); the fee is staking._bps_round_up's, written out
        # unchecked (at most 1,000 bps of a payment below 2**144), and never
        # exceeds the payment.
        billed_seconds = min(report.gpu_seconds, unsafe_mul(convert(job.gpu_count, uint256), job.max_duration))
        payment: uint256 = unsafe_mul(job.price_per_gpu_second, billed_seconds)
        protocol_fee = unsafe_div(
            unsafe_add(unsafe_mul(payment, governance.protocol_fee_bps), unsafe_sub(governance.BPS, 1)), governance.BPS
        )
        provider_payment = unsafe_sub(payment, protocol_fee)
        pending.fee = unsafe_add(pending.fee, protocol_fee)
        pending.payment = unsafe_add(pending.payment, provider_payment)
        pending.collateral = unsafe_add(pending.collateral, job.collateral)
        # price <= max price and billed seconds <= the cap, so payment <= escrow.
        client_refund = unsafe_sub(job.escrow, payment)
        # RUNNING ^ COMPLETED flips the state field from one to the other (the
        # job is RUNNING, both callers checked): one slot lookup, not two.
        self._jobs[report.job_id].terms ^= convert(RUNNING ^ COMPLETED, uint256) << STATE_SHIFT
    else:
        # collateral >= 1 and slash_bps >= 1, so a slash never rounds to zero.
        slashed = staking._bps_round_up(job.collateral, governance.slash_bps)
        self._jobs[report.job_id].terms ^= convert(RUNNING ^ FAILED, uint256) << STATE_SHIFT
        staking._release_collateral(job.provider, job.collateral, slashed, job.client)
        registry._record_failure(job.provider)
    ledger._credit(ledger.PAYMENT_TOKEN, job.client, client_refund)
    log JobSettled(
        job_id=report.job_id,
        provider=job.provider,
        outcome=report.outcome,
        gpu_seconds=billed_seconds,
        provider_payment=provider_payment,
        protocol_fee=protocol_fee,
        client_refund=client_refund,
        slashed=slashed,
        result_hash=report.result_hash,
        evidence_hash=report.evidence_hash,
    )
    return pending


@internal
def _release(owed: ProviderRelease):
    """
    @dev Writes what settled jobs owe their provider and the treasury: the
         collateral unlocked, the GPUs freed, the payment and the fee.
    """
    if owed.provider == empty(address):
        return
    if owed.collateral != 0:  # a failure's collateral was released with its slash
        staking._release_collateral(owed.provider, owed.collateral, 0, empty(address))
    registry._release_gpus(owed.provider, owed.gpus)
    ledger._credit(ledger.PAYMENT_TOKEN, owed.provider, owed.payment)
    ledger._credit(ledger.PAYMENT_TOKEN, governance.treasury, owed.fee)


@internal
@view
def _load(job_id: uint256) -> JobView:
    terms: uint256 = self._jobs[job_id].terms
    provider_and_collateral: uint256 = self._jobs[job_id].provider_and_collateral
    client_and_price: uint256 = self._jobs[job_id].client_and_price
    gpu_count: uint16 = convert((terms >> 112) & MASK_16, uint16)
    max_price: uint256 = terms & MASK_96
    max_duration: uint256 = (terms >> 128) & MASK_32
    return JobView(
        client=convert(convert(client_and_price & ADDRESS_MASK, uint160), address),
        provider=convert(convert(provider_and_collateral & ADDRESS_MASK, uint160), address),
        state=convert((terms >> STATE_SHIFT) & MASK_8, uint8),
        gpu_class=convert((terms >> 96) & MASK_16, uint16),
        gpu_count=gpu_count,
        max_price_per_gpu_second=max_price,
        price_per_gpu_second=client_and_price >> 160,
        max_duration=max_duration,
        accept_deadline=(terms >> 160) & MASK_48,
        started_at=terms >> STARTED_AT_SHIFT,
        collateral=provider_and_collateral >> 160,
        # Unchecked: 96 + 16 + 32 bits, as create_job escrowed it.
        escrow=unsafe_mul(unsafe_mul(max_price, convert(gpu_count, uint256)), max_duration),
        # Read by get_job alone: every other caller saves a cold read.
        spec_hash=empty(bytes32),
    )


@internal
@view
def _collateral(job_value: uint256) -> uint256:
    """
    @dev job_value * COLLATERAL_BPS / 10,000 * collateral_rate / 1e18, in
         stake-token units, rounded up: at least 1, since every factor is.
    """
    scaled: uint256 = job_value * governance.collateral_bps * governance.collateral_rate
    return (scaled + unsafe_sub(governance.BPS * governance.RATE_SCALE, 1)) // (governance.BPS * governance.RATE_SCALE)


@internal
@pure
def _pack_terms(
    max_price: uint256, gpu_class: uint16, gpu_count: uint16, max_duration: uint256, accept_deadline: uint256, state: uint8
) -> uint256:
    # Every field was range-checked by create_job to fit its width.
    return (
        max_price
        | (convert(gpu_class, uint256) << 96)
        | (convert(gpu_count, uint256) << 112)
        | (max_duration << 128)
        | (accept_deadline << 160)
        | (convert(state, uint256) << STATE_SHIFT)
    )


@internal
@pure
def _with_state(terms: uint256, state: uint8) -> uint256:
    return (terms & ~(MASK_8 << STATE_SHIFT)) | (convert(state, uint256) << STATE_SHIFT)

