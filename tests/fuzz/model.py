"""A pure-Python reference model of GpuMarket's books, in the style of curve-stablecoin's.

Written from the rules of docs/PROTOCOL.md and the NatSpec of each external
function, not from the contract's code. Every action either applies itself to the books
and returns what it paid (`Effects`), or raises `Rejected` with EVERY reason the protocol
has to refuse it in the current state, without touching the books. The state machine then
expects the contract to succeed with the same effects, or to revert with one of those
reasons: which one is the contract's choice of check order, not a protocol rule.

Amounts are token base units; prices are per GPU-second; `now` is the block timestamp
of the next transaction (the state machine sets it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

BPS = 10_000
HOUR = 3_600
DAY = 86_400
# Limits stated in docs/PROTOCOL.md and the contract's NatSpec.
MAX_GPUS = 1_024
MAX_PRICE = 2**96 - 1
MAX_AMOUNT = 2**128 - 1
MAX_JOB_DURATION = 30 * DAY
MAX_ACCEPT_WINDOW = 30 * DAY
# A measurement below half of the class requirement is spoofed hardware.
SPOOF_THRESHOLD_BPS = 5_000
# Failed jobs count towards jail within a window of this length (registry.FAILURE_WINDOW).
FAILURE_WINDOW = 7 * DAY

# Job states and report outcomes, as docs/PROTOCOL.md names them.
OPEN, RUNNING, COMPLETED, FAILED, CANCELLED, EXPIRED = 1, 2, 3, 4, 5, 6
LIVE_STATES = (OPEN, RUNNING)
TERMINAL_STATES = (COMPLETED, FAILED, CANCELLED, EXPIRED)
OUTCOME_COMPLETED, OUTCOME_FAILED = 1, 2

# Fixed-point scale of COLLATERAL_RATE: stake-token units per payment-token unit.
RATE_SCALE = 10**18

# docs/PROTOCOL.md's parameter table: default and inclusive bounds; COLLATERAL_RATE (not in
# the table) converts a job's value in payment tokens to collateral in stake tokens,
# bounds from `set_collateral_rate`'s NatSpec.
DEFAULT_PARAMETERS: dict[str, int] = {
    "min_stake": 1_000 * 10**18,
    "unbonding_period": 7 * DAY,
    "collateral_bps": 2_000,
    "collateral_rate": RATE_SCALE,
    "slash_bps": 10_000,
    "client_share_bps": 5_000,
    "protocol_fee_bps": 250,
    "spoof_slash_bps": 1_000,
    "settle_grace": HOUR,
    "hardware_validity": 24 * HOUR,
    "jail_after_failures": 3,
}
PARAMETER_BOUNDS: dict[str, tuple[int, int]] = {
    "min_stake": (1, MAX_AMOUNT),
    "unbonding_period": (HOUR, 90 * DAY),
    "collateral_bps": (500, BPS),
    "collateral_rate": (1, 10**36),
    "slash_bps": (1, BPS),
    "client_share_bps": (0, BPS),
    "protocol_fee_bps": (0, 1_000),
    "spoof_slash_bps": (0, 5_000),
    "settle_grace": (5 * 60, 7 * DAY),
    "hardware_validity": (HOUR, 30 * DAY),
    "jail_after_failures": (1, 10),
}

NOT_OWNER = "ownable: caller is not the owner"


def bps_round_up(amount: int, bps: int) -> int:
    """ceil(amount * bps / 10,000): rounding favours the protocol and the harmed party."""
    return -(-amount * bps // BPS)


class Rejected(Exception):
    """The protocol refuses the action; `reasons` are the revert strings that may say why."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(" | ".join(reasons))
        self.reasons = tuple(dict.fromkeys(reasons))

    @property
    def pattern(self) -> re.Pattern[str]:
        """Matches exactly one of the reasons (for `ape.reverts`)."""
        return re.compile("^(?:" + "|".join(map(re.escape, self.reasons)) + ")$")


