"""Who pays when a job's image cannot be had (gpumarket.oracle.images): the verdict's rules, and the
job loop (JobMonitor) deciding from its own checks of a real registry (Debian's docker-registry on
loopback, the test image pushed with podman) while a real HTTP agent double reports the job
pulling, then lost for an image reason.

The chain side is a small double (the job and its provider's endpoint, as Market reads them):
the policy acts before any settlement, and settlement is tested elsewhere (tests/oracle_service).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gpumarket.agentapi.errors import ProviderUnreachable
from gpumarket.chain.artifacts import load_artifacts
from gpumarket.chain.connection import EMBEDDED, connect
from gpumarket.chain.keys import test_account, test_oracle
from gpumarket.chain.market_deploy import deploy_market_web3
from gpumarket.chain.params import load_params
from gpumarket.containers.registry import ImageCheck, ImageStatus
from gpumarket.oracle.challenge import ChallengeOutcome
from gpumarket.oracle.images import (
    EXPIRY,
    IMAGE_REASONS,
    ImageConfig,
    ImagePolicy,
    ImageWatch,
    RecordedCheck,
    advertised_limit,
    verdict,
)
from gpumarket.oracle.jobs import JobConfig, JobMonitor
from gpumarket.oracle.service import OracleService, OracleServiceConfig
from gpumarket.oracle.signer import OracleSigner
from gpumarket.oracle.store import DecisionStore
from gpumarket.signing.eip712 import Domain, Outcome
from helpers.registry import LocalRegistry, local_registry

from .doubles import AgentDouble, ContractDouble, MarketDouble, running_job

IMAGE = "ghcr.io/team/train@sha256:" + "ab" * 32
MiB = 2**20
CHECK_EVERY_STEP = ImageConfig(check_interval_s=0)


def found(size: int = 100 * MiB, at: float = 0.0) -> RecordedCheck:
    return RecordedCheck(at, ImageStatus.FOUND, size, "found")


def missed(status: ImageStatus = ImageStatus.UNREACHABLE, at: float = 0.0) -> RecordedCheck:
    return RecordedCheck(at, status, None, "ConnectionRefusedError")


# ---------------------------------------------------------------------- the verdict (unit)


@pytest.mark.parametrize("reason", sorted(IMAGE_REASONS))
def test_failed_only_with_two_found_checks_within_the_advertised_limit(reason) -> None:
    # image_too_large included: the agent sizes an image from its manifest, the oracle's measure,
    # so an image found within the limit every time makes that claim false too.
    result = verdict(IMAGE, reason, [found(at=1), found(at=3)], 200 * MiB)
    assert result.failed
    assert result.detail == (
        f"the agent reports {reason} for {IMAGE}, but this oracle fetched its manifest 2 times over the "
        f"attempt, size {100 * MiB} bytes (100.0 MiB) within the advertised max_image_bytes {200 * MiB}"
    )
    # The size exactly at the limit is within it; one byte over is the client's image too large.
    assert verdict(IMAGE, reason, [found(), found()], 100 * MiB).failed
    assert not verdict(IMAGE, reason, [found(), found(100 * MiB + 1)], 100 * MiB).failed


@pytest.mark.parametrize(
    ("checks", "limit", "why"),
    [
        ([], 200 * MiB, "made no check of it"),
        ([found()], 200 * MiB, "only 1 time(s) over the attempt (at least 2 needed)"),
        ([found(), missed(), found()], 200 * MiB, "1 of this oracle's 3 check(s) did not find it (unreachable"),
        ([missed(ImageStatus.NOT_FOUND), missed(ImageStatus.NOT_FOUND)], 200 * MiB, "did not find it (not_found"),
        ([missed(ImageStatus.UNCHECKABLE)] * 3, 200 * MiB, "did not find it (uncheckable"),
        ([found(), found()], None, "the provider advertises no max_image_bytes"),
        ([found(), found(200 * MiB + 1)], 200 * MiB, "is over the advertised max_image_bytes"),
    ],
)
def test_anything_else_is_no_decision_and_says_the_job_ends_by_expiry(checks, limit, why) -> None:
    for reason in sorted(IMAGE_REASONS):
        result = verdict(IMAGE, reason, checks, limit)
        assert not result.failed
        assert why in result.detail, result.detail
        assert result.detail.startswith(f"the agent reports {reason} for {IMAGE}; ")
        assert result.detail.endswith(EXPIRY) and (
            EXPIRY == "the job ends by expiry: client refunded, provider not slashed"
        )


def test_no_image_named_is_no_decision_and_thresholds_are_config() -> None:
    assert not verdict(None, "image_not_found", [found(), found()], 200 * MiB).failed
    strict = ImageConfig(min_checks=3)
    assert not verdict(IMAGE, "image_not_found", [found(), found()], 200 * MiB, strict).failed
    assert verdict(IMAGE, "image_not_found", [found()] * 3, 200 * MiB, strict).failed
    assert verdict(IMAGE, "image_not_found", [found()], 200 * MiB, ImageConfig(min_checks=1)).failed
    for bad in ({"min_checks": 0}, {"check_interval_s": -1}, {"min_checks": 4, "max_checks": 3}):
        with pytest.raises(ValueError):
            ImageConfig(**bad)


@pytest.mark.parametrize(
    ("health", "limit"),
    [
        ({"max_image_bytes": 5}, 5),
        ({"max_image_bytes": 0}, 0),
        ({}, None),
        ({"max_image_bytes": None}, None),
        ({"max_image_bytes": -1}, None),
        ({"max_image_bytes": True}, None),
        ({"max_image_bytes": "5"}, None),
        ({"max_image_bytes": 5.0}, None),
    ],
)
def test_advertised_limit(health, limit) -> None:
    assert advertised_limit(health) == limit


def test_observe_records_checks_at_its_pace_and_concludes_once() -> None:
    calls: list[str] = []

    class Counting(ImagePolicy):
        def check(self, image: str):
            calls.append(image)
            return super().check(image)

    policy = Counting({}, ImageConfig(check_interval_s=5))
    watch = ImageWatch()

    def health() -> dict[str, int]:
        return {"max_image_bytes": 10}

    pulling = {"state": "spec_received", "started_at": None, "image": IMAGE, "pulling": True}
    for now in (0, 1, 4, 5, 6, 10.5):
        assert policy.observe(watch, pulling, now, health) is None
    assert [c.at for c in watch.checks] == [0, 5, 10.5]
    lost = {**pulling, "state": "lost", "pulling": False, "reason": "image_unavailable"}
    first = policy.observe(watch, lost, 11, health)
    assert first is not None and not first.failed and "uncheckable" in first.detail  # ghcr.io: not configured
    assert len(calls) == 4  # one more check when the failure was reported
    assert policy.observe(watch, lost, 20, health) is first and len(calls) == 4  # final: nothing more


def test_a_health_that_does_not_answer_is_asked_again_before_the_verdict() -> None:
    policy = ImagePolicy({}, ImageConfig(check_interval_s=0))
    watch = ImageWatch()

    def down() -> dict:
        raise ProviderUnreachable("http://agent", "ConnectionRefusedError")

    lost = {"state": "lost", "started_at": None, "image": IMAGE, "pulling": False, "reason": "image_not_found"}
    pending = policy.observe(watch, lost, 0, down)
    assert pending is not None and not pending.failed and "asking again on the next poll" in pending.detail
    assert watch.concluded is None and len(watch.checks) == 1
    final = policy.observe(watch, lost, 1, lambda: {"max_image_bytes": 10})
    assert final is watch.concluded and final.detail.endswith(EXPIRY)
    assert len(watch.checks) == 1  # the failure's check is made once


class FoundEveryTime(ImagePolicy):
    """A policy whose registry serves the image (100 MiB) at every check; counts the checks."""

    def __init__(self, config: ImageConfig) -> None:
        super().__init__({}, config)
        self.calls: list[str] = []

    def check(self, image: str):
        self.calls.append(image)
        return ImageCheck(ImageStatus.FOUND, 100 * MiB, "found")


@pytest.mark.parametrize("reason", sorted(IMAGE_REASONS))
def test_a_failure_claimed_at_once_is_checked_again_until_there_are_enough_checks(reason) -> None:
    # The agent never reported pulling: the failure's own check is the first. One check is too
    # few to slash on, and too few to let go: the oracle checks again, check_interval_s apart.
    policy = FoundEveryTime(ImageConfig(check_interval_s=5, min_checks=3))
    watch = ImageWatch()

    def health() -> dict[str, int]:
        return {"max_image_bytes": 200 * MiB}

    lost = {"state": "lost", "started_at": None, "image": IMAGE, "pulling": False, "reason": reason}
    for now, checks in ((0, 1), (2, 1), (5, 2), (6, 2)):
        pending = policy.observe(watch, lost, now, health)
        assert pending is not None and not pending.failed and watch.concluded is None
        assert "checks again (3 checks needed for a verdict)" in pending.detail
        assert len(policy.calls) == checks
    final = policy.observe(watch, lost, 10, health)
    assert final is watch.concluded and final.failed and len(policy.calls) == 3
    assert policy.observe(watch, lost, 20, health) is final and len(policy.calls) == 3


def test_a_failure_claimed_at_once_and_not_found_is_decided_at_once() -> None:
    policy = ImagePolicy({}, ImageConfig(check_interval_s=5))  # ghcr.io is not configured: UNCHECKABLE
    watch = ImageWatch()
    lost = {"state": "lost", "started_at": None, "image": IMAGE, "pulling": False, "reason": "image_too_large"}
    final = policy.observe(watch, lost, 0, lambda: {"max_image_bytes": 200 * MiB})
    assert final is watch.concluded and not final.failed and final.detail.endswith(EXPIRY)
    assert len(watch.checks) == 1


def test_an_image_failure_claimed_after_the_start_is_left_to_the_job_loop() -> None:
    policy = ImagePolicy({}, ImageConfig(check_interval_s=0))
    watch = ImageWatch()
    health = dict
    running = {"state": "running", "started_at": 1000.0, "image": IMAGE, "pulling": False}
    assert policy.observe(watch, running, 0, health) is None
    lost = {**running, "state": "lost", "reason": "image_not_found"}
    assert policy.observe(watch, lost, 1, health) is None and watch.started


# ---------------------------------------------------------------------- JobMonitor, real HTTP


PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
DOMAIN = Domain(chain_id=1337, verifying_contract="0x5FbDB2315678afecb367f032d93F642f64180aa3")
MAX_IMAGE_BYTES = 2**30  # 1 GiB: the test image (~70 MB) is within it


def passing_challenge(*args: object, **kwargs: object) -> ChallengeOutcome:
    return ChallengeOutcome(10.0**6)  # far above any floor: the start challenge passes


@dataclass
class Pushed:
    registry: LocalRegistry
    digest: str

    @property
    def image(self) -> str:
        return self.registry.reference("gm/python", self.digest)

    @property
    def absent(self) -> str:
        return self.registry.reference("gm/python", "sha256:" + hashlib.sha256(b"never pushed").hexdigest())


@pytest.fixture(scope="module")
def pushed(tmp_path_factory, podman_env, python_image) -> Iterator[Pushed]:
    with local_registry(tmp_path_factory.mktemp("registry")) as registry:
        yield Pushed(registry, registry.push(python_image, "gm/python:t", podman_env))


@pytest.fixture
def agent() -> Iterator[AgentDouble]:
    double = AgentDouble(health={"status": "ok", "runtime": "container", "max_image_bytes": MAX_IMAGE_BYTES})
    yield double
    double.close()


@pytest.fixture
def monitors(tmp_path: Path, pushed: Pushed, agent: AgentDouble) -> Iterator[Callable[..., JobMonitor]]:
    """Builder: oracle i's JobMonitor (2-of-3 committee) following job ``job_id`` at the agent double."""
    stores: list[DecisionStore] = []
    members = [test_oracle(i).address for i in range(3)]

    def make(
        i: int, job_id: int, registries: dict[str, str] | None = None, config: ImageConfig = CHECK_EVERY_STEP
    ) -> JobMonitor:
        key = test_oracle(i)
        store = DecisionStore.open(tmp_path / f"oracle{i}-{len(stores)}.db", DOMAIN, key.address)
        stores.append(store)
        store.set_committee(1, members, 2)
        job = running_job(job_id, PROVIDER, int(time.time()) - 5)
        store.watch_job(job_id, PROVIDER, job.started_at)
        contract = ContractDouble(DOMAIN, 1, members, 2)
        registries = {pushed.registry.host: pushed.registry.url} if registries is None else registries
        return JobMonitor(
            store,
            OracleSigner(store, key),
            MarketDouble({job_id: job}, {PROVIDER: agent.url}),
            [],
            contract,
            config=JobConfig(poll_interval_s=1.0),
            challenge=passing_challenge,
            registries=registries,
            image_config=config,
        )

    yield make
    for store in stores:
        store.close()


