"""What each page shows, as the values its template renders: the index (what happened), the chain
read at the index's block (what is), the oracles' own APIs (how the committee is doing).

    views = DashboardViews(reads, reader, watch, deployment, cursor=index_cursor)
    views.market()                  # parameters, committee, tokens, totals, jobs per state, pause,
                                    # the changes the owning Timelock has scheduled
    views.providers()               # every provider's claim, stake and standing
    views.provider("0x...")         # one provider: its reports against the floor, slashes, jobs
    views.jobs(JobFilter(...), page=1)
    views.job(7)                    # its timeline, payment, refund, slash, the quorum's signers
    views.oracles(); views.oracle("0x...")

Every page is read at one block (``snapshot``): the last the index has reached (or the market's
deployment block, before it has), so its numbers and its events agree. Amounts are formatted
here, exactly, with their token's symbol; times as UTC with their distance from the block's time.
An unknown job, provider or oracle raises :class:`Unknown` (the app answers 404).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpumarket.chain.market_deploy import MarketDeployment
from gpumarket.chain.models import ZERO_ADDRESS, JobState
from gpumarket.dashboard import units
from gpumarket.dashboard.chart import ThroughputPoint, throughput_chart
from gpumarket.dashboard.oracles import Challenge, OracleStatus, OracleWatch
from gpumarket.dashboard.queries import IndexedEvent, IndexReader, JobFilter, JobRow
from gpumarket.dashboard.reads import GOVERNANCE_EVENTS, ChainReads, Governance, Parameter
from gpumarket.measure.classes import class_by_id

__all__ = ["PAGE_SIZE", "DashboardViews", "Snapshot", "Unknown", "class_name"]

PAGE_SIZE = 50
RECENT_EVENTS = 15

Context = dict[str, Any]


class Unknown(LookupError):
    """No such ``kind`` ("job", "provider", "oracle") as ``key`` in the market."""

    def __init__(self, kind: str, key: object) -> None:
        self.kind = kind
        super().__init__(f"no {kind} {key} in this market")


@dataclass(frozen=True)
class Snapshot:
    """The block a page is read at, its time, governance at that block, and the page's version."""

    block: int
    timestamp: int
    governance: Governance
    version: str  # what the page says it shows (see version())


def class_name(gpu_class: int) -> str:
    """The class's name in the package's table, or its id when the table does not know it."""
    try:
        return class_by_id(gpu_class).name
    except KeyError:
        return f"class {gpu_class}"


_BPS_PARAMETERS = ("collateral_bps", "slash_bps", "client_share_bps", "protocol_fee_bps", "spoof_slash_bps")
_DURATION_PARAMETERS = ("unbonding_period", "settle_grace", "hardware_validity")