class _Checks:
    """Collects every failed requirement of an action before anything is applied."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def require(self, condition: bool, reason: str) -> None:
        if not condition:
            self.reasons.append(reason)

    def done(self) -> None:
        if self.reasons:
            raise Rejected(self.reasons)


@dataclass
class ProviderBook:
    """One account's provider record and stake."""

    gpu_class: int = 0
    gpu_count: int = 0  # zero: not registered
    # Counts changes of class or count; a hardware report names the version it measured.
    claim_version: int = 0
    price_per_gpu_second: int = 0
    endpoint: str = ""
    verified_until: int = 0
    recent_failures: int = 0  # failed jobs in the window that opened at failure_window_start
    failure_window_start: int = 0
    jailed: bool = False
    # GPUs held by RUNNING jobs: a job is accepted only if it fits in gpu_count minus these.
    gpus_in_use: int = 0
    # claim version -> valid_until of the last report of it accepted (reports of one
    # version must come in increasing valid_until order).
    last_report_valid_until: dict[int, int] = field(default_factory=dict)
    # claim version -> (gpu_class, gpu_count) it claimed: what a report of it measures.
    claims: dict[int, tuple[int, int]] = field(default_factory=dict)
    free: int = 0
    locked: int = 0
    unbonding: int = 0
    release_at: int = 0

    @property
    def registered(self) -> bool:
        return self.gpu_count != 0


@dataclass
class JobBook:
    """One job: its terms, and once accepted, its provider, price and collateral."""

    client: str
    provider: str
    gpu_class: int
    gpu_count: int
    max_price_per_gpu_second: int
    max_duration: int
    accept_deadline: int
    spec_hash: bytes
    state: int = OPEN
    price_per_gpu_second: int = 0
    started_at: int = 0
    collateral: int = 0

    @property
    def escrow(self) -> int:
        return self.max_price_per_gpu_second * self.gpu_count * self.max_duration

    @property
    def billing_cap(self) -> int:
        """GPU-seconds a job can bill at most: gpu_count * max_duration."""
        return self.gpu_count * self.max_duration


@dataclass
class Effects:
    """What an action paid, for comparison with the contract's events and return values."""

    values: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


