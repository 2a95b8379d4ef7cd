"""Batch settlement under random interleavings (hypothesis stateful): jobs start, settle alone or in
batches whose roots may hold jobs already settled (with other verdicts), in any subsets and orders.
After every step: the market's books balance (token balance == stake + live escrow + claimable),
every job is in one state, and a settled job keeps the verdict of its first settlement."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from gpumarket.signing.batch import ReportTree
from gpumarket.signing.eip712 import Domain, JobReportBatch, Outcome, quorum_signatures, to_tuple
from gpumarket.testing.hypothesis_profiles import ENV_VAR
from helpers.accounting import assert_conserved
from helpers.committee import hardware_report, job_report
from helpers.constants import COMPLETED, CPU_DEV, FAILED, HOUR, MIN_STAKE, PRICE, RUNNING, TOKEN
from unit.companions import companions, market, settler  # noqa: F401  (fixtures: a market with its companions)

GPUS = 3
STATE_OF = {Outcome.COMPLETED: COMPLETED, Outcome.FAILED: FAILED}


class BatchMachine(RuleBasedStateMachine):
    """The fixture below sets the deployment and the cast as class attributes."""

    chain: Any
    market: Any
    settler: Any
    keys: list[bytes]
    domain: Domain
    providers: list[Any]
    clients: list[Any]
    keeper: Any
    tokens: list[Any]
    others: list[Any]

    def __init__(self) -> None:
        super().__init__()
        self.snapshot = self.chain.snapshot()
        self.running: dict[int, Any] = {}  # job id -> provider
        self.settled: dict[int, int] = {}  # job id -> state of its first settlement
        self.reports: dict[int, Any] = {}

    def teardown(self) -> None:
        self.chain.restore(self.snapshot)

    def _report(self, job_id: int, provider: Any, outcome: Outcome, seconds: int):
        return job_report(job_id, provider.address, outcome, seconds, epoch=self.market.epoch())

    @rule(provider=st.integers(0, 1), client=st.integers(0, 1))
    def start_job(self, provider: int, client: int) -> None:
        account = self.providers[provider]
        busy = sum(1 for p in self.running.values() if p == account)
        if busy >= GPUS or self.market.providers(account).jailed:  # three failures jail it
            return
        tx = self.market.create_job(
            CPU_DEV,
            1,
            2 * PRICE,
            HOUR,
            b"\x5e" * 32,
            account,
            self.chain.pending_timestamp + HOUR,
            sender=self.clients[client],
        )
        job_id = tx.return_value
        self.market.accept_job(job_id, sender=account)
        self.running[job_id] = account

    @precondition(lambda self: self.running)
    @rule(pick=st.integers(0, 2**16), completed=st.booleans(), seconds=st.integers(0, 2 * HOUR))
    def settle_alone(self, pick: int, completed: bool, seconds: int) -> None:
        job_id = sorted(self.running)[pick % len(self.running)]
        outcome = Outcome.COMPLETED if completed else Outcome.FAILED
        report = self._report(job_id, self.running[job_id], outcome, seconds)
        signatures = quorum_signatures(self.domain, report, self.keys)
        self.market.settle(to_tuple(report), signatures, sender=self.keeper)
        self.settled[job_id] = STATE_OF[outcome]
        del self.running[job_id]

    @precondition(lambda self: self.running or self.settled)
    @rule(
        data=st.data(),
        verdicts=st.lists(st.booleans(), min_size=1, max_size=8),
        seconds=st.integers(0, 2 * HOUR),
    )
    def settle_in_a_batch(self, data: st.DataObject, verdicts: list[bool], seconds: int) -> None:
        """A root over some known jobs (settled ones too, with any verdict), a subset submitted."""
        known = sorted({**self.running, **{j: None for j in self.settled}})
        chosen = data.draw(st.lists(st.sampled_from(known), min_size=1, max_size=len(known), unique=True))
        reports = []
        for job_id, completed in zip(chosen, verdicts * len(chosen), strict=False):
            provider = self.running.get(job_id) or self.market.get_job(job_id).provider
            provider = provider if hasattr(provider, "address") else type("P", (), {"address": provider})()
            reports.append(self._report(job_id, provider, Outcome.COMPLETED if completed else Outcome.FAILED, seconds))
        tree = ReportTree(reports)
        subset = data.draw(st.lists(st.sampled_from(tree.reports), min_size=1, unique=True))
        proof = tree.multiproof(subset)
        signatures = quorum_signatures(self.domain, JobReportBatch(root=tree.root, epoch=tree.epoch), self.keys)
        still_running = [r for r in proof.reports if r.job_id in self.running]
        tx = self.settler.settle_batch(
            [to_tuple(r) for r in proof.reports], list(proof.proof), proof.flag_bits, signatures, sender=self.keeper
        )
        assert tx.return_value == len(still_running)
        for report in still_running:
            self.settled[report.job_id] = STATE_OF[report.outcome]
            del self.running[report.job_id]

    @invariant()
    def books_balance(self) -> None:
        assert_conserved(self.market, self.tokens, self.providers, [*self.providers, *self.clients, *self.others])

    @invariant()
    def one_state_per_job(self) -> None:
        for job_id in self.running:
            assert self.market.get_job(job_id).state == RUNNING
        for job_id, state in self.settled.items():
            assert self.market.get_job(job_id).state == state


@pytest.fixture
def batch_machine(
    chain,
    market,  # noqa: F811  (the module's: with companions)
    settler,  # noqa: F811
    committee,
    domain,
    provider,
    provider2,
    client,
    client2,
    keeper,
    treasury,  # noqa: F811
    stake_token,
    payment_token,
    funded,
    register,
    owner,
):
    for account in (provider, provider2):
        register(account, gpu_count=GPUS)
        record = market.providers(account)
        report = hardware_report(
            account,
            CPU_DEV,
            GPUS,
            market.class_floor(CPU_DEV) * GPUS,
            chain.pending_timestamp + 30 * 86_400 // 31,
            epoch=market.epoch(),
        )
        market.submit_hardware_report(to_tuple(report), committee.sign(domain, report), sender=keeper)
        assert record.gpu_count == GPUS
        market.stake(MIN_STAKE + 100 * TOKEN, sender=account)
    BatchMachine.chain, BatchMachine.market, BatchMachine.settler = chain, market, settler
    BatchMachine.keys, BatchMachine.domain = committee.keys[: committee.threshold], domain
    BatchMachine.providers, BatchMachine.clients, BatchMachine.keeper = [provider, provider2], [client, client2], keeper
    BatchMachine.tokens, BatchMachine.others = [stake_token, payment_token], [treasury, keeper, owner]
    return BatchMachine


def test_batches_keep_the_books_and_settle_each_job_once(batch_machine) -> None:
    # `make test` (quick) runs a short walk; `make fuzz` (thorough) keeps its profile's length.
    quick = os.environ.get(ENV_VAR, "").strip() in ("", "quick")
    run_state_machine_as_test(
        batch_machine, settings=settings(max_examples=8, stateful_step_count=12) if quick else None
    )