def drive(
    monitors: list[JobMonitor],
    agent: AgentDouble,
    job_id: int,
    image: str,
    pulling_polls: int,
    reason: str = "image_not_found",
    extra_polls: int = 2,
) -> list[list]:
    """The agent reports the job pulling for ``pulling_polls`` polls, then lost for ``reason``; each
    monitor ticks once per poll (its clock advanced by the poll interval). Returns each poll's steps."""
    polls = []
    now = 1000.0
    for index in range(pulling_polls + 1 + extra_polls):
        if index < pulling_polls:
            agent.report(job_id, image, "spec_received")
        else:
            agent.report(job_id, image, "lost", reason=reason)
        polls.append([monitor.tick(now=now) for monitor in monitors])
        now += 1.0
    return polls


def the_step(steps: list) -> Any:
    [step] = steps
    return step


def test_an_image_the_oracle_fetched_every_time_fails_the_job(monitors, pushed: Pushed, agent: AgentDouble) -> None:
    oracles = [monitors(0, 7), monitors(1, 7)]
    polls = drive(oracles, agent, 7, pushed.image, pulling_polls=2, extra_polls=0)
    for monitor_steps in polls[-1]:
        step = the_step(monitor_steps)
        assert step.action == "decided", step
        assert step.detail.startswith(
            f"FAILED: the agent reports image_not_found for {pushed.image}, but this "
            "oracle fetched its manifest 3 times over the attempt, size "
        )
        assert f"within the advertised max_image_bytes {MAX_IMAGE_BYTES}" in step.detail
    decisions = [monitor.store.job_decision(7) for monitor in oracles]
    for decision in decisions:
        report = decision.report
        assert (report.outcome, report.gpu_seconds, report.result_hash, report.evidence_hash) == (
            Outcome.FAILED,
            0,
            b"\x00" * 32,
            b"\x00" * 32,
        )
    # Canonical: both oracles decided the byte-identical report.
    assert decisions[0].digest == decisions[1].digest and decisions[0].report == decisions[1].report
    assert agent.health_requests >= 2  # the limit read at the attempt's start and at its failure


