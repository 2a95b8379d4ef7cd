"""Stateful fuzzing of GpuMarket: random sequences of every user action against model.py.

Each hypothesis example starts from the module's freshly deployed market (a chain
snapshot), runs random actions and time jumps, and after every step checks that

1. tokens are conserved: each token's balance in the market equals free + locked +
   unbonding stake (stake token) + escrow of OPEN/RUNNING jobs (payment token) + every
   claimable balance, and each of those numbers equals the reference model's;
2. every job is in exactly one of the six states, and a terminal state never changes;
3. each provider's locked stake equals the collateral of its RUNNING jobs;
4. each provider's GPUs in use (the contract's gpus_in_use) are the GPUs of its RUNNING
   jobs, and never more than it claims.

Actions the protocol refuses in the current state are attempted too: the model names the
reasons, the contract must revert with one of them, and since the model did not change,
the next invariant check proves the contract did not either. Successful actions must
emit the events, return the values and move the wallets the model predicts. The
teardown drives every job to a terminal state, withdraws and claims everything, and
checks that nothing but free stake is left in the market.

Each step is one to three weighted actions (see `MarketMachine.act`). Examples and steps
come from the hypothesis profile (GPUMARKET_HYPOTHESIS_PROFILE); run with `-s` to see how
often each action succeeded or was refused, and why.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from typing import Any

import ape
import pytest
from eth_abi import encode as abi_encode
from eth_keys import keys
from eth_utils import keccak
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from fuzz.model import (
    BPS,
    DAY,
    DEFAULT_PARAMETERS,
    FAILURE_WINDOW,
    HOUR,
    LIVE_STATES,
    MAX_ACCEPT_WINDOW,
    MAX_GPUS,
    MAX_JOB_DURATION,
    MAX_PRICE,
    OPEN,
    OUTCOME_COMPLETED,
    OUTCOME_FAILED,
    PARAMETER_BOUNDS,
    RUNNING,
    TERMINAL_STATES,
    ZERO_ADDRESS,
    Effects,
    MarketModel,
    Rejected,
)
from fuzz.views import ViewReader
from gpumarket.signing import eip712
from gpumarket.signing.eip712 import Domain, HardwareReport, JobReport
from helpers.committee import oracle_key
from helpers.constants import CLASS_FLOORS, CPU_DEV, H100, TOKEN

# Oracle keys that committees are drawn from; the deployment's committee is keys 0..2.
ORACLE_POOL_SIZE = 8
UNKNOWN_CLASS = 7
# Governance may set MIN_STAKE up to 2**128 - 1 and COLLATERAL_RATE up to 1e36; random
# in-bounds values (not the edges) stay where jobs can still be taken.
USEFUL_HIGH = {"min_stake": 3_000 * TOKEN, "collateral_rate": 4 * 10**18}
RESULT_HASH, EVIDENCE_HASH = b"\x11" * 32, b"\x22" * 32

# ---------------------------------------------------------------------------- strategies

PROVIDER = st.integers(0, 2)
CLIENT = st.integers(0, 2)
PICK = st.integers(0, 2**16)
AS_OWNER = st.sampled_from([True] * 5 + [False])
EDGE = st.sampled_from([None] * 3 + ["low", "high"])
# Which job an action targets: one in the state the action needs ("live"), any job at
# all (terminal ones included: replays), or an id that does not exist.
JOB_PICK = st.tuples(st.sampled_from(["live"] * 4 + ["any", "missing"]), PICK)
PRICE = st.one_of(st.integers(1, 1_000), st.integers(1, 10**15))
CLAIM = st.tuples(st.sampled_from([CPU_DEV, H100]), st.integers(1, 4), PRICE)
CLAIM_MUTATION = st.sampled_from(
    [None] * 6 + ["unknown_class", "zero_count", "too_many_gpus", "zero_price", "price_too_high", "empty_endpoint"]
)
# A job term made invalid, or set to its largest valid value: (now, an unregistered
# account) -> (term, value).
JOB_MUTATIONS: dict[str, Callable[[int, str], tuple[str, Any]]] = {
    "unknown_class": lambda now, _: ("gpu_class", UNKNOWN_CLASS),
    "zero_count": lambda now, _: ("gpu_count", 0),
    "too_many_gpus": lambda now, _: ("gpu_count", MAX_GPUS + 1),
    "zero_price": lambda now, _: ("max_price", 0),
    "price_too_high": lambda now, _: ("max_price", MAX_PRICE + 1),
    "zero_duration": lambda now, _: ("max_duration", 0),
    "duration_too_long": lambda now, _: ("max_duration", MAX_JOB_DURATION + 1),
    "longest_duration": lambda now, _: ("max_duration", MAX_JOB_DURATION),
    "deadline_now": lambda now, _: ("accept_deadline", now),
    "deadline_too_far": lambda now, _: ("accept_deadline", now + MAX_ACCEPT_WINDOW + 1),
    "longest_window": lambda now, _: ("accept_deadline", now + MAX_ACCEPT_WINDOW),
    "empty_spec": lambda now, _: ("spec_hash", bytes(32)),
    "unregistered_provider": lambda now, unregistered: ("provider", unregistered),
}
# Ways to get a report's signatures wrong (see MarketMachine._signed).
QUORUM_FAULTS = ["old_epoch", "too_few", "outsiders", "unsorted", "other_report"]
# At most one fault per report, so that each refusal has one cause.
HARDWARE_FAULT = st.sampled_from(
    [None] * 12 + QUORUM_FAULTS + ["expired", "stale", "mismatch", "unknown_claim", "far_ahead", "far_ahead"]
)
SETTLE_FAULT = st.sampled_from([None] * 10 + QUORUM_FAULTS + ["wrong_provider", "unknown_outcome", "zero_outcome"])


def _action(action: str, weight: int = 1, /, **arguments: Any) -> tuple[str, int, Any]:
    return action, weight, st.fixed_dictionaries(arguments)


def _weighted(*actions: tuple[str, int, Any]) -> Any:
    """(action, arguments) pairs, each action drawn in proportion to its weight.

    Not st.one_of over repeated strategies: it drops the repeats, so every action would
    weigh the same."""
    names = [name for name, weight, _ in actions for _ in range(weight)]
    arguments = {name: strategy for name, _, strategy in actions}
    return st.sampled_from(names).flatmap(lambda name: st.tuples(st.just(name), arguments[name]))


# Every action, weighted: jobs get about a third of the draws, since a job's life takes
# several of them; unpausing is likelier than pausing, so markets are mostly open.
ACTIONS = _weighted(
    _action("register", 2, index=PROVIDER, claim=CLAIM, mutation=CLAIM_MUTATION),
    _action(
        "update_provider",
        3,
        index=PROVIDER,
        claim=CLAIM,
        same_hardware=st.booleans(),
        # A GPU count at, or one below, the GPUs running jobs hold (the boundary update_provider enforces).
        count=st.sampled_from([None] * 2 + ["in_use", "below_in_use"]),
        mutation=CLAIM_MUTATION,
    ),
    _action("stake", 4, index=PROVIDER, amount=st.one_of(st.integers(1, 3_000 * TOKEN), st.integers(0, 1_000))),
    _action(
        "request_unstake",
        4,
        index=PROVIDER,
        share_bps=st.integers(0, BPS),
        mode=st.sampled_from(["share"] * 3 + ["all", "too_much", "zero"]),
    ),
    _action("withdraw", 2, index=PROVIDER),
    _action(
        "submit_hardware_report",
        6,
        index=PROVIDER,
        kind=st.sampled_from(["pass"] * 3 + ["below", "spoof"]),
        # Mostly the claim as it stands; sometimes one the provider has changed since, then
        # mostly a spoof report (the only kind of an outdated claim that applies).
        version=st.sampled_from(["current"] * 2 + ["outdated", "outdated_spoof", "outdated_spoof"]),
        position=PICK,
        edge=EDGE,
        # Capped at HARDWARE_VALIDITY (further ahead is the "far_ahead" fault), so often exactly it.
        valid_for=st.integers(1, 2 * DAY),
        fault=HARDWARE_FAULT,
    ),
    _action(
        "create_job",
        10,
        client=CLIENT,
        shape=st.sampled_from(["fit"] * 2 + ["fit_free", "random"]),
        offered_by=PROVIDER,
        directed=st.booleans(),
        size=PICK,
        price_offset=st.integers(0, 10**14),
        claim=CLAIM,
        duration=st.one_of(st.integers(1, 2 * HOUR), st.integers(1, 2 * DAY)),
        window=st.integers(1, 2 * DAY),
        mutation=st.sampled_from([None] * 2 * len(JOB_MUTATIONS) + sorted(JOB_MUTATIONS)),
    ),
    _action(
        "accept_job", 8, pick=JOB_PICK, caller=st.sampled_from(["eligible"] * 3 + ["provider", "client"]), index=PICK
    ),
    _action(
        "settle",
        8,
        pick=JOB_PICK,
        outcome=st.sampled_from([OUTCOME_COMPLETED, OUTCOME_FAILED]),
        billing_bps=st.integers(0, 2 * BPS),
        edge=st.sampled_from([None] * 4 + ["zero", "cap", "over_cap", "max_uint"]),
        fault=SETTLE_FAULT,
    ),
    _action("cancel_job", 2, pick=JOB_PICK, by_client=st.sampled_from([True] * 4 + [False]), index=CLIENT),
    _action("expire_job", 2, pick=JOB_PICK),
    _action("claim", 4, owed=st.sampled_from([True] * 3 + [False]), index=PICK, token_index=st.integers(0, 1)),
    _action(
        "set_parameter",
        3,
        name=st.sampled_from(sorted(PARAMETER_BOUNDS)),
        position=st.integers(0, 2**64),
        edge=st.sampled_from([None] * 4 + ["low", "high", "below", "above"]),
        as_owner=AS_OWNER,
    ),
    _action("set_treasury", 1, index=st.integers(0, 2), as_owner=AS_OWNER),
    _action(
        "set_gpu_class",
        1,
        gpu_class=st.sampled_from([CPU_DEV, H100, H100, 3, 0]),
        floor=st.sampled_from(["change"] * 3 + ["remove", "out_of_bounds"]),
        position=PICK,
        as_owner=AS_OWNER,
    ),
    _action("pause", 1, as_owner=AS_OWNER),
    _action("unpause", 3, as_owner=AS_OWNER),
    _action("unjail", 1, index=PROVIDER, as_owner=AS_OWNER),
    _action(
        "rotate_committee",
        2,
        members=st.lists(st.integers(0, ORACLE_POOL_SIZE - 1), min_size=1, max_size=5, unique=True),
        extra=st.integers(0, 4),
        mutation=st.sampled_from(
            [None] * 4 + ["minority", "too_high", "duplicate", "zero_member", "empty", "not_owner"]
        ),
    ),
    _action(
        "advance_time",
        10,
        to_deadline=st.sampled_from([None, None, "job", "release", "verified", "failure_window", "failure_window"]),
        seconds=st.one_of(st.integers(1, 120), st.integers(1, 6 * HOUR), st.integers(1, 3 * DAY)),
        index=PICK,
        delta=st.sampled_from([-1, 0, 1]),
        probe=st.booleans(),
    ),
)


def _within(low: int, high: int, position: int, edge: str | None) -> int:
    """A value in [low, high]: an end when `edge` says so, else picked by `position`."""
    if edge == "low":
        return low
    if edge == "high":
        return high
    return low + position % (high - low + 1)


def _step(decorator: Callable[..., Any], **strategies: Any) -> Callable[[Callable[..., None]], Any]:
    """A rule, initialize rule or invariant whose failure skips the teardown's drain.

    Hypothesis runs teardown() after a failure too; draining a broken market would raise
    a second, different error and hide the first one.
    """

    def decorate(action: Callable[..., None]) -> Any:
        @functools.wraps(action)
        def tracked(self: MarketMachine, **kwargs: Any) -> None:
            self.clean, self.current_step = False, action.__name__
            action(self, **kwargs)
            self.clean = True

        return decorator(**strategies)(tracked)

    return decorate


# ---------------------------------------------------------------------------- signing


def _sign_digest(key: bytes, digest: bytes) -> bytes:
    """65 bytes r || s || v, v in {27, 28}, low s (eth_keys signs canonically)."""
    signature = keys.PrivateKey(key).sign_msg_hash(digest)
    return signature.r.to_bytes(32, "big") + signature.s.to_bytes(32, "big") + bytes([signature.v + 27])


def _recover(digest: bytes, signature: bytes) -> str:
    r, s, v = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big"), signature[64] - 27
    return keys.Signature(vrs=(v, r, s)).recover_public_key_from_msg_hash(digest).to_checksum_address()


def _job_report_digest(domain: Domain, fields: tuple[Any, ...]) -> bytes:
    """EIP-712 digest of a JobReport with any uint8 outcome (the dataclass admits only 1 and 2)."""
    encoded = abi_encode(
        ["bytes32", "uint256", "address", "uint8", "uint256", "bytes32", "bytes32", "uint256"],
        [eip712.JOB_REPORT_TYPEHASH, *fields],
    )
    return keccak(b"\x19\x01" + eip712.domain_separator(domain) + keccak(encoded))


# ---------------------------------------------------------------------------- the machine


class MarketMachine(RuleBasedStateMachine):
    """Drives one deployment; the `market_machine` fixture sets these class attributes."""

    chain: Any
    market: Any
    stake_token: Any
    payment_token: Any
    owner: Any
    attacker: Any
    keeper: Any
    providers: list[Any]
    clients: list[Any]
    treasuries: list[Any]
    views: ViewReader
    domain: Domain
    oracle_keys: dict[str, bytes]  # address -> key, the whole pool
    initial_committee: list[str]
    initial_threshold: int
    # How often each action succeeded or was refused, and why (printed by the test, `-s`).
    outcomes: Counter[str]

    def __init__(self) -> None:
        super().__init__()
        self.snapshot = self.chain.snapshot()
        self.clean, self.current_step = True, "start"
        self.tokens = list({str(t): t for t in (self.stake_token, self.payment_token)}.values())
        # Everyone who may ever be owed or hold tokens: conservation sums over all of them.
        self.accounts = [*self.providers, *self.clients, *self.treasuries, self.keeper, self.attacker, self.owner]
        self.model = MarketModel(
            owner=str(self.owner),
            treasury=str(self.treasuries[0]),
            stake_token=str(self.stake_token),
            payment_token=str(self.payment_token),
            class_floors=CLASS_FLOORS,
            committee=self.initial_committee,
            threshold=self.initial_threshold,
            epoch=self.views(self.market, "epoch"),
            now=self.chain.pending_timestamp,
            wallets={
                (str(token), str(account)): self.views(token, "balanceOf", account)
                for token in self.tokens
                for account in self.accounts
            },
        )
        # (members, threshold, epoch) of the committee before the last rotation.
        self.previous_committee: tuple[list[str], int, int] | None = None
        self.terminal_seen: dict[int, int] = {}
        # The contract's books as last read; None once a transaction succeeded since.
        self.books: dict[str, Any] | None = None

    # ------------------------------------------------------------------ plumbing

    def _act(self, expect: Callable[[], Effects], send: Callable[[], Any]) -> tuple[Effects, Any] | None:
        """Applies an action to the model, then to the contract at the model's clock.

        If the model refuses it, the contract must revert with one of the model's reasons.
        Returns (effects, receipt) when the action succeeded, after checking that every
        wallet the model says it moves moved so (the teardown checks all the others).
        """
        wallets_before = dict(self.model.wallets)
        try:
            effects = expect()
        except Rejected as rejected:
            # Every transaction runs at the model's clock (titanoboa's own clock ticks with
            # the wall clock, and a `pending_timestamp +=` only lasts one block).
            self.chain.pending_timestamp = self.model.now
            with ape.reverts(rejected.pattern) as revert:
                send()
            self.outcomes[f"{self.current_step}: {revert.value.revert_message}"] += 1
            return None
        self.chain.pending_timestamp = self.model.now
        receipt = send()
        self.outcomes[f"{self.current_step}: done"] += 1
        self.books = None  # stale: the next invariant check reads everything again
        for (token, account), balance in self.model.wallets.items():
            if balance != wallets_before.get((token, account)):
                assert self.views(self._token(token), "balanceOf", account) == balance, (
                    f"wallet of {account} in {token}"
                )
        return effects, receipt

    def _token(self, address: str) -> Any:
        return next(token for token in self.tokens if str(token) == address)

    def _account(self, address: str) -> Any:
        return next(account for account in self.accounts if str(account) == address)

    def _assert_emitted(self, receipt: Any, event: str, count: int = 1, **fields: Any) -> None:
        logs = receipt.decode_logs(getattr(self.market, event))
        assert len(logs) == count, f"{event}: {len(logs)} emitted, expected {count}"
        for log in logs:
            for name, expected in fields.items():
                assert log.event_arguments[name] == expected, (
                    f"{event}.{name}: {log.event_arguments[name]} != {expected}"
                )

    def _job_id(self, pick: tuple[str, int], states: tuple[int, ...], due: bool | None = None) -> int:
        """The job a ("live" | "any" | "missing" | "exact", index) pick names.

        "live" prefers a job in `states` whose deadline (see MarketModel.expiry_of) has
        passed (`due`) or not (`not due`), then any job in `states`, then any job."""
        mode, index = pick
        if mode == "exact":
            return index
        count = len(self.model.jobs)
        if mode == "missing" or count == 0:
            return (0, count + 1)[index % 2]
        in_state = [i for i, job in enumerate(self.model.jobs, 1) if job.state in states]
        on_time = [
            i for i in in_state if due is None or (self.model.now > self.model.expiry_of(self.model.job(i))) == due
        ]
        candidates = (on_time or in_state) if mode == "live" else []
        candidates = candidates or list(range(1, count + 1))
        return candidates[index % len(candidates)]

    def _quorum_keys(self, members: list[str], threshold: int) -> list[bytes]:
        return [self.oracle_keys[member] for member in members[:threshold]]

    def _signed(
        self, fault: str | None, build: Callable[[int], tuple[Any, bytes, bytes]]
    ) -> tuple[Any, int, list[bytes], list[str]]:
        """Signs a report, wrongly if `fault` is a QUORUM_FAULTS entry.

        `build(epoch)` gives the report to submit, its digest, and the digest of a different
        report (for signatures over the wrong message). Returns (report, its epoch,
        signatures, signers), signers being the addresses the signatures recover to against
        the submitted report, in the order passed: what the model judges the quorum by.
        """
        model = self.model
        epoch, signing_keys = model.epoch, self._quorum_keys(model.committee, model.threshold)
        if fault == "old_epoch":
            if self.previous_committee is None:
                epoch -= 1
            else:
                members, threshold, epoch = self.previous_committee
                signing_keys = self._quorum_keys(members, threshold)
        elif fault == "too_few":
            signing_keys = signing_keys[:-1]
        elif fault == "outsiders":
            outsiders = [key for address, key in self.oracle_keys.items() if address not in model.committee]
            signing_keys = outsiders[: len(signing_keys)]
        report, digest, other_digest = build(epoch)
        if fault == "other_report":
            signatures = [_sign_digest(key, other_digest) for key in signing_keys]
            signed = [(_recover(digest, signature), signature) for signature in signatures]
        else:
            signed = [(eip712.address_of(key), _sign_digest(key, digest)) for key in signing_keys]
        signed.sort(key=lambda pair: int(pair[0], 16))
        if fault == "unsorted":
            signed = signed[::-1] if len(signed) > 1 else signed * 2
        return report, epoch, [signature for _, signature in signed], [signer for signer, _ in signed]

    # ------------------------------------------------------------------ rules

    @_step(
        initialize,
        ready=st.lists(st.sampled_from([True, True, False]), min_size=3, max_size=3),
        claims=st.lists(CLAIM, min_size=3, max_size=3),
        extra=st.integers(100 * TOKEN, 1_000 * TOKEN),
        jobs=st.lists(
            st.tuples(CLIENT, PROVIDER, st.sampled_from([True, True, False]), st.integers(1, 4)), min_size=1, max_size=4
        ),
        tuning=st.lists(st.tuples(st.sampled_from(sorted(PARAMETER_BOUNDS)), st.integers(0, 2**64), EDGE), max_size=3),
    )
    def start_with_ready_providers_and_jobs(
        self,
        ready: list[bool],
        claims: list[tuple[int, int, int]],
        extra: int,
        jobs: list[tuple[int, int, bool, int]],
        tuning: list[tuple[str, int, str | None]],
    ) -> None:
        """Some providers registered, verified and staked, some jobs open or running, and
        some parameters away from their defaults: so that every example has jobs to settle
        or expire from its first step, and paths such as jailing (JAIL_AFTER_FAILURES
        failures in a window) come within reach of a few settlements. These are the same
        actions as the rule's, checked the same way."""
        for index in (i for i, is_ready in enumerate(ready) if is_ready):
            self._register(index, claims[index], None)
            self._submit_hardware_report(index, "pass", "current", 0, "low", DAY, None)
            self._stake(index, DEFAULT_PARAMETERS["min_stake"] + extra)
        for client, offered_by, accept, gpus in jobs:
            book = self.model.provider(str(self.providers[offered_by]))
            if not book.registered:
                continue
            job_id = len(self.model.jobs) + 1
            spec_hash = keccak(text=f"job spec {job_id}")
            # Sized to the provider's claim, so some providers start with all their GPUs in use.
            gpu_count = min(gpus, book.gpu_count)
            self._post_job(
                client,
                book.gpu_class,
                gpu_count,
                book.price_per_gpu_second,
                HOUR,
                ZERO_ADDRESS,
                self.model.now + DAY,
                spec_hash,
            )
            if accept and self.model.job(job_id) is not None:
                self._accept_job(("exact", job_id), "eligible", offered_by)
        for name, position, edge in tuning:
            self._set_parameter(name, position, edge, as_owner=True)

    @_step(rule, actions=st.lists(ACTIONS, min_size=1, max_size=3))
    def act(self, actions: list[tuple[str, dict[str, Any]]]) -> None:
        """One to three actions, the books checked after each.

        One rule for every action, not one rule each: hypothesis switches whole rules off
        at random per example (swarm testing), and with a rule per action most examples
        lacked `accept_job` or `settle`, so few jobs lived past their start.
        """
        for index, (name, arguments) in enumerate(actions):
            if index:
                self._check_books()
            self.current_step = name
            getattr(self, f"_{name}")(**arguments)

    # ------------------------------------------------------------------ time

    def _advance_time(self, to_deadline: str | None, seconds: int, index: int, delta: int, probe: bool) -> None:
        """Jumps `seconds` ahead, or to one second before, on, or after a deadline, where
        off-by-one bugs live; with `probe`, then tries what that deadline governs:

        - a live job's (accept deadline, or start + duration + grace): accept it if OPEN,
          then expire it;
        - an unbonding entry's release: withdraw it;
        - a verification's end: accept an open job as that provider;
        - a failure window's end (FAILURE_WINDOW after it opened): fail a running job of
          that provider, which counts in the old window or opens a new one.
        """
        if to_deadline is None:
            self.model.now += seconds
            return
        model, targets = self.model, []
        if to_deadline == "job":
            targets = [
                (model.expiry_of(job), functools.partial(self._probe_job, job_id, index))
                for job_id, job in enumerate(model.jobs, 1)
                if job.state in LIVE_STATES
            ]
        for provider_index, account in enumerate(self.providers):
            book = model.provider(str(account))
            if to_deadline == "release" and book.unbonding:
                targets.append((book.release_at, functools.partial(self._withdraw, provider_index)))
            elif to_deadline == "verified" and book.verified_until:
                targets.append((book.verified_until, functools.partial(self._probe_verification, account)))
            elif to_deadline == "failure_window" and book.recent_failures and self._running_jobs_of(str(account)):
                # A failure at start + FAILURE_WINDOW opens a new window; one a second earlier does not.
                closes = book.failure_window_start + FAILURE_WINDOW
                targets.append((closes, functools.partial(self._probe_failure_window, str(account))))
        later = [(deadline + delta, action) for deadline, action in targets if deadline + delta > model.now]
        if not later:
            return
        model.now, action = later[index % len(later)]
        if probe:
            action()

    def _probe_job(self, job_id: int, index: int) -> None:
        if self.model.job_state(job_id) == OPEN:
            self._accept_job(("exact", job_id), "eligible", index)
            self._check_books()
        self._expire(job_id)

    def _probe_verification(self, account: Any) -> None:
        open_jobs = [job_id for job_id, job in enumerate(self.model.jobs, 1) if job.state == OPEN]
        if open_jobs:
            self._accept(open_jobs[0], account)

    def _running_jobs_of(self, provider: str) -> list[int]:
        return [
            job_id for job_id, job in enumerate(self.model.jobs, 1) if job.state == RUNNING and job.provider == provider
        ]

    def _probe_failure_window(self, provider: str) -> None:
        """Fails a job of `provider` as its failure window closes (or just after)."""
        running = self._running_jobs_of(provider)
        if running:
            self._settle(("exact", running[0]), OUTCOME_FAILED, 0, None, None)

    # ------------------------------------------------------------------ provider actions

    def _register(self, index: int, claim: tuple[int, int, int], mutation: str | None, update: bool = False) -> None:
        account = self.providers[index]
        gpu_class, gpu_count, price = claim
        endpoint = f"http://provider{index}.example:8700/{price}"
        if mutation == "unknown_class":
            gpu_class = UNKNOWN_CLASS
        elif mutation == "zero_count":
            gpu_count = 0
        elif mutation == "too_many_gpus":
            gpu_count = MAX_GPUS + 1
        elif mutation == "zero_price":
            price = 0
        elif mutation == "price_too_high":
            price = MAX_PRICE + 1
        elif mutation == "empty_endpoint":
            endpoint = ""
        method = "update_provider" if update else "register"
        version_before = self.model.provider(str(account)).claim_version
        done = self._act(
            lambda: getattr(self.model, method)(str(account), gpu_class, gpu_count, price, endpoint),
            lambda: getattr(self.market, method)(gpu_class, gpu_count, price, endpoint, sender=account),
        )
        if done:
            effects, receipt = done
            fields = {
                "provider": str(account),
                "gpu_class": gpu_class,
                "gpu_count": gpu_count,
                "price_per_gpu_second": price,
                "endpoint": endpoint,
            }
            if update:
                self.outcomes[
                    f"{self.current_step}: done, claim version "
                    f"{'changed' if effects['claim_version'] != version_before else 'kept'}"
                ] += 1
                self._assert_emitted(receipt, "ProviderUpdated", claim_version=effects["claim_version"], **fields)
            else:
                self._assert_emitted(receipt, "ProviderRegistered", **fields)

    def _update_provider(
        self, index: int, claim: tuple[int, int, int], same_hardware: bool, count: str | None, mutation: str | None
    ) -> None:
        if count is not None:
            # The provider whose running jobs hold the most GPUs (ties: the drawn one first).
            order = [(index + offset) % len(self.providers) for offset in range(len(self.providers))]
            index = max(order, key=lambda i: self.model.provider(str(self.providers[i])).gpus_in_use)
        book = self.model.provider(str(self.providers[index]))
        if same_hardware and book.registered:
            # Only price and endpoint change: the verification must survive.
            claim = (book.gpu_class, book.gpu_count, claim[2])
        if count is not None and book.gpus_in_use:
            claim = (claim[0], book.gpus_in_use - (count == "below_in_use"), claim[2])
        self._register(index, claim, mutation, update=True)

    def _stake(self, index: int, amount: int) -> None:
        account = self.providers[index]
        done = self._act(
            lambda: self.model.stake(str(account), amount), lambda: self.market.stake(amount, sender=account)
        )
        if done:
            self._assert_emitted(done[1], "Staked", provider=str(account), amount=amount)

    def _request_unstake(self, index: int, share_bps: int, mode: str) -> None:
        account = self.providers[index]
        free = self.model.provider(str(account)).free
        amount = {"share": free * share_bps // BPS, "all": free, "too_much": free + 1, "zero": 0}[mode]
        done = self._act(
            lambda: self.model.request_unstake(str(account), amount),
            lambda: self.market.request_unstake(amount, sender=account),
        )
        if done:
            effects, receipt = done
            self._assert_emitted(receipt, "UnstakeRequested", provider=str(account), amount=amount, **effects.values)

    def _withdraw(self, index: int) -> None:
        account = self.providers[index]
        done = self._act(lambda: self.model.withdraw(str(account)), lambda: self.market.withdraw(sender=account))
        if done:
            effects, receipt = done
            assert receipt.return_value == effects["amount"]
            self._assert_emitted(receipt, "Withdrawn", provider=str(account), amount=effects["amount"])

    def _submit_hardware_report(
        self, index: int, kind: str, version: str, position: int, edge: str | None, valid_for: int, fault: str | None
    ) -> None:
        """A report of the provider's current claim, or of one it has changed since
        (`version`): an outdated claim's report applies only if it is a spoof, and slashes."""
        account = str(self.providers[index])
        book = self.model.provider(account)
        claim_version = book.claim_version
        if version != "current" and book.claim_version:
            claim_version = position % book.claim_version
            kind = "spoof" if version == "outdated_spoof" else kind
        gpu_class, gpu_count = book.claims.get(claim_version, (CPU_DEV, 1))
        if fault == "mismatch":
            gpu_count = gpu_count % MAX_GPUS + 1
        elif fault == "unknown_claim":
            claim_version = book.claim_version + 1
        required = max(self.model.class_floor.get(gpu_class, 0), 1) * gpu_count
        # pass: at least the requirement; below: under it but not under half; spoof: under half.
        low, high = {
            "pass": (required, 2 * required),
            "below": ((required + 1) // 2, required - 1),
            "spoof": (0, (required - 1) // 2),
        }[kind]
        measured = _within(low, max(low, high), position, edge)
        # At most HARDWARE_VALIDITY ahead; a quorum may still sign further (far_ahead).
        validity = self.model.parameters["hardware_validity"]
        valid_until = self.model.now + min(valid_for, validity)
        if fault == "expired":
            valid_until = self.model.now
        elif fault == "stale":
            valid_until = book.last_report_valid_until.get(claim_version) or self.model.now
        elif fault == "far_ahead":
            valid_until = (self.model.now + validity + 1, self.model.now + validity + valid_for, 2**64 - 1)[
                position % 3
            ]

        def build(epoch: int) -> tuple[Any, bytes, bytes]:
            report = HardwareReport(account, gpu_class, gpu_count, claim_version, measured, valid_until, epoch)
            other = HardwareReport(account, gpu_class, gpu_count, claim_version, measured + 1, valid_until, epoch)
            return report, eip712.digest(self.domain, report), eip712.digest(self.domain, other)

        report, epoch, signatures, signers = self._signed(fault, build)
        done = self._act(
            lambda: self.model.submit_hardware_report(
                account, gpu_class, gpu_count, claim_version, measured, valid_until, epoch, signers
            ),
            lambda: self.market.submit_hardware_report(report, signatures, sender=self.keeper),
        )
        if done is None:
            return
        effects, receipt = done
        common = {
            "provider": account,
            "gpu_class": gpu_class,
            "gpu_count": gpu_count,
            "claim_version": claim_version,
            "measured_throughput": measured,
            "epoch": epoch,
        }
        if effects["verified"]:
            self._assert_emitted(receipt, "HardwareVerified", verified_until=effects["verified_until"], **common)
            return
        outdated = ", outdated claim" if claim_version != book.claim_version else ""
        self.outcomes[
            f"{self.current_step}: done, {'spoofed (slashed)' if effects['slashed'] else 'below the floor'}{outdated}"
        ] += 1
        self._assert_emitted(
            receipt, "HardwareRejected", required_throughput=effects["required"], slashed=effects["slashed"], **common
        )
        slashes = 1 if effects["slashed"] else 0
        self._assert_emitted(
            receipt,
            "Slashed",
            count=slashes,
            provider=account,
            amount=effects["slashed"],
            beneficiary=ZERO_ADDRESS,
            beneficiary_share=0,
        )

    # ------------------------------------------------------------------ job actions

    def _create_job(
        self,
        client: int,
        shape: str,
        offered_by: int,
        directed: bool,
        size: int,
        price_offset: int,
        claim: tuple[int, int, int],
        duration: int,
        window: int,
        mutation: str | None,
    ) -> None:
        """An open or directed job, shaped to what provider `offered_by` offers ("fit", so
        that it can usually be taken) or to a random claim; `mutation` changes one term."""
        provider = str(self.providers[offered_by])
        book = self.model.provider(provider)
        if shape in ("fit", "fit_free") and book.registered:
            # fit: at most the claimed count; fit_free: at most what running jobs leave free.
            room = book.gpu_count - book.gpus_in_use if shape == "fit_free" else book.gpu_count
            gpu_class, gpu_count = book.gpu_class, 1 + size % max(room, 1)
            max_price = min(max(book.price_per_gpu_second + price_offset, 1), MAX_PRICE)
        else:
            gpu_class, gpu_count, max_price = claim
        terms = {
            "gpu_class": gpu_class,
            "gpu_count": gpu_count,
            "max_price": max_price,
            "max_duration": duration,
            "provider": provider if directed else ZERO_ADDRESS,
            "accept_deadline": self.model.now + window,
            "spec_hash": keccak(text=f"job spec {len(self.model.jobs) + 1}"),
        }
        if mutation is not None:
            term, value = JOB_MUTATIONS[mutation](self.model.now, str(self.clients[offered_by]))
            terms[term] = value
        self._post_job(client, **terms)

    def _post_job(
        self,
        client: int,
        gpu_class: int,
        gpu_count: int,
        max_price: int,
        max_duration: int,
        provider: str,
        accept_deadline: int,
        spec_hash: bytes,
    ) -> None:
        account = self.clients[client]
        done = self._act(
            lambda: self.model.create_job(
                str(account), gpu_class, gpu_count, max_price, max_duration, spec_hash, provider, accept_deadline
            ),
            lambda: self.market.create_job(
                gpu_class, gpu_count, max_price, max_duration, spec_hash, provider, accept_deadline, sender=account
            ),
        )
        if done is None:
            return
        effects, receipt = done
        assert receipt.return_value == effects["job_id"]
        self._assert_emitted(
            receipt,
            "JobCreated",
            job_id=effects["job_id"],
            client=str(account),
            provider=provider,
            gpu_class=gpu_class,
            gpu_count=gpu_count,
            max_price_per_gpu_second=max_price,
            max_duration=max_duration,
            accept_deadline=accept_deadline,
            escrow=effects["escrow"],
            spec_hash=spec_hash,
        )

    def _accept_job(self, pick: tuple[str, int], caller: str, index: int) -> None:
        """By a provider the model finds eligible (if any), any provider, or a client."""
        job_id = self._job_id(pick, (OPEN,), due=False)
        if caller == "client":
            account = self.clients[index % len(self.clients)]
        else:
            eligible = [p for p in self.providers if not self.model.accept_reasons(str(p), job_id)]
            pool = eligible if caller == "eligible" and eligible else self.providers
            account = pool[index % len(pool)]
        self._accept(job_id, account)

    def _accept(self, job_id: int, account: Any) -> None:
        done = self._act(
            lambda: self.model.accept_job(str(account), job_id), lambda: self.market.accept_job(job_id, sender=account)
        )
        if done:
            effects, receipt = done
            self._assert_emitted(
                receipt,
                "JobAccepted",
                job_id=job_id,
                provider=str(account),
                started_at=self.model.now,
                **effects.values,
            )

    def _settle(
        self, pick: tuple[str, int], outcome: int, billing_bps: int, edge: str | None, fault: str | None
    ) -> None:
        """A report on a job; gpu_seconds a share of the billing cap, or an edge of it."""
        job_id = self._job_id(pick, (RUNNING,))
        job = self.model.job(job_id)
        provider = job.provider if job is not None and job.provider != ZERO_ADDRESS else str(self.providers[0])
        if fault == "wrong_provider":
            others = [str(p) for p in self.providers if str(p) != provider]
            provider = others[job_id % len(others)]
        outcome = {"unknown_outcome": 3, "zero_outcome": 0}.get(fault, outcome)
        cap = job.billing_cap if job is not None else 1_000
        gpu_seconds = {
            None: cap * billing_bps // BPS,
            "zero": 0,
            "cap": cap,
            "over_cap": cap + 1,
            "max_uint": 2**256 - 1,
        }[edge]

        def build(epoch: int) -> tuple[Any, bytes, bytes]:
            fields = (job_id, provider, outcome, gpu_seconds, RESULT_HASH, EVIDENCE_HASH, epoch)
            other = (job_id, provider, outcome, gpu_seconds ^ 1, RESULT_HASH, EVIDENCE_HASH, epoch)
            if outcome in (OUTCOME_COMPLETED, OUTCOME_FAILED):
                report = JobReport(*fields)
                return report, eip712.digest(self.domain, report), eip712.digest(self.domain, JobReport(*other))
            # The dataclass refuses other outcomes; the contract must refuse them too.
            return fields, _job_report_digest(self.domain, fields), _job_report_digest(self.domain, other)

        report, epoch, signatures, signers = self._signed(fault, build)
        done = self._act(
            lambda: self.model.settle(job_id, provider, outcome, gpu_seconds, epoch, signers),
            lambda: self.market.settle(report, signatures, sender=self.keeper),
        )
        if done is None:
            return
        effects, receipt = done
        window = ", new failure window" if effects["window_reopened"] else ""
        self.outcomes[
            f"{self.current_step}: done, {('', 'completed', 'failed')[outcome]}{window}"
            f"{', jailed' if effects['jailed_now'] else ''}"
        ] += 1
        self._assert_emitted(
            receipt,
            "JobSettled",
            job_id=job_id,
            provider=provider,
            outcome=outcome,
            gpu_seconds=effects["gpu_seconds"],
            provider_payment=effects["provider_payment"],
            protocol_fee=effects["protocol_fee"],
            client_refund=effects["client_refund"],
            slashed=effects["slashed"],
            result_hash=RESULT_HASH,
            evidence_hash=EVIDENCE_HASH,
        )
        slashes = 1 if effects["slashed"] else 0
        self._assert_emitted(
            receipt,
            "Slashed",
            count=slashes,
            provider=provider,
            amount=effects["slashed"],
            beneficiary=job.client,
            beneficiary_share=effects["client_share"],
        )
        jailings = 1 if effects["jailed_now"] else 0
        self._assert_emitted(
            receipt, "ProviderJailed", count=jailings, provider=provider, recent_failures=effects["recent_failures"]
        )

    def _cancel_job(self, pick: tuple[str, int], by_client: bool, index: int) -> None:
        job_id = self._job_id(pick, (OPEN,))
        job = self.model.job(job_id)
        account = self._account(job.client) if by_client and job is not None else self.clients[index]
        done = self._act(
            lambda: self.model.cancel_job(str(account), job_id), lambda: self.market.cancel_job(job_id, sender=account)
        )
        if done:
            effects, receipt = done
            self._assert_emitted(receipt, "JobCancelled", job_id=job_id, client=str(account), refund=effects["refund"])

    def _expire_job(self, pick: tuple[str, int]) -> None:
        self._expire(self._job_id(pick, LIVE_STATES, due=True))

    def _expire(self, job_id: int) -> None:
        done = self._act(
            lambda: self.model.expire_job(job_id), lambda: self.market.expire_job(job_id, sender=self.keeper)
        )
        if done:
            effects, receipt = done
            self._assert_emitted(receipt, "JobExpired", job_id=job_id, **effects.values)

    def _claim(self, owed: bool, index: int, token_index: int) -> None:
        """Mostly a balance that is owed, sometimes any account and token."""
        pairs = [(t, a) for t in self.tokens for a in self.accounts if self.model.claimable.get((str(t), str(a)), 0)]
        if owed and pairs:
            token, account = pairs[index % len(pairs)]
        else:
            token, account = (
                (self.stake_token, self.payment_token)[token_index],
                self.accounts[index % len(self.accounts)],
            )
        self._claim_from(account, token)

    def _claim_from(self, account: Any, token: Any) -> None:
        done = self._act(
            lambda: self.model.claim(str(account), str(token)), lambda: self.market.claim(token, sender=account)
        )
        if done:
            effects, receipt = done
            assert receipt.return_value == effects["amount"]
            self._assert_emitted(receipt, "Claimed", account=str(account), token=str(token), amount=effects["amount"])

    # ------------------------------------------------------------------ governance actions

    def _sender(self, as_owner: bool) -> Any:
        return self.owner if as_owner else self.attacker

    def _set_parameter(self, name: str, position: int, edge: str | None, as_owner: bool) -> None:
        low, high = PARAMETER_BOUNDS[name]
        if edge == "below":
            value = low - 1
        elif edge == "above":
            value = high + 1
        else:
            value = _within(low, high if edge == "high" else USEFUL_HIGH.get(name, high), position, edge)
        if value < 0:
            return  # a uint256 cannot go below a zero lower bound
        sender = self._sender(as_owner)
        done = self._act(
            lambda: self.model.set_parameter(str(sender), name, value),
            lambda: getattr(self.market, f"set_{name}")(value, sender=sender),
        )
        if done:
            effects, receipt = done
            self._assert_emitted(
                receipt, "ParameterChanged", name=name, old_value=effects["old_value"], new_value=value
            )
            assert self.views(self.market, name) == value

    def _set_treasury(self, index: int, as_owner: bool) -> None:
        new_treasury = str(self.treasuries[index]) if index < len(self.treasuries) else ZERO_ADDRESS
        old_treasury, sender = self.model.treasury, self._sender(as_owner)
        done = self._act(
            lambda: self.model.set_treasury(str(sender), new_treasury),
            lambda: self.market.set_treasury(new_treasury, sender=sender),
        )
        if done:
            self._assert_emitted(done[1], "TreasuryChanged", old_treasury=old_treasury, new_treasury=new_treasury)

    def _set_gpu_class(self, gpu_class: int, floor: str, position: int, as_owner: bool) -> None:
        floor_per_gpu = {"change": 1 + position % 1_000_000, "remove": 0, "out_of_bounds": 2**128}[floor]
        sender = self._sender(as_owner)
        done = self._act(
            lambda: self.model.set_gpu_class(str(sender), gpu_class, floor_per_gpu),
            lambda: self.market.set_gpu_class(gpu_class, floor_per_gpu, sender=sender),
        )
        if done:
            self._assert_emitted(done[1], "GpuClassSet", gpu_class=gpu_class, floor_per_gpu=floor_per_gpu)

    def _pause(self, as_owner: bool) -> None:
        sender = self._sender(as_owner)
        self._act(lambda: self.model.pause(str(sender)), lambda: self.market.pause(sender=sender))

    def _unpause(self, as_owner: bool) -> None:
        sender = self._sender(as_owner)
        self._act(lambda: self.model.unpause(str(sender)), lambda: self.market.unpause(sender=sender))

    def _unjail(self, index: int, as_owner: bool) -> None:
        provider, sender = str(self.providers[index]), self._sender(as_owner)
        done = self._act(
            lambda: self.model.unjail(str(sender), provider), lambda: self.market.unjail(provider, sender=sender)
        )
        if done:
            self._assert_emitted(done[1], "ProviderUnjailed", provider=provider)

    def _rotate_committee(self, members: list[int], extra: int, mutation: str | None) -> None:
        """set_committee: from now on reports are signed by the new keys for the new epoch."""
        pool = list(self.oracle_keys)
        addresses = [pool[i] for i in members]
        threshold = min(len(addresses) // 2 + 1 + extra, len(addresses))
        sender = self.attacker if mutation == "not_owner" else self.owner
        if mutation == "minority":
            threshold = len(addresses) // 2
        elif mutation == "too_high":
            threshold = len(addresses) + 1
        elif mutation == "duplicate":
            addresses = [*addresses, addresses[0]]
        elif mutation == "zero_member":
            addresses = [*addresses, ZERO_ADDRESS]
        elif mutation == "empty":
            addresses, threshold = [], 1
        before = (list(self.model.committee), self.model.threshold, self.model.epoch)
        done = self._act(
            lambda: self.model.set_committee(str(sender), addresses, threshold),
            lambda: self.market.set_committee(addresses, threshold, sender=sender),
        )
        if done:
            effects, receipt = done
            self.previous_committee = before
            self._assert_emitted(
                receipt, "CommitteeChanged", epoch=effects["epoch"], members=addresses, threshold=threshold
            )

    # ------------------------------------------------------------------ invariants

    def _read_books(self) -> dict[str, Any]:
        """Every number the invariants need, read from the contract in one pass."""
        view, market = self.views, self.market
        provider_addresses = [str(p) for p in self.providers]
        return {
            "stakes": {p: view(market, "stake_of", p) for p in provider_addresses},
            "records": {p: view(market, "providers", p) for p in provider_addresses},
            "gpus_in_use": {p: view(market, "gpus_in_use", p) for p in provider_addresses},
            # Every claim version the provider has had (the model's count; a version the
            # contract knows beyond it would show in the record's claim_version).
            "last_reports": {
                p: {
                    v: view(market, "last_report_valid_until", p, v)
                    for v in range(self.model.provider(p).claim_version + 1)
                }
                for p in provider_addresses
            },
            "jobs": {i: view(market, "get_job", i) for i in range(1, view(market, "job_count") + 1)},
            "claimable": {
                (str(t), str(a)): view(market, "claimable", t, a) for t in self.tokens for a in self.accounts
            },
            "held": {str(t): view(t, "balanceOf", market) for t in self.tokens},
            "governance": (
                view(market, "paused"),
                view(market, "epoch"),
                view(market, "threshold"),
                view(market, "treasury"),
            ),
            "fingerprint": self._fingerprint(),
        }

    def _fingerprint(self) -> tuple[Any, ...]:
        view, market = self.views, self.market
        return (
            tuple(view(t, "balanceOf", market) for t in self.tokens),
            view(market, "job_count"),
            view(market, "epoch"),
        )

    @_step(invariant)
    def the_books_hold(self) -> None:
        """Invariants 1-3, after every step (and between the actions of a step)."""
        self._check_books()

    def _check_books(self) -> None:
        """Reading every view costs more than most actions, so the books are read again
        only after a transaction succeeded; after a time jump or a refused call, a
        fingerprint (token balances, job count, epoch) confirms that nothing moved, and the
        books as last read are checked against the model again."""
        if self.books is None:
            self.books = self._read_books()
        else:
            assert self._fingerprint() == self.books["fingerprint"], (
                "a step without a successful transaction changed the market"
            )
        self._assert_conserved_and_modelled(self.books)
        self._assert_one_state_per_job(self.books)
        self._assert_locked_is_running_collateral(self.books)
        self._assert_gpus_in_use_are_running_gpus(self.books)

    def _assert_conserved_and_modelled(self, books: dict[str, Any]) -> None:
        """Invariant 1: each token's balance is what the market owes, number by number as the model says."""
        model = self.model
        for token in map(str, self.tokens):
            owed = sum(amount for (t, _), amount in books["claimable"].items() if t == token)
            if token == model.stake_token:
                owed += sum(s.free + s.locked + s.unbonding for s in books["stakes"].values())
            if token == model.payment_token:
                owed += sum(job.escrow for job in books["jobs"].values() if job.state in LIVE_STATES)
            assert books["held"][token] == owed, f"{token}: market holds {books['held'][token]}, owes {owed}"
            assert owed == model.owed(token), f"{token}: contract owes {owed}, model {model.owed(token)}"

        for address, stake in books["stakes"].items():
            book = model.provider(address)
            assert (stake.free, stake.locked, stake.unbonding) == (book.free, book.locked, book.unbonding), address
            if stake.unbonding:
                assert stake.release_at == book.release_at, address
            record = books["records"][address]
            assert (record.gpu_class, record.gpu_count, record.price_per_gpu_second, record.endpoint) == (
                book.gpu_class,
                book.gpu_count,
                book.price_per_gpu_second,
                book.endpoint,
            ), address
            assert record.claim_version == book.claim_version, address
            assert (record.verified_until, record.recent_failures, record.failure_window_start, record.jailed) == (
                book.verified_until,
                book.recent_failures,
                book.failure_window_start,
                book.jailed,
            ), address
            assert books["gpus_in_use"][address] == book.gpus_in_use, address
            assert books["last_reports"][address] == {
                version: book.last_report_valid_until.get(version, 0) for version in range(book.claim_version + 1)
            }, address

        assert len(books["jobs"]) == len(model.jobs)
        for job_id, job in books["jobs"].items():
            expected = model.job(job_id)
            assert (job.client, job.provider, job.state) == (expected.client, expected.provider, expected.state), job_id
            assert (
                job.gpu_class,
                job.gpu_count,
                job.max_price_per_gpu_second,
                job.max_duration,
                job.accept_deadline,
            ) == (
                expected.gpu_class,
                expected.gpu_count,
                expected.max_price_per_gpu_second,
                expected.max_duration,
                expected.accept_deadline,
            ), job_id
            assert (job.price_per_gpu_second, job.started_at, job.collateral, job.escrow, job.spec_hash) == (
                expected.price_per_gpu_second,
                expected.started_at,
                expected.collateral,
                expected.escrow,
                expected.spec_hash,
            ), job_id

        for key, amount in books["claimable"].items():
            assert amount == model.claimable.get(key, 0), f"claimable {key}"
        assert books["governance"] == (model.paused, model.epoch, model.threshold, model.treasury)

    def _assert_one_state_per_job(self, books: dict[str, Any]) -> None:
        """Invariant 2: every job is in one of the six states, and a terminal one never changes."""
        for job_id, job in books["jobs"].items():
            assert job.state in (*LIVE_STATES, *TERMINAL_STATES), f"job {job_id} in state {job.state}"
            if job_id in self.terminal_seen:
                assert job.state == self.terminal_seen[job_id], (
                    f"job {job_id} left terminal state {self.terminal_seen[job_id]}"
                )
            elif job.state in TERMINAL_STATES:
                self.terminal_seen[job_id] = job.state

    def _assert_locked_is_running_collateral(self, books: dict[str, Any]) -> None:
        """Invariant 3: a provider's locked stake is exactly the collateral of its RUNNING jobs."""
        for address, stake in books["stakes"].items():
            collateral = sum(
                j.collateral for j in books["jobs"].values() if j.state == RUNNING and j.provider == address
            )
            assert stake.locked == collateral, f"{address}: locked {stake.locked}, running collateral {collateral}"

    def _assert_gpus_in_use_are_running_gpus(self, books: dict[str, Any]) -> None:
        """Invariant 4: a provider's GPUs in use are the GPUs of its RUNNING jobs, at most its claim."""
        for address, in_use in books["gpus_in_use"].items():
            running = sum(j.gpu_count for j in books["jobs"].values() if j.state == RUNNING and j.provider == address)
            claimed = books["records"][address].gpu_count
            assert in_use == running <= claimed, (
                f"{address}: gpus_in_use {in_use}, running jobs hold {running}, claims {claimed}"
            )

    # ------------------------------------------------------------------ teardown

    def teardown(self) -> None:
        try:
            if self.clean:
                self._drain_and_check_nothing_is_stuck()
        finally:
            self.chain.restore(self.snapshot)

    def _drain_and_check_nothing_is_stuck(self) -> None:
        """Every job to a terminal state, every unbonding entry withdrawn, every balance
        claimed: then the market holds exactly the free stake, and every wallet is right."""
        model = self.model
        self.current_step = "teardown"
        deadlines = [model.expiry_of(job) for job in model.jobs if job.state in LIVE_STATES]
        deadlines += [book.release_at for book in model.providers.values() if book.unbonding]
        model.now = max([model.now, *deadlines]) + 1
        for job_id, job in enumerate(model.jobs, 1):
            if job.state in LIVE_STATES:
                self._expire(job_id)
        for index, account in enumerate(self.providers):
            if model.provider(str(account)).unbonding:
                self._withdraw(index)
        for token, account in list(model.claimable):
            self._claim_from(self._account(account), self._token(token))

        books = self.books = self._read_books()
        self._assert_conserved_and_modelled(books)
        self._assert_one_state_per_job(books)
        self._assert_gpus_in_use_are_running_gpus(books)
        assert all(job.state in TERMINAL_STATES for job in books["jobs"].values())
        assert not any(books["gpus_in_use"].values())
        assert not any(books["claimable"].values())
        assert all(stake.locked == stake.unbonding == 0 for stake in books["stakes"].values())
        free = sum(stake.free for stake in books["stakes"].values())
        for token in map(str, self.tokens):
            left = free if token == model.stake_token else 0
            assert books["held"][token] == left, (
                f"{token}: {books['held'][token]} left in the market, free stake is {left}"
            )
        for token in self.tokens:
            for account in self.accounts:
                assert self.views(token, "balanceOf", account) == model.wallets[(str(token), str(account))], (
                    f"wallet of {account}"
                )


@pytest.fixture
def market_machine(
    accounts, chain, fuzz_market, owner, attacker, keeper, fuzz_providers, fuzz_clients, fuzz_treasuries, committee
):
    """Hands one deployment and the cast to the machine class (hypothesis instantiates it).

    The cast sends unsigned (impersonated) transactions from the same addresses: signing
    and recovering each transaction in eth_keys' pure-Python ECDSA costs more than running
    it, and the contract sees the same msg.sender either way.
    """

    def unsigned(account: Any) -> Any:
        return accounts.impersonate_account(account.address)

    market, stake_token, payment_token = fuzz_market
    for name, expected in DEFAULT_PARAMETERS.items():
        assert getattr(market, name)() == expected, f"the model starts from docs/PROTOCOL.md's default {name}"
    pool = [oracle_key(i) for i in range(ORACLE_POOL_SIZE)]
    assert committee.keys == pool[: len(committee.keys)], "the deployment's committee comes from the pool"
    MarketMachine.chain = chain
    MarketMachine.market = market
    MarketMachine.stake_token, MarketMachine.payment_token = stake_token, payment_token
    MarketMachine.owner, MarketMachine.attacker, MarketMachine.keeper = map(unsigned, (owner, attacker, keeper))
    MarketMachine.providers = [unsigned(a) for a in fuzz_providers]
    MarketMachine.clients = [unsigned(a) for a in fuzz_clients]
    MarketMachine.treasuries = [unsigned(a) for a in fuzz_treasuries]
    MarketMachine.views = ViewReader(chain)
    MarketMachine.outcomes = Counter()
    MarketMachine.domain = Domain(chain_id=chain.chain_id, verifying_contract=market.address)
    MarketMachine.oracle_keys = {eip712.address_of(key): key for key in pool}
    MarketMachine.initial_committee, MarketMachine.initial_threshold = list(committee.addresses), committee.threshold
    return MarketMachine


def test_market_books_hold_under_random_actions(market_machine) -> None:
    run_state_machine_as_test(market_machine)
    # Seen with `-s`: how much of the state space the examples reached.
    for outcome, count in sorted(market_machine.outcomes.items()):
        print(f"{count:6d}  {outcome}")