class MarketModel:
    """The books of one market deployment."""

    def __init__(
        self,
        *,
        owner: str,
        treasury: str,
        stake_token: str,
        payment_token: str,
        class_floors: dict[int, int],
        committee: list[str],
        threshold: int,
        epoch: int,
        now: int,
        wallets: dict[tuple[str, str], int],
    ) -> None:
        self.owner = owner
        self.treasury = treasury
        self.stake_token = stake_token
        self.payment_token = payment_token
        self.class_floor: dict[int, int] = dict(class_floors)
        self.parameters: dict[str, int] = dict(DEFAULT_PARAMETERS)
        self.paused = False
        self.committee: list[str] = list(committee)
        self.threshold = threshold
        self.epoch = epoch
        self.now = now
        self.providers: dict[str, ProviderBook] = {}
        self.jobs: list[JobBook] = []  # job id = index + 1
        self.claimable: dict[tuple[str, str], int] = {}  # (token, account) -> amount
        self.wallets: dict[tuple[str, str], int] = dict(wallets)  # (token, account) -> balance

    # ------------------------------------------------------------------ views

    def provider(self, account: str) -> ProviderBook:
        return self.providers.setdefault(account, ProviderBook())

    def job(self, job_id: int) -> JobBook | None:
        return self.jobs[job_id - 1] if 1 <= job_id <= len(self.jobs) else None

    def job_state(self, job_id: int) -> int:
        job = self.job(job_id)
        return 0 if job is None else job.state

    def expiry_of(self, job: JobBook) -> int:
        """The last timestamp at which `job` cannot be expired yet."""
        if job.state == OPEN:
            return job.accept_deadline
        return job.started_at + job.max_duration + self.parameters["settle_grace"]

    def owed(self, token: str) -> int:
        """Everything the market owes in `token`: stake, live escrow, claimable balances."""
        total = sum(amount for (owed_token, _), amount in self.claimable.items() if owed_token == token)
        if token == self.stake_token:
            total += sum(book.free + book.locked + book.unbonding for book in self.providers.values())
        if token == self.payment_token:
            total += sum(job.escrow for job in self.jobs if job.state in LIVE_STATES)
        return total

    # ------------------------------------------------------------------ books

    def _credit(self, token: str, account: str, amount: int) -> None:
        if amount:
            self.claimable[(token, account)] = self.claimable.get((token, account), 0) + amount

    def _move_wallet(self, token: str, account: str, delta: int) -> None:
        self.wallets[(token, account)] = self.wallets.get((token, account), 0) + delta

    def _check_owner(self, checks: _Checks, sender: str) -> None:
        checks.require(sender == self.owner, NOT_OWNER)

    def _check_quorum(self, checks: _Checks, report_epoch: int, signers: list[str]) -> None:
        """Signers are the addresses the signatures recover to, in the order passed."""
        checks.require(report_epoch == self.epoch, "committee: wrong epoch")
        checks.require(len(signers) >= self.threshold, "committee: not enough signatures")
        as_ints = [int(signer, 16) for signer in signers]
        checks.require(all(a < b for a, b in pairwise([0, *as_ints])), "committee: signers not ascending")
        members = {member.lower() for member in self.committee}
        checks.require(all(signer.lower() in members for signer in signers), "committee: signer not a member")

    def _check_claim(self, checks: _Checks, gpu_class: int, gpu_count: int, price: int, endpoint: str) -> None:
        checks.require(self.class_floor.get(gpu_class, 0) != 0, "governance: unknown gpu class")
        checks.require(1 <= gpu_count <= MAX_GPUS, "registry: gpu count out of range")
        checks.require(1 <= price <= MAX_PRICE, "registry: price out of range")
        checks.require(len(endpoint) != 0, "registry: empty endpoint")

    def _slash_whole_stake(self, book: ProviderBook, slash_bps: int) -> int:
        """Slashes slash_bps of the whole stake, rounded up, from free then unbonding stake.

        Locked collateral stays with its jobs, so the slash is capped at free + unbonding.
        Unbonding stake stays slashable until withdrawn. All of it goes to the treasury.
        """
        amount = min(bps_round_up(book.free + book.locked + book.unbonding, slash_bps), book.free + book.unbonding)
        from_free = min(amount, book.free)
        book.free -= from_free
        book.unbonding -= amount - from_free
        self._credit(self.stake_token, self.treasury, amount)
        return amount

    def _release_collateral(self, job: JobBook, slashed: int) -> int:
        """Ends a job's lock; returns the client's share of `slashed` (rest to the treasury)."""
        book = self.provider(job.provider)
        book.locked -= job.collateral
        book.free += job.collateral - slashed
        if slashed == 0:
            return 0
        client_share = bps_round_up(slashed, self.parameters["client_share_bps"])
        self._credit(self.stake_token, job.client, client_share)
        self._credit(self.stake_token, self.treasury, slashed - client_share)
        return client_share

    # ------------------------------------------------------------------ registry

    def register(self, sender: str, gpu_class: int, gpu_count: int, price: int, endpoint: str) -> Effects:
        checks = _Checks()
        checks.require(not self.provider(sender).registered, "registry: already registered")
        self._check_claim(checks, gpu_class, gpu_count, price, endpoint)
        checks.done()
        book = self.provider(sender)
        book.gpu_class, book.gpu_count, book.price_per_gpu_second, book.endpoint = gpu_class, gpu_count, price, endpoint
        book.claims[0] = (gpu_class, gpu_count)
        return Effects({"claim_version": 0})

    def update_provider(self, sender: str, gpu_class: int, gpu_count: int, price: int, endpoint: str) -> Effects:
        checks = _Checks()
        book = self.provider(sender)
        checks.require(book.registered, "registry: not registered")
        self._check_claim(checks, gpu_class, gpu_count, price, endpoint)
        # The count is what the market sells: never below what running jobs hold.
        checks.require(gpu_count >= book.gpus_in_use, "registry: fewer gpus than in use")
        checks.done()
        if (book.gpu_class, book.gpu_count) != (gpu_class, gpu_count):
            # A new claim version, which needs a report of its own.
            book.claim_version += 1
            book.claims[book.claim_version] = (gpu_class, gpu_count)
            book.verified_until = 0
        book.gpu_class, book.gpu_count, book.price_per_gpu_second, book.endpoint = gpu_class, gpu_count, price, endpoint
        return Effects({"claim_version": book.claim_version})

    def unjail(self, sender: str, provider: str) -> Effects:
        checks = _Checks()
        self._check_owner(checks, sender)
        checks.require(self.provider(provider).jailed, "registry: provider not jailed")
        checks.done()
        book = self.provider(provider)
        book.jailed, book.recent_failures = False, 0
        return Effects()

    # ------------------------------------------------------------------ staking

    def stake(self, sender: str, amount: int) -> Effects:
        checks = _Checks()
        checks.require(amount != 0, "staking: zero amount")
        checks.done()
        self.provider(sender).free += amount
        self._move_wallet(self.stake_token, sender, -amount)
        return Effects()

    def request_unstake(self, sender: str, amount: int) -> Effects:
        checks = _Checks()
        checks.require(amount != 0, "staking: zero amount")
        checks.require(self.provider(sender).free >= amount, "staking: insufficient free stake")
        checks.done()
        book = self.provider(sender)
        book.free -= amount
        book.unbonding += amount
        # One entry: a new request restarts the clock of the whole entry.
        book.release_at = self.now + self.parameters["unbonding_period"]
        return Effects({"unbonding_total": book.unbonding, "release_at": book.release_at})

    def withdraw(self, sender: str) -> Effects:
        book = self.provider(sender)
        checks = _Checks()
        checks.require(book.unbonding != 0, "staking: nothing unbonding")
        if book.unbonding:
            checks.require(self.now >= book.release_at, "staking: unbonding not released")
        checks.done()
        amount, book.unbonding, book.release_at = book.unbonding, 0, 0
        self._move_wallet(self.stake_token, sender, amount)
        return Effects({"amount": amount})

    # ------------------------------------------------------------------ verification

    def submit_hardware_report(
        self,
        provider: str,
        gpu_class: int,
        gpu_count: int,
        claim_version: int,
        measured_throughput: int,
        valid_until: int,
        report_epoch: int,
        signers: list[str],
    ) -> Effects:
        """A report of claim version `claim_version`. Of the current version it verifies
        (at or above the floor) or unverifies; of an outdated one it is accepted only if it
        slashes (spoofed), and never touches the new claim's verification. valid_until lies
        at most HARDWARE_VALIDITY ahead, and increases per claim version."""
        book = self.provider(provider)
        checks = _Checks()
        self._check_quorum(checks, report_epoch, signers)
        checks.require(book.registered, "verification: not registered")
        checks.require(claim_version <= book.claim_version, "verification: unknown claim")
        is_current = claim_version == book.claim_version
        if book.registered and is_current:
            checks.require(
                (gpu_class, gpu_count) == (book.gpu_class, book.gpu_count),
                "verification: claim mismatch",
            )
        checks.require(valid_until > self.now, "verification: report expired")
        checks.require(valid_until <= self.now + self.parameters["hardware_validity"], "verification: too far ahead")
        checks.require(valid_until > book.last_report_valid_until.get(claim_version, 0), "verification: stale report")
        floor = self.class_floor.get(gpu_class, 0)
        checks.require(floor != 0, "verification: unknown gpu class")
        required = floor * gpu_count
        spoofed = measured_throughput * BPS < required * SPOOF_THRESHOLD_BPS
        checks.require(is_current or spoofed, "verification: outdated claim")
        checks.done()

        book.last_report_valid_until[claim_version] = valid_until
        if measured_throughput >= required:
            book.verified_until = valid_until
            return Effects({"verified": True, "verified_until": book.verified_until})
        if is_current:
            book.verified_until = 0
        slashed = 0
        if spoofed:
            slashed = self._slash_whole_stake(book, self.parameters["spoof_slash_bps"])
        return Effects({"verified": False, "required": required, "slashed": slashed})

    # ------------------------------------------------------------------ escrow

    def create_job(
        self,
        sender: str,
        gpu_class: int,
        gpu_count: int,
        max_price: int,
        max_duration: int,
        spec_hash: bytes,
        provider: str,
        accept_deadline: int,
    ) -> Effects:
        checks = _Checks()
        checks.require(not self.paused, "pausable: contract is paused")
        checks.require(self.class_floor.get(gpu_class, 0) != 0, "governance: unknown gpu class")
        checks.require(1 <= gpu_count <= MAX_GPUS, "escrow: gpu count out of range")
        checks.require(1 <= max_price <= MAX_PRICE, "escrow: price out of range")
        checks.require(1 <= max_duration <= MAX_JOB_DURATION, "escrow: duration out of range")
        checks.require(self.now < accept_deadline <= self.now + MAX_ACCEPT_WINDOW, "escrow: deadline out of range")
        checks.require(spec_hash != bytes(32), "escrow: empty spec hash")
        if provider != ZERO_ADDRESS:
            checks.require(self.provider(provider).registered, "registry: not registered")
        checks.done()
        job = JobBook(
            client=sender,
            provider=provider,
            gpu_class=gpu_class,
            gpu_count=gpu_count,
            max_price_per_gpu_second=max_price,
            max_duration=max_duration,
            accept_deadline=accept_deadline,
            spec_hash=spec_hash,
        )
        self.jobs.append(job)
        self._move_wallet(self.payment_token, sender, -job.escrow)
        return Effects({"job_id": len(self.jobs), "escrow": job.escrow})

    def accept_reasons(self, sender: str, job_id: int) -> list[str]:
        """Why `sender` may not take `job_id` now (empty: it may)."""
        checks = _Checks()
        checks.require(not self.paused, "pausable: contract is paused")
        job = self.job(job_id)
        checks.require(job is not None and job.state == OPEN, "escrow: job not open")
        if job is None or job.state != OPEN:
            return checks.reasons
        checks.require(self.now <= job.accept_deadline, "escrow: accept deadline passed")
        checks.require(job.provider in (ZERO_ADDRESS, sender), "escrow: job directed elsewhere")
        book = self.provider(sender)
        checks.require(book.registered, "registry: not registered")
        if not book.registered:
            return checks.reasons
        checks.require(not book.jailed, "registry: provider jailed")
        checks.require(book.gpu_class == job.gpu_class, "registry: wrong gpu class")
        checks.require(book.gpus_in_use + job.gpu_count <= book.gpu_count, "registry: not enough free gpus")
        checks.require(book.verified_until >= self.now, "registry: hardware not verified")
        checks.require(book.price_per_gpu_second <= job.max_price_per_gpu_second, "registry: price above job max")
        collateral = self._collateral(book.price_per_gpu_second, job)
        checks.require(
            book.free >= self.parameters["min_stake"] + collateral,
            "staking: free stake too low",
        )
        return checks.reasons

    def _collateral(self, price: int, job: JobBook) -> int:
        """Job value at the accepted price times COLLATERAL_BPS, in stake tokens at
        COLLATERAL_RATE, rounded up (in the protocol's favour)."""
        scaled = (
            price
            * job.gpu_count
            * job.max_duration
            * self.parameters["collateral_bps"]
            * self.parameters["collateral_rate"]
        )
        return -(-scaled // (BPS * RATE_SCALE))

    def accept_job(self, sender: str, job_id: int) -> Effects:
        reasons = self.accept_reasons(sender, job_id)
        if reasons:
            raise Rejected(reasons)
        job, book = self.job(job_id), self.provider(sender)
        job.provider = sender
        job.price_per_gpu_second = book.price_per_gpu_second
        job.collateral = self._collateral(book.price_per_gpu_second, job)
        job.started_at = self.now
        job.state = RUNNING
        book.gpus_in_use += job.gpu_count
        book.free -= job.collateral
        book.locked += job.collateral
        return Effects({"price_per_gpu_second": job.price_per_gpu_second, "collateral": job.collateral})

    def settle(
        self,
        job_id: int,
        provider: str,
        outcome: int,
        gpu_seconds: int,
        report_epoch: int,
        signers: list[str],
    ) -> Effects:
        job = self.job(job_id)
        checks = _Checks()
        running = job is not None and job.state == RUNNING
        checks.require(running, "escrow: job not running")
        if running:
            checks.require(provider == job.provider, "escrow: wrong provider")
        checks.require(outcome in (OUTCOME_COMPLETED, OUTCOME_FAILED), "escrow: unknown outcome")
        self._check_quorum(checks, report_epoch, signers)
        checks.done()

        book = self.provider(job.provider)
        if outcome == OUTCOME_COMPLETED:
            billed = min(gpu_seconds, job.billing_cap)
            payment = job.price_per_gpu_second * billed
            fee = bps_round_up(payment, self.parameters["protocol_fee_bps"])
            job.state = COMPLETED
            self._release_collateral(job, 0)
            # Completed jobs leave the failure count alone (self-dealt ones cannot wash it).
            self._credit(self.payment_token, job.provider, payment - fee)
            self._credit(self.payment_token, self.treasury, fee)
            refund, slashed, client_share, jailed_now, window_reopened = job.escrow - payment, 0, 0, False, False
        else:
            billed = payment = fee = 0
            slashed = bps_round_up(job.collateral, self.parameters["slash_bps"])
            job.state = FAILED
            client_share = self._release_collateral(job, slashed)
            window_reopened = book.failure_window_start != 0 and self.now >= book.failure_window_start + FAILURE_WINDOW
            if self.now >= book.failure_window_start + FAILURE_WINDOW:
                # The last window has closed: a new one opens at this failure.
                book.failure_window_start, book.recent_failures = self.now, 0
            book.recent_failures += 1
            # Jailed at JAIL_AFTER_FAILURES failures in one window (counted while jailed too).
            jailed_now = not book.jailed and book.recent_failures >= self.parameters["jail_after_failures"]
            book.jailed = book.jailed or jailed_now
            refund = job.escrow
        # Either way the job's GPUs are free again.
        book.gpus_in_use -= job.gpu_count
        self._credit(self.payment_token, job.client, refund)
        return Effects(
            {
                "gpu_seconds": billed,
                "provider_payment": payment - fee,
                "protocol_fee": fee,
                "client_refund": refund,
                "slashed": slashed,
                "client_share": client_share,
                "jailed_now": jailed_now,
                "window_reopened": window_reopened,
                "recent_failures": book.recent_failures,
            }
        )

    def cancel_job(self, sender: str, job_id: int) -> Effects:
        job = self.job(job_id)
        checks = _Checks()
        checks.require(job is not None and job.state == OPEN, "escrow: job not open")
        if job is not None:
            checks.require(sender == job.client, "escrow: caller is not the client")
        checks.done()
        job.state = CANCELLED
        self._credit(self.payment_token, job.client, job.escrow)
        return Effects({"refund": job.escrow})

    def expire_job(self, job_id: int) -> Effects:
        job = self.job(job_id)
        checks = _Checks()
        if job is not None and job.state == OPEN:
            checks.require(self.now > self.expiry_of(job), "escrow: deadline not passed")
        elif job is not None and job.state == RUNNING:
            checks.require(self.now > self.expiry_of(job), "escrow: settle grace not passed")
        else:
            checks.require(False, "escrow: job not open or running")
        checks.done()
        previous_state, released = job.state, 0
        if job.state == RUNNING:
            # A silent committee is not the provider's fault: no slash.
            released = job.collateral
            self._release_collateral(job, 0)
            self.provider(job.provider).gpus_in_use -= job.gpu_count
        job.state = EXPIRED
        self._credit(self.payment_token, job.client, job.escrow)
        return Effects({"previous_state": previous_state, "refund": job.escrow, "collateral_released": released})

    # ------------------------------------------------------------------ ledger

    def claim(self, sender: str, token: str) -> Effects:
        amount = self.claimable.get((token, sender), 0)
        checks = _Checks()
        checks.require(amount != 0, "ledger: nothing to claim")
        checks.done()
        del self.claimable[(token, sender)]
        self._move_wallet(token, sender, amount)
        return Effects({"amount": amount})

    # ------------------------------------------------------------------ governance

    def set_parameter(self, sender: str, name: str, value: int) -> Effects:
        low, high = PARAMETER_BOUNDS[name]
        checks = _Checks()
        self._check_owner(checks, sender)
        checks.require(low <= value <= high, "governance: value out of bounds")
        checks.done()
        old, self.parameters[name] = self.parameters[name], value
        return Effects({"old_value": old})

    def set_treasury(self, sender: str, new_treasury: str) -> Effects:
        checks = _Checks()
        self._check_owner(checks, sender)
        checks.require(new_treasury != ZERO_ADDRESS, "governance: zero treasury")
        checks.done()
        # Amounts already credited stay claimable by the old treasury.
        self.treasury = new_treasury
        return Effects()

    def set_gpu_class(self, sender: str, gpu_class: int, floor_per_gpu: int) -> Effects:
        checks = _Checks()
        self._check_owner(checks, sender)
        checks.require(gpu_class != 0, "governance: class id zero")
        checks.require(floor_per_gpu <= MAX_AMOUNT, "governance: floor out of bounds")
        checks.done()
        self.class_floor[gpu_class] = floor_per_gpu
        return Effects()

    def pause(self, sender: str) -> Effects:
        checks = _Checks()
        self._check_owner(checks, sender)
        checks.require(not self.paused, "pausable: contract is paused")
        checks.done()
        self.paused = True
        return Effects()

    def unpause(self, sender: str) -> Effects:
        checks = _Checks()
        self._check_owner(checks, sender)
        checks.require(self.paused, "pausable: contract is not paused")
        checks.done()
        self.paused = False
        return Effects()

    def set_committee(self, sender: str, members: list[str], threshold: int) -> Effects:
        checks = _Checks()
        self._check_owner(checks, sender)
        checks.require(len(members) != 0, "committee: no members")
        checks.require(1 <= threshold <= len(members), "committee: bad threshold")
        checks.require(threshold * 2 > len(members), "committee: no majority threshold")
        checks.require(ZERO_ADDRESS not in members, "committee: zero address member")
        lowered = [member.lower() for member in members]
        checks.require(len(set(lowered)) == len(lowered), "committee: duplicate member")
        checks.done()
        self.committee, self.threshold = list(members), threshold
        self.epoch += 1
        return Effects({"epoch": self.epoch})