def expect_no_decision(monitor: JobMonitor, polls: list, job_id: int, *phrases: str) -> str:
    details = {the_step(steps[0]).detail for steps in polls[-3:]}
    [detail] = details  # the same verdict on every later poll
    for steps in polls[-3:]:
        assert the_step(steps[0]).action == "waiting"
    assert detail.endswith("the job ends by expiry: client refunded, provider not slashed"), detail
    for phrase in phrases:
        assert phrase in detail, detail
    assert monitor.store.job_decision(job_id) is None
    return detail


def test_an_image_absent_from_the_registry_is_no_decision(monitors, pushed: Pushed, agent: AgentDouble) -> None:
    monitor = monitors(0, 8)
    polls = drive([monitor], agent, 8, pushed.absent, pulling_polls=2)
    expect_no_decision(monitor, polls, 8, "did not find it (not_found", "MANIFEST_UNKNOWN")
    assert len(monitor._jobs[8].image.checks) == 3  # two while pulling, one at the failure, none after


def test_a_provider_local_image_is_no_decision(monitors, pushed: Pushed, agent: AgentDouble) -> None:
    monitor = monitors(0, 9)
    local = f"localhost/gpumarket-python@{pushed.digest}"
    polls = drive([monitor], agent, 9, local, pulling_polls=2, reason="image_unavailable")
    expect_no_decision(monitor, polls, 9, "provider-local image")


