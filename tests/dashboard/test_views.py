"""What each page shows of the story (gpumarket.dashboard.views), the formatting of its numbers
(units) and the throughput chart: exact amounts with their symbols, the right jobs, slashes with
their cause, the quorum's signers, and 'unknown' for what the market does not hold."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gpumarket.chain.follower import FollowerConfig
from gpumarket.chain.models import JobState
from gpumarket.dashboard import units
from gpumarket.dashboard.chart import ThroughputPoint, throughput_chart
from gpumarket.dashboard.index import MarketIndex
from gpumarket.dashboard.oracles import OracleWatch
from gpumarket.dashboard.queries import IndexReader, JobFilter
from gpumarket.dashboard.reads import ChainReads
from gpumarket.dashboard.views import DashboardViews, Unknown

from .conftest import BILLED_SECONDS, GPUS, PRICE, Story

MSTK = units.Token("0x0", "Mock Stake", "mSTK", 18)


@pytest.fixture(scope="module")
def views(story: Story, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardViews]:
    path: Path = tmp_path_factory.mktemp("views") / "index.sqlite"
    index = MarketIndex(
        story.market(), path, start_block=story.deployment.block, config=FollowerConfig(confirmations=0)
    )
    index.poll_once()
    watch = OracleWatch([])
    try:
        yield DashboardViews(
            ChainReads(story.market()), IndexReader(path), watch, story.deployment, cursor=lambda: index.cursor
        )
    finally:
        watch.close()
        index.close()


# ------------------------------------------------------------------------------------ units


def test_amounts_are_exact_whatever_their_size() -> None:
    assert MSTK.format(1_500 * 10**18 + 5 * 10**17) == "1,500.5 mSTK"
    assert MSTK.format(10**24 + 1) == "1,000,000.000000000000000001 mSTK"  # a float would drop the 1
    assert MSTK.format(2**256 - 1) == (
        "115,792,089,237,316,195,423,570,985,008,687,907,853,269,984,665,640,564,039,457.584007913129639935 mSTK"
    )
    assert MSTK.format(0) == "0 mSTK"
    assert units.Token("0x0", "Six", "USD", 6).per_gpu_second(1) == "0.000001 USD/GPU·s"
    assert units.bps(250) == "2.5 %" and units.bps(10_000) == "100 %"


def test_durations_and_times_read_as_a_person_says_them() -> None:
    assert units.seconds(0) == "0 s"
    assert units.seconds(3_725) == "1 h 2 min 5 s"
    assert units.seconds(90 * 86_400 + 61) == "90 d 1 min 1 s"
    assert units.relative(1_000 + 90, 1_000) == "in 1 min 30 s"
    assert units.relative(1_000, 1_000 + 7_200) == "2 h ago"
    assert units.utc(1_767_225_600) == "2026-01-01 00:00:00 UTC"
    assert units.short_address("0x6c6eBE19d43874f710464730Ea16994c3D416920") == "0x6c6e…6920"


def test_the_chart_draws_a_bar_per_report_against_each_reports_floor() -> None:
    points = [
        ThroughputPoint(10, 1_767_225_600, 40, 2, 10, True),
        ThroughputPoint(20, 1_767_229_200, 1, 2, 10, False),
    ]
    svg = str(throughput_chart(points))
    assert svg.startswith("<svg") and svg.count("<rect") == 2 and svg.count('class="floor"') == 2
    assert 'class="report verified"' in svg and 'class="report rejected"' in svg
    assert "measured 40 GOPS for 2 GPU(s), floor 10 GOPS per GPU" in svg
    assert "No hardware report yet" in str(throughput_chart([]))


# ------------------------------------------------------------------------------------ pages


def test_the_market_page_sums_exactly_with_symbols(story: Story, views: DashboardViews) -> None:
    page = views.market()
    stake, pay = views.stake_token, views.payment_token
    assert (stake.symbol, pay.symbol) == ("mSTK", "mPAY")
    totals = dict(page["totals"])
    paid = sum(event.provider_payment for event in story.settlements.values())
    assert totals["Paid to providers"] == pay.format(paid) and paid % 10**18 != 0  # a fraction, exact
    assert totals["Slashed"] == stake.format(sum(event.amount for event in story.slashes))
    assert dict(page["job_states"]) == {
        "OPEN": 1,
        "RUNNING": 1,
        "COMPLETED": 1,
        "FAILED": 1,
        "CANCELLED": 1,
        "EXPIRED": 1,
    }
    parameters = {row["name"]: row for row in page["parameters"]}
    assert parameters["protocol_fee_bps"]["value"] == "2.5 %" and parameters["protocol_fee_bps"]["upper"] == "10 %"
    assert parameters["settle_grace"]["lower"] == "5 min"
    assert parameters["min_stake"]["value"] == "1,000 mSTK"
    assert page["members"] == tuple(story.committee.addresses) and page["threshold"] == 2
    assert page["paused"] is False and page["provider_count"] == 3
    assert page["timelock"] is None  # its owner is an account: no pending changes to show
    assert page["recent"][0]["name"] == "JobExpired"


def test_the_providers_page_shows_each_claim_and_stake(story: Story, views: DashboardViews) -> None:
    rows = {row["address"]: row for row in views.providers()["providers"]}
    assert list(rows) == [story.honest, story.lazy, story.spoofer]
    honest = rows[story.honest]
    assert (honest["gpu_class"], honest["gpu_count"], honest["gpus_in_use"]) == ("cpu-dev", GPUS, 1)
    assert honest["price"] == views.payment_token.per_gpu_second(PRICE) == "0.000001 mPAY/GPU·s"
    assert honest["verified"] and not rows[story.spoofer]["verified"]
    assert rows[story.lazy]["failures"] == 1


def test_a_provider_page_shows_its_reports_and_its_slash(story: Story, views: DashboardViews) -> None:
    spoofer = views.provider(story.spoofer)
    (slash,) = spoofer["slashes"]
    assert slash["cause"] == "spoofed hardware claim" and slash["job_id"] is None
    assert slash["amount"] == views.stake_token.format(story.slashes[0].amount)
    (report,) = spoofer["reports"]
    assert report["verdict"] == "rejected" and report["measured"] == "1 GOPS" and report["required"] == "20 GOPS"
    assert set(report["signers"]) == set(story.committee.addresses[:2])
    lazy = views.provider(story.lazy)
    assert [s["job_id"] for s in lazy["slashes"]] == [story.jobs["failed"]]
    honest = views.provider(story.honest)
    assert [r["verdict"] for r in honest["reports"]] == ["verified", "verified"]
    assert str(honest["chart"]).count("<rect") == 2
    assert {row["job_id"] for row in honest["jobs"]} == {story.jobs["completed"], story.jobs["running"]}


def test_a_job_page_tells_its_story_with_payment_refund_and_signers(story: Story, views: DashboardViews) -> None:
    settled = story.settlements["completed"]
    page = views.job(story.jobs["completed"])
    assert page["job"]["state"] == "COMPLETED"
    assert [entry["name"] for entry in page["timeline"]] == ["JobCreated", "JobAccepted", "JobSettled"]
    settlement = page["settlement"]
    assert settlement["gpu_seconds"] == f"{BILLED_SECONDS} GPU·s"
    assert settlement["payment"] == views.payment_token.format(settled.provider_payment)
    assert settlement["refund"] == views.payment_token.format(settled.client_refund)
    assert settlement["slashed"] == "0 mSTK"
    assert set(settlement["signers"]) == set(story.committee.addresses[:2])
    failed = views.job(story.jobs["failed"])["settlement"]
    assert failed["outcome"] == "FAILED" and failed["slashed"] == views.stake_token.format(
        story.settlements["failed"].slashed
    )
    expired = views.job(story.jobs["expired"])
    assert [entry["name"] for entry in expired["timeline"]] == ["JobCreated", "JobExpired"]
    assert expired["settlement"] is None and expired["job"]["provider"] is None


def test_the_jobs_page_filters_and_pages(story: Story, views: DashboardViews) -> None:
    running = views.jobs(JobFilter(state=JobState.RUNNING))
    assert [row["job_id"] for row in running["jobs"]] == [story.jobs["running"]]
    assert running["filter"]["state"] == "RUNNING" and running["pages"] == 1
    by_client = views.jobs(JobFilter(client=story.client))
    assert by_client["total"] == len(story.jobs)
    assert views.jobs(JobFilter(), page=2)["jobs"] == []


def test_the_oracle_pages_list_the_committee_and_what_each_member_signed(story: Story, views: DashboardViews) -> None:
    page = views.oracles()
    assert [row["address"] for row in page["members"]] == list(story.committee.addresses)
    assert all(not row["up"] for row in page["members"])  # no URL given: none answers
    first = views.oracle(story.committee.addresses[0])
    assert first["oracle"]["member"] and len(first["signed"]) == 6  # 4 hardware reports, 2 settlements
    assert first["oracle"]["last_signed"]["job_id"] == story.jobs["failed"]


def test_what_the_market_does_not_hold_is_unknown(story: Story, views: DashboardViews) -> None:
    with pytest.raises(Unknown, match="job 999"):
        views.job(999)
    with pytest.raises(Unknown, match="provider"):
        views.provider(story.client)  # an account, never registered
    with pytest.raises(Unknown, match="oracle"):
        views.oracle(story.client)