class DashboardViews:
    """Builds each page's values; see the module docstring."""

    def __init__(
        self,
        reads: ChainReads,
        reader: IndexReader,
        oracles: OracleWatch,
        deployment: MarketDeployment,
        *,
        cursor: Callable[[], int],
    ) -> None:
        self.reads = reads
        self.reader = reader
        self.oracle_watch = oracles
        self.deployment = deployment
        self.cursor = cursor

    # ------------------------------------------------------------------ shared

    @property
    def stake_token(self) -> units.Token:
        return self.reads.tokens[0]

    @property
    def payment_token(self) -> units.Token:
        return self.reads.tokens[1]

    def version(self, cursor: int | None = None) -> str:
        """Changes whenever a page may show something new: a block indexed, an oracle's status."""
        return f"{self.cursor() if cursor is None else cursor}.{self.oracle_watch.generation}"

    def snapshot(self) -> Snapshot:
        # The version is taken before anything is read, so a page is never older than the version
        # it carries (at worst newer: the script then fetches it once more).
        cursor = self.cursor()
        version = self.version(cursor)
        # The index may hold events of a range whose end it has not recorded yet: read the chain at
        # least as late as its newest event, so no job or provider it lists is missing there.
        block = max(cursor, self.reader.last_block() or 0, self.deployment.block)
        governance = self.reads.governance(block, cache_key=("governance", self.reader.latest(GOVERNANCE_EVENTS)))
        return Snapshot(block, self.reads.timestamp(block), governance, version)

    def _frame(self, snapshot: Snapshot, title: str, section: str) -> Context:
        """What every page shows around its content."""
        return {
            "title": title,
            "section": section,
            "block": snapshot.block,
            "block_time": units.utc(snapshot.timestamp),
            "chain_id": self.deployment.chain_id,
            "market": self.deployment.market,
            "paused": snapshot.governance.paused,
            "version": snapshot.version,
        }

    def _when(self, timestamp: int, now: int) -> str:
        return f"{units.utc(timestamp)} ({units.relative(timestamp, now)})" if timestamp else "—"

    def _parameter(self, parameter: Parameter) -> Context:
        def show(value: int) -> str:
            if parameter.name == "min_stake":
                return self.stake_token.format(value)
            if parameter.name in _BPS_PARAMETERS:
                return units.bps(value)
            if parameter.name in _DURATION_PARAMETERS:
                return units.seconds(value)
            if parameter.name == "collateral_rate":  # fixed point, 1e18 = one stake unit per payment unit
                return f"{units.scaled(value, 18)} stake per payment unit"
            return f"{value:,}"

        return {
            "name": parameter.name,
            "value": show(parameter.value),
            "lower": show(parameter.lower),
            "upper": show(parameter.upper),
        }

    def _event_row(self, event: IndexedEvent, now: int) -> Context:
        return {
            "name": event.name,
            "block": event.block,
            "when": self._when(event.timestamp, now),
            "tx_hash": event.tx_hash,
            "job_id": event.job_id,
            "account": event.account,
            "account_is_provider": event.account is not None and event.args.get("provider") == event.account,
        }

    def _job_row(self, row: JobRow, now: int) -> Context:
        return {
            "job_id": row.job_id,
            "state": row.state.name,
            "client": row.client,
            "provider": None if row.provider == ZERO_ADDRESS else row.provider,
            "escrow": self.payment_token.format(row.escrow),
            "created": self._when(row.created_at, now),
        }

    # ------------------------------------------------------------------ market

    def market(self) -> Context:
        snapshot = self.snapshot()
        governance, now = snapshot.governance, snapshot.timestamp
        totals = self.reader.totals()
        stake, pay = self.stake_token.format, self.payment_token.format
        statuses = self.oracle_watch.statuses()
        return {
            **self._frame(snapshot, "Market", "market"),
            "parameters": [self._parameter(parameter) for parameter in governance.parameters],
            "epoch": governance.epoch,
            "threshold": governance.threshold,
            "members": governance.members,
            "owner": governance.owner,
            "pending_owner": None if governance.pending_owner == ZERO_ADDRESS else governance.pending_owner,
            "treasury": governance.treasury,
            "tokens": [("stake", self.stake_token), ("payment", self.payment_token)],
            "totals": [
                ("Staked (free, locked, unbonding)", stake(totals.staked)),
                ("Escrowed (open and running jobs)", pay(totals.escrowed)),
                ("Paid to providers", pay(totals.paid)),
                ("Protocol fees", pay(totals.fees)),
                ("Refunded to clients at settlement", pay(totals.refunded)),
                ("Slashed", stake(totals.slashed)),
            ],
            "job_states": [(state.name, count) for state, count in self.reader.job_states().items()],
            "provider_count": len(self.reader.providers()),
            "oracles_up": sum(status.up for status in statuses),
            "oracles_known": len(statuses),
            "recent": [self._event_row(e, now) for e in self.reader.events(newest_first=True, limit=RECENT_EVENTS)],
            "timelock": self._timelock(snapshot),
        }

    def _timelock(self, snapshot: Snapshot) -> Context | None:
        """The owning Timelock and its pending changes; None when the owner is an account."""
        timelock = self.reads.timelock(snapshot.governance.owner, snapshot.block)
        if timelock is None:
            return None
        now = snapshot.timestamp
        return {
            "address": timelock.address,
            "minimum_delay": units.seconds(timelock.minimum_delay),
            "pending": [
                {
                    "id": operation.hex_id,
                    "change": operation.summary,
                    # As of the page's block, like the time beside it (the wrapper's is the latest block's).
                    "state": "ready" if now >= operation.ready_at else "waiting",
                    "executable": self._when(operation.ready_at, now),
                }
                for operation in timelock.pending
            ],
        }

    # ------------------------------------------------------------------ providers

    def _provider_facts(self, address: str, snapshot: Snapshot) -> Context:
        state = self.reads.provider(address, snapshot.block)
        record, stake = state.record, state.stake
        now = snapshot.timestamp
        return {
            "address": address,
            "registered": record.registered,
            "gpu_class": class_name(record.gpu_class) if record.registered else "—",
            "gpu_count": record.gpu_count,
            "gpus_in_use": state.gpus_in_use,
            "price": self.payment_token.per_gpu_second(record.price_per_gpu_second),
            "endpoint": record.endpoint,
            "free": self.stake_token.format(stake.free),
            "locked": self.stake_token.format(stake.locked),
            "unbonding": self.stake_token.format(stake.unbonding),
            "release_at": self._when(stake.release_at, now) if stake.unbonding else None,
            "verified": state.verified,
            "verified_until": self._when(record.verified_until, now) if record.verified_until else None,
            "jailed": record.jailed,
            "failures": record.recent_failures,
            "failure_window_start": self._when(record.failure_window_start, now),
            "claim_version": record.claim_version,
        }

    def providers(self) -> Context:
        snapshot = self.snapshot()
        rows = [self._provider_facts(address, snapshot) for address in self.reader.providers()]
        return {**self._frame(snapshot, "Providers", "providers"), "providers": rows}

    def provider(self, address: str) -> Context:
        snapshot = self.snapshot()
        if address not in self.reader.providers():
            raise Unknown("provider", address)
        now = snapshot.timestamp
        reports = self.reader.events(account=address, names=("HardwareVerified", "HardwareRejected"))
        points, rows = [], []
        for event in reports:
            args, verified = event.args, event.name == "HardwareVerified"
            gpu_class, gpu_count = int(args["gpu_class"]), int(args["gpu_count"])
            # The floor the report was measured against: its class's at the report's block.
            floor = self.reader.class_floor(gpu_class, event.block)
            if floor is None:
                floor = self.reads.class_floor(gpu_class, event.block)
            required = floor * gpu_count if verified else int(args["required_throughput"])
            points.append(
                ThroughputPoint(
                    event.block, event.timestamp, int(args["measured_throughput"]), gpu_count, floor, verified
                )
            )
            rows.append(
                {
                    **self._event_row(event, now),
                    "verdict": "verified" if verified else "rejected",
                    "gpu_class": class_name(gpu_class),
                    "gpu_count": gpu_count,
                    "measured": units.gops(int(args["measured_throughput"])),
                    "required": units.gops(required),
                    "valid_until": self._when(int(args["verified_until"]), now) if verified else None,
                    "slashed": None if verified else self.stake_token.format(int(args["slashed"])),
                    "epoch": args["epoch"],
                    "signers": self.reader.quorum(event.tx_hash),
                }
            )
        slashes = [
            {
                **self._event_row(slash.event, now),
                "amount": self.stake_token.format(int(slash.event.args["amount"])),
                "beneficiary": None
                if slash.event.args["beneficiary"] == ZERO_ADDRESS
                else slash.event.args["beneficiary"],
                "beneficiary_share": self.stake_token.format(int(slash.event.args["beneficiary_share"])),
                "job_id": slash.job_id,
                "cause": f"job {slash.job_id} failed"
                if slash.job_id is not None
                else "spoofed hardware claim"
                if slash.hardware
                else "—",
            }
            for slash in self.reader.slashes(address)
        ]
        jobs, total = self.reader.jobs(JobFilter(provider=address), limit=PAGE_SIZE)
        return {
            **self._frame(snapshot, f"Provider {units.short_address(address)}", "providers"),
            "provider": self._provider_facts(address, snapshot),
            "chart": throughput_chart(points),
            "reports": list(reversed(rows)),
            "slashes": slashes,
            "jobs": [self._job_row(row, now) for row in jobs],
            "job_total": total,
        }

    # ------------------------------------------------------------------ jobs

    def jobs(self, where: JobFilter, page: int = 1) -> Context:
        snapshot = self.snapshot()
        rows, total = self.reader.jobs(where, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        pages = max(1, -(-total // PAGE_SIZE))
        return {
            **self._frame(snapshot, "Jobs", "jobs"),
            "jobs": [self._job_row(row, snapshot.timestamp) for row in rows],
            "total": total,
            "page": page,
            "pages": pages,
            "filter": {
                "state": "" if where.state is None else where.state.name,
                "provider": where.provider or "",
                "client": where.client or "",
            },
            "states": [state.name for state in JobState if state is not JobState.NONE],
        }

    def job(self, job_id: int) -> Context:
        snapshot = self.snapshot()
        row = self.reader.job(job_id)
        if row is None:
            raise Unknown("job", job_id)
        job, now = self.reads.job(job_id, snapshot.block), snapshot.timestamp
        stake, pay = self.stake_token.format, self.payment_token.format
        timeline = [self._timeline_entry(event, now) for event in self.reader.events(job_id=job_id)]
        settlement = None
        for event in self.reader.events(job_id=job_id, names=("JobSettled",)):
            args = event.args
            settlement = {
                "outcome": args["outcome"],
                "gpu_seconds": f"{int(args['gpu_seconds']):,} GPU·s",
                "payment": pay(int(args["provider_payment"])),
                "fee": pay(int(args["protocol_fee"])),
                "refund": pay(int(args["client_refund"])),
                "slashed": stake(int(args["slashed"])),
                "result_hash": args["result_hash"],
                "evidence_hash": args["evidence_hash"],
                "signers": self.reader.quorum(event.tx_hash),
                "tx_hash": event.tx_hash,
            }
        unpublished, challenges = [], []
        accepted = [i for i, entry in enumerate(timeline) if entry["name"] == "JobAccepted"]
        if accepted:  # taken: the oracles challenged its provider until it ended
            for found in self.oracle_watch.challenges(job_id):
                if found.challenges is None:
                    unpublished.append({"oracle": found.oracle.address, "note": found.note})
                else:
                    challenges += [self._challenge_entry(found.oracle.address, c) for c in found.challenges]
            # Between the acceptance and the end, in the order the oracles ran them (their clocks,
            # not the chain's: a local chain's block times lag the wall clock).
            challenges.sort(key=lambda entry: entry["time"])
            timeline[accepted[0] + 1 : accepted[0] + 1] = challenges
        return {
            **self._frame(snapshot, f"Job {job_id}", "jobs"),
            "job": {
                **self._job_row(row, now),
                "gpu_class": class_name(job.gpu_class),
                "gpu_count": job.gpu_count,
                "max_price": self.payment_token.per_gpu_second(job.max_price_per_gpu_second),
                "price": self.payment_token.per_gpu_second(job.price_per_gpu_second) if job.started_at else None,
                "max_duration": units.seconds(job.max_duration),
                "accept_deadline": self._when(job.accept_deadline, now),
                "started": self._when(job.started_at, now),
                "paid_until": self._when(job.end_deadline, now),
                "collateral": stake(job.collateral) if job.collateral else None,
                "spec_hash": "0x" + job.spec_hash.hex(),
            },
            "timeline": timeline,
            "settlement": settlement,
            "unpublished": unpublished,
        }

    def _timeline_entry(self, event: IndexedEvent, now: int) -> Context:
        args, stake, pay = event.args, self.stake_token.format, self.payment_token.format
        facts: list[tuple[str, str]]
        if event.name == "JobCreated":
            directed = args["provider"] != ZERO_ADDRESS
            facts = [
                ("escrow", pay(int(args["escrow"]))),
                ("max price", self.payment_token.per_gpu_second(int(args["max_price_per_gpu_second"]))),
                ("GPUs", f"{args['gpu_count']} × {class_name(int(args['gpu_class']))}"),
                ("for", "the provider named" if directed else "any provider"),
            ]
        elif event.name == "JobAccepted":
            facts = [
                ("price", self.payment_token.per_gpu_second(int(args["price_per_gpu_second"]))),
                ("collateral", stake(int(args["collateral"]))),
            ]
        elif event.name == "JobSettled":
            facts = [
                ("outcome", str(args["outcome"])),
                ("GPU-seconds", f"{int(args['gpu_seconds']):,}"),
                ("payment", pay(int(args["provider_payment"]))),
                ("refund", pay(int(args["client_refund"]))),
                ("slashed", stake(int(args["slashed"]))),
            ]
        elif event.name == "JobCancelled":
            facts = [("refund", pay(int(args["refund"])))]
        elif event.name == "JobExpired":
            facts = [
                ("was", str(args["previous_state"])),
                ("refund", pay(int(args["refund"]))),
                ("collateral released", stake(int(args["collateral_released"]))),
            ]
        else:
            facts = []
        return {**self._event_row(event, now), "facts": facts, "challenge": False}

    def _challenge_entry(self, oracle: str | None, challenge: Challenge) -> Context:
        measured = challenge.measured_gops
        return {
            "challenge": True,
            "name": "Challenge",
            "time": challenge.at,
            "when": units.utc(int(challenge.at)),  # the oracle's clock: no distance from the block's
            "kind": challenge.kind,
            "oracle": oracle,
            "verdict": challenge.verdict,
            "measured": "no valid answer" if measured is None else f"{units.gops(measured)} measured",
            "required": units.gops(challenge.required_gops),
        }

    # ------------------------------------------------------------------ oracles

    def _oracle_facts(self, status: OracleStatus | None, address: str | None, snapshot: Snapshot) -> Context:
        """An oracle as its API last answered (``status``; None: no URL given answers as it) and as
        the chain saw it sign (``address``; None: an oracle that is down, so unknown)."""
        now = snapshot.timestamp
        signed = self.reader.signed_by(address, names=("JobSettled",), limit=1) if address else []
        published = None if status is None else status.last_settlement_at
        return {
            "address": address,
            "member": address in snapshot.governance.members,
            "url": None if status is None else status.url,
            "up": status is not None and status.up,
            "error": "none of the oracle URLs given answers as this member" if status is None else status.error,
            "epoch": None if status is None else status.epoch,
            "reports_signed": None if status is None else status.reports_signed,
            "settled_jobs": None if status is None else status.settled_jobs,
            "submissions": [] if status is None else list(status.submissions),
            "peers_reachable": None if status is None else status.peers_reachable,
            "last_settlement": None if published is None else self._when(published, now),
            "last_signed": {"job_id": signed[0].job_id, "when": self._when(signed[0].timestamp, now)}
            if signed
            else None,
            "checked": None if status is None else units.utc(int(status.checked_at)),
        }

    def oracles(self) -> Context:
        snapshot = self.snapshot()
        statuses = self.oracle_watch.statuses()
        answering = {status.address: status for status in statuses if status.up and status.address}
        polled = [self._oracle_facts(status, status.address, snapshot) for status in statuses]
        return {
            **self._frame(snapshot, "Oracles", "oracles"),
            "epoch": snapshot.governance.epoch,
            "threshold": snapshot.governance.threshold,
            "members": [self._oracle_facts(answering.get(m), m, snapshot) for m in snapshot.governance.members],
            "polled": polled,
            "down": [row for row in polled if not row["up"]],
        }

    def oracle(self, address: str) -> Context:
        snapshot = self.snapshot()
        answering = {s.address: s for s in self.oracle_watch.statuses() if s.up and s.address}
        signed = self.reader.signed_by(address)
        if address not in snapshot.governance.members and address not in answering and not signed:
            raise Unknown("oracle", address)
        return {
            **self._frame(snapshot, f"Oracle {units.short_address(address)}", "oracles"),
            "oracle": self._oracle_facts(answering.get(address), address, snapshot),
            "signed": [
                {**self._event_row(event, snapshot.timestamp), "provider": event.args.get("provider")}
                for event in signed
            ],
        }
