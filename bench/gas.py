"""Gas of every market operation, from real receipts on a py-evm chain.

    python -m bench.gas [--out-dir bench]      (or `make bench-gas`)

Runs on ape's ethereum:local:test (eth-tester/py-evm, Prague rules), whose receipts are
the real thing: the 21,000 base, calldata (with EIP-7623's floor) and refunds included.
titanoboa's receipts (ethereum:local:boa) leave the base cost out, so they are not used.

Storage dominates the numbers, so an operation is measured in each state where its cost
differs:
  first_time    the slots it credits go from zero to non-zero (22,100 gas each: a payee's
                first credit, or the first since it claimed),
  steady_state  the same slots already hold a value (5,000 each: a payee that has not
                claimed since its last credit; the usual case for the treasury and for
                a busy provider).
Writes <out-dir>/gas.json (name -> gas) and <out-dir>/GAS.md (the table, the targets).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import keccak

from gpumarket.chain.deploy import deploy_market
from gpumarket.chain.params import load_params
from gpumarket.signing.eip712 import Domain
from gpumarket.testing.committee import Committee, hardware_report, job_report

NETWORK = "ethereum:local:test"
PARAMS_FILE = Path(__file__).resolve().parents[1] / "deploy" / "params" / "default.yaml"
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
# The chain's clock starts here, so timestamps, and with them the reports' calldata
# and signatures, are the same on every run (2033-05-18).
START_TIMESTAMP = 2_000_000_000
TOKEN = 10**18
HOUR = 3_600
CPU_DEV = 1
PRICE = 10**15
MAX_PRICE = 2 * PRICE
ENDPOINT = "https://provider-01.example.net:8700"  # 36 characters: 2 data slots + length
# Committees measured: (members, threshold).
COMMITTEES = ((1, 1), (3, 2), (9, 5))
COMPLETED, FAILED = 1, 2

# Targets from the project's issues: operation -> gas. Every measured case of the
# operation is held to it; GAS.md says which cases miss and why.
TARGETS: dict[str, int] = {
    "create_job": 150_000,
    "accept_job": 110_000,
    "settle_completed_2of3": 120_000,
}


@dataclass(frozen=True)
class Measurement:
    name: str  # key in gas.json
    operation: str  # what TARGETS is keyed by
    case: str
    gas: int
    note: str


def committee_label(size: int, threshold: int) -> str:
    return f"{threshold}of{size}"


class GasBench:
    """Builds the states each measurement needs and records receipts' gas."""

    def __init__(self, project: Any, chain: Any, accounts: list[Any]) -> None:
        chain.pending_timestamp = START_TIMESTAMP
        self.chain = chain
        self.results: list[Measurement] = []
        # Roles: one provider for the lifecycle and COMPLETED jobs, one that stakes first
        # (so the market's first-ever stake balance is not charged to the measured
        # provider), and a fresh provider per committee for FAILED jobs.
        (self.owner, self.treasury, self.provider, self.first_staker) = accounts[:4]
        self.fail_providers = accounts[4 : 4 + len(COMMITTEES)]
        self.client, self.client2, self.keeper = accounts[4 + len(COMMITTEES) : 7 + len(COMMITTEES)]
        params = load_params(PARAMS_FILE)
        params = params.model_copy(update={"treasury": self.treasury.address})
        _, self.market = deploy_market(params, self.owner, deploy_mock_tokens=True, project=project, report=lambda _: None)
        self.record("deploy", "deploy", "single", chain.get_receipt(self.market.txn_hash), "GpuMarket creation (code size dominates)")
        self.stake_token = project.MockToken.at(self.market.STAKE_TOKEN())
        self.payment_token = project.MockToken.at(self.market.PAYMENT_TOKEN())
        self.domain = Domain(chain_id=chain.chain_id, verifying_contract=self.market.address)
        self.committee = Committee.of_size(3, 2)
        for account in (self.provider, self.first_staker, *self.fail_providers, self.client, self.client2):
            for token in (self.stake_token, self.payment_token):
                token.mint(account, 1_000_000 * TOKEN, sender=account)
                token.approve(self.market, 2**256 - 1, sender=account)

    # ------------------------------------------------------------------ recording

    def record(self, name: str, operation: str, case: str, receipt: Any, note: str) -> Any:
        if receipt.status != 1:
            raise RuntimeError(f"{name}: transaction failed")
        self.results.append(Measurement(name, operation, case, receipt.gas_used, note))
        return receipt

    # ------------------------------------------------------------------ building blocks

    def use_committee(self, size: int, threshold: int) -> None:
        committee = Committee.of_size(size, threshold, first_index=10 * size)
        self.market.set_committee(committee.addresses, threshold, sender=self.owner)
        self.committee = committee

    def hardware(self, account: Any, valid_for: int = 6 * HOUR):
        # Reports must come in increasing valid_until order per provider.
        valid_until = max(self.chain.pending_timestamp + valid_for, self.market.last_report_valid_until(account) + 1)
        report = hardware_report(account, CPU_DEV, 1, 100, valid_until, epoch=self.market.epoch())
        return self.market.submit_hardware_report(report, self.committee.sign(self.domain, report), sender=self.keeper)

    def ready(self, account: Any, stake: int = 2_000 * TOKEN) -> None:
        self.market.register(CPU_DEV, 1, PRICE, ENDPOINT, sender=account)
        self.hardware(account)
        self.market.stake(stake, sender=account)

    def create_job(self, client: Any, provider: Any = None, accept_window: int = HOUR):
        return self.market.create_job(
            CPU_DEV, 1, MAX_PRICE, HOUR, keccak(b"job spec"), provider or ZERO_ADDRESS,
            self.chain.pending_timestamp + accept_window, sender=client,
        )

    def job_id(self, receipt: Any) -> int:
        # From the event: py-evm receipts' return_value is re-derived after the fact.
        return receipt.decode_logs(self.market.JobCreated)[0].job_id

    def running_job(self, client: Any, provider: Any) -> int:
        job_id = self.job_id(self.create_job(client))
        self.market.accept_job(job_id, sender=provider)
        return job_id

    def settle(self, job_id: int, outcome: int, gpu_seconds: int = 0):
        job = self.market.get_job(job_id)
        report = job_report(job_id, job.provider, outcome, gpu_seconds, epoch=self.market.epoch())
        return self.market.settle(report, self.committee.sign(self.domain, report), sender=self.keeper)

    def claim_everything(self, accounts: list[Any]) -> None:
        """Zero every claimable balance, so the next credit is a first-time write again."""
        for account in accounts:
            for token in (self.stake_token, self.payment_token):
                if self.market.claimable(token, account) != 0:
                    self.market.claim(token, sender=account)

    # ------------------------------------------------------------------ scenarios

    def provider_lifecycle(self) -> None:
        market, provider = self.market, self.provider
        self.record("register", "register", "single", market.register(CPU_DEV, 1, PRICE, ENDPOINT, sender=provider),
                    f"fresh provider record; a {len(ENDPOINT)}-character endpoint")
        self.record("submit_hardware_report_2of3/first_time", "submit_hardware_report", "first_time", self.hardware(provider),
                    "first report: verified_until and last_report_valid_until written from zero")
        self.record("submit_hardware_report_2of3/steady_state", "submit_hardware_report", "steady_state",
                    self.hardware(provider, valid_for=12 * HOUR), "renewal: both slots already set")
        # Someone else stakes first, so the market's token balance is already non-zero
        # (a once-per-deployment cost that would otherwise land on this provider).
        self.ready(self.first_staker)
        self.record("stake/first_time", "stake", "first_time", market.stake(1_100 * TOKEN, sender=provider),
                    "provider's stake word written from zero")
        self.record("stake/steady_state", "stake", "steady_state", market.stake(1_000 * TOKEN, sender=provider),
                    "adds to existing stake")
        self.record("request_unstake/first_time", "request_unstake", "first_time", market.request_unstake(10 * TOKEN, sender=provider),
                    "unbonding entry (amount, release time) written from zero")
        self.record("request_unstake/steady_state", "request_unstake", "steady_state", market.request_unstake(10 * TOKEN, sender=provider),
                    "adds to the unbonding entry, restarts its clock")
        self.chain.pending_timestamp += market.unbonding_period()
        self.record("withdraw", "withdraw", "single", market.withdraw(sender=provider),
                    "clears the unbonding entry (refund) and pays out")

    def jobs_and_completed_settlement(self) -> None:
        market, provider, client = self.market, self.provider, self.client
        self.record("create_job_open/first_time", "create_job", "first_time", receipt := self.create_job(client),
                    "the deployment's first job (once per deployment): job counter and the market's payment balance written from zero")
        first_job = self.job_id(receipt)
        self.record("create_job_open/steady_state", "create_job", "steady_state", receipt := self.create_job(client),
                    "open job (provider zero): 3 fresh job slots")
        open_job = self.job_id(receipt)
        self.record("create_job_directed/steady_state", "create_job", "steady_state", receipt := self.create_job(client, provider),
                    "directed job: 4 fresh job slots and a registry read")
        directed_job = self.job_id(receipt)
        market.accept_job(first_job, sender=provider)
        self.record("accept_job_open", "accept_job", "open", market.accept_job(open_job, sender=provider),
                    "open job: provider word written from zero")
        self.record("accept_job_directed", "accept_job", "directed", market.accept_job(directed_job, sender=provider),
                    "directed job: provider word already set")
        # Committee 2-of-3 is the deployment's own (epoch 1); then 1-of-1 and 5-of-9.
        for size, threshold in ((3, 2), (1, 1), (9, 5)):
            label = committee_label(size, threshold)
            if (size, threshold) != (3, 2):
                self.use_committee(size, threshold)
                self.hardware(provider)
                first_job, open_job = self.running_job(client, provider), self.running_job(client, provider)
            self.claim_everything([provider, client, self.treasury])
            self.record(f"settle_completed_{label}/first_time", f"settle_completed_{label}", "first_time",
                        self.settle(first_job, COMPLETED, gpu_seconds=1_800),
                        "provider, treasury and client refund credited from zero")
            self.record(f"settle_completed_{label}/steady_state", f"settle_completed_{label}", "steady_state",
                        self.settle(open_job, COMPLETED, gpu_seconds=1_800),
                        "the three balances already non-zero")
            if (size, threshold) == (3, 2):
                self.claims()
        self.settle(directed_job, COMPLETED, gpu_seconds=1_800)

    def failed_settlement(self) -> None:
        """FAILED per committee, each with a fresh provider (failures count to the jail)."""
        for (size, threshold), provider in zip(COMMITTEES, self.fail_providers):
            label = committee_label(size, threshold)
            self.use_committee(size, threshold)
            self.ready(provider)
            jobs = [self.running_job(self.client2, provider) for _ in range(2)]
            self.claim_everything([self.client2, self.treasury])
            self.record(f"settle_failed_{label}/first_time", f"settle_failed_{label}", "first_time",
                        self.settle(jobs[0], FAILED),
                        "refund, client's slash share, treasury's share and the failure count written from zero")
            self.record(f"settle_failed_{label}/steady_state", f"settle_failed_{label}", "steady_state",
                        self.settle(jobs[1], FAILED), "all four already non-zero (second failure in a row)")

    def claims(self) -> None:
        """Claims after the first settlements: the treasury has never held the token, the client has."""
        market, token = self.market, self.payment_token
        if token.balanceOf(self.treasury) != 0 or token.balanceOf(self.client) == 0:
            raise RuntimeError("claim: the scenario's wallets are not in the states measured")
        self.record("claim/first_time", "claim", "first_time", market.claim(token, sender=self.treasury),
                    "claimable zeroed (refund); recipient's token balance written from zero")
        self.record("claim/steady_state", "claim", "steady_state", market.claim(token, sender=self.client),
                    "claimable zeroed (refund); recipient already holds the token")

    def expiry(self) -> None:
        market, client = self.market, self.client
        self.claim_everything([client])
        self.hardware(self.provider)
        open_jobs = [self.job_id(self.create_job(client, accept_window=60)) for _ in range(2)]
        running = self.running_job(client, self.provider)
        self.chain.pending_timestamp += 120
        self.record("expire_job_open/first_time", "expire_job", "first_time", market.expire_job(open_jobs[0], sender=self.keeper),
                    "OPEN past its accept deadline; client refund credited from zero")
        self.record("expire_job_open/steady_state", "expire_job", "steady_state", market.expire_job(open_jobs[1], sender=self.keeper),
                    "client refund added to a non-zero balance")
        self.claim_everything([client])
        self.chain.pending_timestamp += HOUR + market.settle_grace() + 1
        self.record("expire_job_running/first_time", "expire_job", "first_time", market.expire_job(running, sender=self.keeper),
                    "RUNNING past duration + grace: collateral unlocked, refund credited from zero")

    def run(self) -> list[Measurement]:
        self.provider_lifecycle()
        self.jobs_and_completed_settlement()
        self.failed_settlement()
        self.expiry()
        return self.results