def test_an_unconfigured_registry_is_no_decision(monitors, pushed: Pushed, agent: AgentDouble) -> None:
    monitor = monitors(0, 10, registries={})
    polls = drive([monitor], agent, 10, pushed.image, pulling_polls=2)
    expect_no_decision(monitor, polls, 10, "not configured to ask")


@pytest.mark.parametrize("reason", ["image_unavailable", "image_too_large"])
def test_a_failure_claimed_at_once_is_checked_again_then_fails_the_job(
    monitors,
    pushed: Pushed,
    agent: AgentDouble,
    reason: str,
) -> None:
    # The agent reports the failure at once: this oracle never saw it pulling. One check (at the
    # failure) is too few to decide on; it checks again on its next poll, then decides. A claim
    # of image_too_large for an image within the advertised limit is as false as any other.
    monitor = monitors(0, 11)
    polls = drive([monitor], agent, 11, pushed.image, pulling_polls=0, reason=reason)
    first, second = the_step(polls[0][0]), the_step(polls[1][0])
    assert first.action == "waiting" and "found it 1 time(s) so far and checks again (2 checks needed" in first.detail
    assert second.action == "decided", second
    assert second.detail.startswith(
        f"FAILED: the agent reports {reason} for {pushed.image}, but this oracle "
        "fetched its manifest 2 times over the attempt"
    )
    assert monitor.store.job_decision(11).report.outcome is Outcome.FAILED


