"""The checks every story's JSON must pass, with the protocol's numbers computed here from the
deploy parameters (docs/PROTOCOL.md's rules written out again, not gpumarket.demo.rules)."""

from __future__ import annotations

from typing import Any

from gpumarket.chain.params import DeployParams
from gpumarket.demo.story import StoryParams


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def check_story_json(summary: dict[str, Any], story: StoryParams, deploy: DeployParams) -> None:
    p = deploy.parameters
    prices = {role.name: role.price for role in story.providers}
    lazy = {role.name for role in story.providers if role.lazy}
    jobs = summary["jobs"]
    assert len(jobs) == len(story.providers) + (1 if story.open_job else 0)
    # Every provider got its directed job, and the open one went to one of them.
    assert [job["provider"] for job in jobs if job["directed"]] == [role.name for role in story.providers]
    for job in jobs:
        price = prices[job["provider"]]
        escrow = story.max_price * story.max_duration  # one GPU
        collateral = ceil_div(price * story.max_duration * p.collateral_bps * p.collateral_rate, 10_000 * 10**18)
        assert int(job["price_per_gpu_second"]) == price
        assert int(job["escrow"]) == escrow and int(job["collateral"]) == collateral
        paid, fee, refunded, slashed = (int(job[k]) for k in ("paid", "fee", "refunded", "slashed"))
        if job["provider"] in lazy:
            assert job["outcome"] == "FAILED", job
            assert (paid, fee, job["gpu_seconds"], refunded) == (0, 0, 0, escrow)
            assert slashed == ceil_div(collateral * p.slash_bps, 10_000)
            assert int(job["client_share"]) == ceil_div(slashed * p.client_share_bps, 10_000)
            assert job["result"] is None
        else:
            assert job["outcome"] == "COMPLETED", job
            # Metered seconds: at least one (each job computes for a second or more), within the cap.
            assert 1 <= job["gpu_seconds"] <= story.max_duration
            assert paid == price * job["gpu_seconds"]
            assert fee == ceil_div(paid * p.protocol_fee_bps, 10_000)
            assert int(job["provider_received"]) == paid - fee
            assert refunded == escrow - paid and slashed == 0
            assert job["result"] == "ok"
    assert summary["slashed_providers"] == sorted(lazy)
    assert summary["conservation_ok"] is True and summary["conservation_problems"] == []

    # Holdings: each account's change is the sum of its jobs' money.
    change = {row["name"]: (int(row["change_stake"]), int(row["change_payment"])) for row in summary["accounts"]}
    for role in story.providers:
        own = [job for job in jobs if job["provider"] == role.name]
        slashed, received = sum(int(j["slashed"]) for j in own), sum(int(j["provider_received"]) for j in own)
        assert change[role.name] == (-slashed, received)
    client_share = sum(int(j["client_share"]) for j in jobs)
    assert change["client"] == (client_share, -sum(int(j["paid"]) for j in jobs))
    assert change["treasury"] == (sum(int(j["slashed"]) for j in jobs) - client_share, sum(int(j["fee"]) for j in jobs))
    assert summary["ok"] is True and summary["deviations"] == []