# ---------------------------------------------------------------------- reports

# Why each target is missed where it is, and what would reach it: kept with the numbers
# they explain (the bench checks the premises it states, see `_explain`).
def _fresh_slot_note(first: int, steady: int) -> str:
    return (f"{first - steady:,} of it, about {round((first - steady) / 17_100)} slots at 17,100 each,"
            " is the price of writing slots that hold zero (22,100 instead of 5,000)")


def target_rows(results: list[Measurement]) -> list[tuple[Measurement, int, bool]]:
    rows = []
    for m in results:
        target = TARGETS.get(m.operation)
        if target is not None:
            rows.append((m, target, m.gas <= target))
    return rows


def to_json(results: list[Measurement]) -> dict[str, int]:
    return {m.name: m.gas for m in results}


def render_markdown(results: list[Measurement], explanations: dict[str, str], meta: dict[str, str]) -> str:
    targets = {m.name: (target, ok) for m, target, ok in target_rows(results)}
    lines = [
        "# Gas of GpuMarket operations",
        "",
        f"Generated by `python -m bench.gas` (`make bench-gas`) on `{meta['network']}`"
        f" (py-evm, {meta['fork']} rules, Vyper 0.4.3 `optimize codesize`) with MockToken as both tokens.",
        "Every figure is a real receipt's `gas_used`: the 21,000 base, calldata and refunds included.",
        "",
        "Cases: **first_time** = the slots the operation credits go from zero to non-zero (a payee's first",
        "credit, or its first since it last claimed: 22,100 gas a slot); **steady_state** = those slots",
        "already hold a value (5,000 a slot: a payee that has not claimed since its last credit, the usual",
        "case for the treasury and a busy provider). Where the two do not differ there is one row.",
        "",
        "| operation | case | gas | target | result | what the case is |",
        "|---|---|---:|---:|---|---|",
    ]
    for m in results:
        target, ok = targets.get(m.name, (None, None))
        target_text = f"{target:,}" if target else ""
        result = "" if ok is None else ("pass" if ok else "**miss**")
        lines.append(f"| {m.name.split('/')[0]} | {m.case} | {m.gas:,} | {target_text} | {result} | {m.note} |")
    lines += ["", "## Targets", ""]
    for operation, target in TARGETS.items():
        lines.append(f"- **{operation} <= {target:,}**: {explanations[operation]}")
    lines += [
        "",
        "## Measurement conditions",
        "",
        "- Unlimited allowances (MockToken, like OpenZeppelin's ERC20, skips the allowance write for",
        "  `max_uint256`); a finite allowance adds about 5,000 gas to create_job and stake.",
        "- Token transfers cost what MockToken costs; a real token (proxy, hooks, blacklist) adds its own.",
        "- Jobs: 1 cpu-dev GPU, 1 hour, settled with 1,800 GPU-seconds (so the client gets a refund);",
        f"  endpoint of {len(ENDPOINT)} characters (register writes ceil(len/32) + 1 string slots).",
        "- Each committee signs with exactly its threshold (more signatures only add ecrecovers).",
        "- FAILED settlements use a fresh provider per committee: first_time is its first failure",
        "  (failure count 0 -> 1), steady_state its second in a row.",
        "",
    ]
    return "\n".join(lines)