def test_an_image_over_the_advertised_limit_or_no_limit_is_no_decision(
    monitors,
    pushed: Pushed,
    agent: AgentDouble,
) -> None:
    agent.health = {"status": "ok", "max_image_bytes": 1000}
    monitor = monitors(0, 12)
    polls = drive([monitor], agent, 12, pushed.image, pulling_polls=2, reason="image_unavailable")
    expect_no_decision(monitor, polls, 12, "is over the advertised max_image_bytes 1000")
    agent.health = {"status": "ok"}
    monitor = monitors(0, 13)
    polls = drive([monitor], agent, 13, pushed.image, pulling_polls=2, reason="image_not_found")
    expect_no_decision(monitor, polls, 13, "advertises no max_image_bytes")


def test_a_limit_lowered_during_the_attempt_does_not_escape(monitors, pushed: Pushed, agent: AgentDouble) -> None:
    monitor = monitors(0, 14)
    now = 1000.0
    for _ in range(2):
        agent.report(14, pushed.image, "spec_received")
        monitor.tick(now=now)
        now += 1
        agent.health = {"status": "ok", "max_image_bytes": 1000}  # lowered after the attempt began
    agent.report(14, pushed.image, "lost", reason="image_unavailable")
    step = the_step(monitor.tick(now=now))
    assert step.action == "decided" and f"max_image_bytes {MAX_IMAGE_BYTES}" in step.detail


def test_an_image_failure_claimed_after_the_job_started_is_a_lost_job(
    monitors,
    pushed: Pushed,
    agent: AgentDouble,
) -> None:
    monitor = monitors(0, 15, registries={})  # no registry: the image rule could never fail it
    agent.report(15, pushed.image, "running", started_at=time.time())
    assert the_step(monitor.tick(now=1000.0)).action == "polled"
    agent.report(15, pushed.image, "lost", reason="image_not_found", started_at=time.time())
    step = the_step(monitor.tick(now=1001.0))
    assert step.action == "decided" and step.detail.startswith("FAILED: the agent reports the job lost")


# ------------------------------------------------ the setting in the service (the CLI option: test_run_cli.py)


def test_the_service_hands_its_registries_to_the_job_loop(tmp_path: Path) -> None:
    params = Path(__file__).resolve().parents[2] / "deploy" / "params" / "default.yaml"
    w3 = connect(EMBEDDED)
    deployment = deploy_market_web3(w3, test_account(0), load_params(params), artifacts=load_artifacts())
    registries = {"ghcr.io": "https://ghcr.io", "127.0.0.1:5000": "http://127.0.0.1:5000"}
    config = OracleServiceConfig(
        rpc=EMBEDDED,
        deployment=deployment,
        key=test_oracle(0),
        db_path=tmp_path / "o.db",
        port=0,
        confirmations=0,
        registries=registries,
        images=ImageConfig(min_checks=3),
    )
    service = OracleService(config, w3=w3).start()
    try:
        assert service.jobs is not None
        assert service.jobs.images.client.registries == registries
        assert service.jobs.images.config.min_checks == 3
    finally:
        service.close()
