"""A market with a story, told on the embedded chain by direct contract calls (the test committee
signs its reports, no service runs), for the dashboard's unit tests; and the real Chromium its
browser tests drive.

The story (``tell_story``): three providers stake and register 2 cpu-dev GPUs each; ``honest`` is
verified twice, ``lazy`` once, ``spoofer``'s claim is rejected as spoofed and slashed. The client
then creates six jobs: ``completed`` (honest, settled COMPLETED), ``failed`` (lazy, settled FAILED:
slashed), ``running`` (honest, accepted), ``cancelled``, ``expired`` (its deadline passed) and
``open``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from web3 import Web3

from gpumarket.chain.artifacts import load_artifacts
from gpumarket.chain.connection import EMBEDDED, advance_time, connect
from gpumarket.chain.events import JobCreated, JobSettled, Slashed
from gpumarket.chain.keys import ServiceKey, test_account
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment, deploy_market_web3
from gpumarket.chain.params import load_params
from gpumarket.signing.eip712 import Outcome
from gpumarket.testing.committee import Committee, hardware_report, job_report
from gpumarket.web.server import WebServer, json_app

PARAMS = Path(__file__).resolve().parents[2] / "deploy" / "params" / "default.yaml"
CPU_DEV = 1
GPUS = 2
PRICE = 10**12  # payment base units per GPU-second: 0.000001 mPAY
STAKE = 10**22  # 10,000 mSTK
DURATION = 600
BILLED_SECONDS = 300

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@dataclass
class Story:
    w3: Web3
    deployment: MarketDeployment
    committee: Committee
    honest: str
    lazy: str
    spoofer: str
    client: str
    jobs: dict[str, int] = field(default_factory=dict)
    settlements: dict[str, JobSettled] = field(default_factory=dict)
    slashes: list[Slashed] = field(default_factory=list)

    def market(self, key: ServiceKey | None = None) -> Market:
        return self.deployment.market_at(self.w3, signer=key)


def _report_hardware(story: Story, provider: str, measured: int, ahead_s: int) -> None:
    market = story.market(test_account(0))
    report = hardware_report(provider, CPU_DEV, GPUS, measured, market.block_timestamp() + ahead_s)
    result = market.submit_hardware_report(report, story.committee.sign(market.domain, report))
    story.slashes += result.events_of(Slashed)


def _create(story: Story, name: str, provider: str | None, deadline_s: int = 3_600) -> int:
    market = story.market(test_account(4))
    result = market.create_job(
        CPU_DEV, 1, PRICE, DURATION, bytes([len(story.jobs) + 1]) * 32, market.block_timestamp() + deadline_s, provider
    )
    story.jobs[name] = result.event(JobCreated).job_id
    return story.jobs[name]


def _settle(story: Story, name: str, provider: str, outcome: Outcome, gpu_seconds: int) -> None:
    market = story.market(test_account(0))
    report = job_report(story.jobs[name], provider, outcome, gpu_seconds)
    result = market.settle(report, story.committee.sign(market.domain, report))
    story.settlements[name] = result.event(JobSettled)
    story.slashes += result.events_of(Slashed)


def tell_story(w3: Web3) -> Story:
    deployment = deploy_market_web3(w3, test_account(0), load_params(PARAMS), artifacts=load_artifacts())
    keys = {"honest": test_account(1), "lazy": test_account(2), "spoofer": test_account(3)}
    story = Story(w3, deployment, Committee.of_size(3, 2), *(k.address for k in keys.values()), test_account(4).address)
    floor = story.market().class_floor(CPU_DEV)
    for i, key in enumerate(keys.values()):
        market = story.market(key)
        market.stake_token.mint(key.address, 10 * STAKE)
        market.stake_token.approve(market.address)
        market.stake(STAKE)
        market.register(CPU_DEV, GPUS, PRICE, f"http://127.0.0.1:{9_000 + i}")
    _report_hardware(story, story.honest, floor * GPUS, 3_000)
    _report_hardware(story, story.honest, floor * GPUS + 7, 3_500)
    _report_hardware(story, story.lazy, floor * GPUS, 3_500)
    _report_hardware(story, story.spoofer, 1, 3_500)  # far below half the floor: spoofed, slashed
    client = story.market(test_account(4))
    client.payment_token.mint(story.client, 10**24)
    client.payment_token.approve(client.address)

    story.market(keys["honest"]).accept_job(_create(story, "completed", story.honest))
    _settle(story, "completed", story.honest, Outcome.COMPLETED, BILLED_SECONDS)
    story.market(keys["lazy"]).accept_job(_create(story, "failed", story.lazy))
    _settle(story, "failed", story.lazy, Outcome.FAILED, 0)
    story.market(keys["honest"]).accept_job(_create(story, "running", story.honest))
    client.cancel_job(_create(story, "cancelled", None))
    _create(story, "expired", None, deadline_s=60)
    _create(story, "open", None)
    advance_time(w3, 120)
    client.expire_job(story.jobs["expired"])
    return story


@pytest.fixture(scope="session")
def story() -> Story:
    return tell_story(connect(EMBEDDED))


def section(page: str, section_id: str) -> str:
    """The HTML of the page's ``<section id=section_id>``."""
    start = page.index(f'<section id="{section_id}">')
    return page[start : page.index("</section>", start)]


def dead_url() -> str:
    """The URL of an oracle that is down: a port bound, never served, then closed (refused)."""
    server = WebServer(json_app([]), port=0)
    url = server.url
    server.stop()
    return url


# ------------------------------------------------------------------------------------ the browser


def _can_install_browser() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


@pytest.fixture(scope="session")
def chromium_paths() -> tuple[str, str]:
    """(chromium, chromedriver), Debian's. Skipped, saying why, only where they are missing and
    cannot be installed (no root or no apt-get); where they could be, a missing browser is a
    failure: `make test` installs them (`make browser`)."""
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        if _can_install_browser():
            pytest.fail("chromium or chromedriver is not installed but could be: run `make browser`")
        reason = "chromium and chromedriver are not installed and cannot be here (needs root and apt-get)"
        print(reason)
        pytest.skip(reason)
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture(scope="module")
def browser(chromium_paths: tuple[str, str]) -> Iterator[object]:
    """A headless Chromium driven by Selenium through Debian's chromedriver (never selenium-manager,
    which would download one), with the page's console kept for the tests to read."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = chromium_paths
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