def _explain(results: list[Measurement]) -> dict[str, str]:
    """A sentence per target from the measured numbers: met, or why not and what would meet it."""
    gas = {m.name: m.gas for m in results}
    out: dict[str, str] = {}

    create_rows = {n: g for n, g in gas.items() if n.startswith("create_job")}
    target = TARGETS["create_job"]
    missed = {n: g for n, g in create_rows.items() if g > target}
    steady = {n: g for n, g in create_rows.items() if n.endswith("steady_state")}
    if not missed:
        out["create_job"] = f"met in every case (worst {max(create_rows.values()):,})."
    elif set(missed) == {"create_job_open/first_time"}:
        first, steady_open = gas["create_job_open/first_time"], gas["create_job_open/steady_state"]
        out["create_job"] = (
            f"met by every job but the deployment's first (steady_state: open {steady_open:,},"
            f" directed {gas['create_job_directed/steady_state']:,}). The first job costs {first:,},"
            f" {first - target:,} over; {_fresh_slot_note(first, steady_open)}: the job counter and the"
            " market's payment-token balance (in the token) start at zero. It happens once per"
            " deployment (again only if the market's payment balance ever returns to exactly zero)."
            " What would reach it: the deployment opening and cancelling one 1-unit job, which leaves"
            " the counter at 1 and the unit credited to the deployer (the books stay exact)."
            f" The directed job's margin is thin: its provider word is one more fresh slot"
            f" (+{gas['create_job_directed/steady_state'] - steady_open:,} over open)."
        )
    else:
        worst_steady = max(steady.values())
        out["create_job"] = (
            f"missed ({', '.join(f'{n} {g:,}' for n, g in missed.items())}; worst steady_state {worst_steady:,})."
            " A job is four storage words and each fresh one costs 22,100; the escrow pull"
            " (transferFrom plus two balanceOf calls for the fee-on-transfer check) adds about 20,000."
        )

    accept_rows = {n: g for n, g in gas.items() if n.startswith("accept_job")}
    worst = max(accept_rows.values())
    out["accept_job"] = (
        f"met in every case (worst {worst:,})." if worst <= TARGETS["accept_job"]
        else f"missed ({', '.join(f'{n} {g:,}' for n, g in accept_rows.items())})."
    )

    first, steady = gas["settle_completed_2of3/first_time"], gas["settle_completed_2of3/steady_state"]
    target = TARGETS["settle_completed_2of3"]
    if first <= target and steady <= target:
        out["settle_completed_2of3"] = f"met in both cases ({first:,} first_time, {steady:,} steady_state)."
    elif steady <= target:
        out["settle_completed_2of3"] = (
            f"met in steady_state ({steady:,}); first_time ({first:,}) misses by {first - target:,}; "
            + _fresh_slot_note(first, steady)
            + ": the provider's payment, the treasury's fee and the client's refund are each credited"
            " to a claimable balance, and one that holds zero (never credited, or claimed since)"
            " costs 22,100 to write. That is the price of pull payments, which PROTOCOL.md requires"
            " (pushing three transfers costs more, and a reverting payee would block settlement)."
            " What would reach it for every payee that has been paid before: store claimable balances"
            " as amount + 1 and have `claim` leave the 1 (a sentinel, as OpenZeppelin's"
            " ReentrancyGuard does), so a claimed balance is never zero again; claim then forgoes its"
            " 4,800 refund. A payee's very first credit stays a fresh slot; batch settlement"
            " (PROTOCOL.md's Merkle-root plan: one quorum check and one credit per payee for many"
            " jobs) is what would amortise it."
        )
    else:
        out["settle_completed_2of3"] = f"missed in both cases ({first:,} first_time, {steady:,} steady_state)."
    return out


def measure() -> tuple[list[Measurement], dict[str, str]]:
    from ape import accounts, chain, networks, project

    with networks.parse_network_choice(NETWORK) as provider:
        bench = GasBench(project, chain, list(accounts.test_accounts))
        results = bench.run()
        fork = _evm_fork(provider)
    return results, {"network": NETWORK, "fork": fork}


def _evm_fork(provider: Any) -> str:
    try:
        return type(provider.evm_backend.chain.get_vm()).fork
    except AttributeError:  # another backend: not worth failing the bench over
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gas", description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent, help="where gas.json and GAS.md go")
    args = parser.parse_args(argv)
    started = time.monotonic()
    from ape.logging import LogLevel, logger

    logger.set_level(LogLevel.WARNING)  # one line per transaction would bury the table
    results, meta = measure()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "gas.json").write_text(json.dumps(to_json(results), indent=2) + "\n")
    (args.out_dir / "GAS.md").write_text(render_markdown(results, _explain(results), meta))
    width = max(len(m.name) for m in results)
    for m in results:
        print(f"{m.name:<{width}}  {m.gas:>10,}")
    for m, target, ok in target_rows(results):
        print(f"target {m.name}: {m.gas:,} {'<=' if ok else '>'} {target:,} {'pass' if ok else 'MISS'}")
    print(f"wrote {args.out_dir / 'gas.json'} and {args.out_dir / 'GAS.md'} in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
