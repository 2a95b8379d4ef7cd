"""The dashboard in a real headless Chromium (Debian's, driven by Selenium through its
chromedriver), against a devnet-like market running on the embedded chain: three oracles (and
one URL that is down), an honest provider and one that turns lazy, real jobs.

What a person would check by looking: every page loads with a clean console, a job shown
RUNNING turns COMPLETED on screen without a reload once it settles, the provider slashed for a
failed job shows its slash, links lead from a job to its provider and its signers and back, and
no page is wider than a phone.

Screenshots: with GPUMARKET_DASHBOARD_SCREENSHOTS=<folder> the market, the slashed provider and
the completed job are saved there as dashboard-market.png, dashboard-provider.png and
dashboard-job.png (docs/dashboard.md says how the committed ones were made).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from gpumarket.agentapi.spec import JobSpec
from gpumarket.chain.connection import EMBEDDED, connect
from gpumarket.chain.events import JobSettled, scan_events
from gpumarket.chain.keys import test_account
from gpumarket.chain.models import JobState
from gpumarket.client.jobs import JobClient
from gpumarket.dashboard import Dashboard, DashboardConfig
from gpumarket.measure.provers.cheats import LateSkippingProver
from oracle_service.conftest import CPU_DEV, PRICE, Market3, busy_spec, deploy_world, running

from .conftest import dead_url

SCREENSHOTS = os.environ.get("GPUMARKET_DASHBOARD_SCREENSHOTS")
PAGE_S = 60  # a page, or a change on it, on a loaded 2-core machine
SETTLE_S = 150  # a job from RUNNING to settled: its run, the end challenge, the quorum


@dataclass
class Live:
    world: Market3
    dashboard: Dashboard
    honest: str
    lazy: str
    client: JobClient
    dead_oracle: str
    settled: dict[str, int]  # "completed" / "failed" -> job id, once each test has run its job

    @property
    def url(self) -> str:
        return self.dashboard.url


def idle_spec(seconds: float) -> JobSpec:
    """A real job of ``seconds`` that sleeps: the oracles' challenges, not the job, get the CPUs of
    a loaded 2-core machine (busy_spec's job would burn one)."""
    code = f"import time\ntime.sleep({seconds})\nopen('out.txt', 'w').write('slept')\n"
    return busy_spec(0.0).model_copy(update={"command": [sys.executable, "-c", code]})


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    world = deploy_world(connect(EMBEDDED), tmp_path_factory.mktemp("dashboard-browser"))
    with running(world):
        honest = world.start_provider(test_account(1))
        # Honest for the committee's three hardware challenges, then it skips half the tiles.
        lazy = world.start_provider(test_account(2), LateSkippingProver(0.5, honest_challenges=3))
        dead = dead_url()
        config = DashboardConfig(
            rpc=EMBEDDED,
            deployment=world.deployment,
            oracles=(*(oracle.url for oracle in world.oracles), dead),
            port=0,
            confirmations=0,
            poll_interval_s=0.2,
            oracle_interval_s=1.0,
            live_interval_s=0.5,
        )
        with Dashboard(config, w3=world.w3) as dashboard:
            yield Live(world, dashboard, honest.address, lazy.address, world.client(test_account(4)), dead, {})


# ------------------------------------------------------------------------------------ helpers


def _wait(browser: Any, condition: Callable[[Any], Any], what: str, timeout_s: float = PAGE_S) -> Any:
    """Wait for ``condition(browser)``; elements replaced by a live update mid-read are read again."""
    waiting = WebDriverWait(
        browser,
        timeout_s,
        poll_frequency=0.2,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    )
    return waiting.until(condition, f"timed out after {timeout_s} s waiting for {what}")


def _text(browser: Any, selector: str) -> str:
    """The element's text; read again when a live update replaced it between finding and reading
    (the page swaps <main> whenever a block arrives: CI saw a StaleElementReferenceException)."""
    return str(_wait(browser, lambda b: b.find_element(By.CSS_SELECTOR, selector).text, selector))


def _open(browser: Any, url: str) -> None:
    """Load ``url`` and wait until its live script has asked for news once."""
    browser.get(url)
    _wait(browser, lambda b: b.find_element(By.TAG_NAME, "h1"), f"{url} to render")
    _wait(
        browser,
        lambda b: b.execute_script(
            "return performance.getEntriesByType('resource').some(e => e.name.endsWith('/api/version'))"
        ),
        f"{url} to poll for news",
    )


def _console_errors(browser: Any) -> list[dict[str, Any]]:
    return [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def _screenshot(browser: Any, name: str) -> None:
    if not SCREENSHOTS:
        return
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(int(height) + 120, 2400))
    Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(Path(SCREENSHOTS) / f"dashboard-{name}.png"))
    browser.set_window_size(1280, 1000)


def _tokens(base_units: int, symbol: str) -> str:
    """An amount of an 18-decimal token as the pages must show it: exact, in whole tokens."""
    whole, fraction = divmod(base_units, 10**18)
    return f"{whole:,}" + (f".{fraction:018d}".rstrip("0") if fraction else "") + f" {symbol}"


def _settled(live: Live, job_id: int) -> JobSettled:
    (event,) = [e for e in scan_events(live.world.market(), ["JobSettled"]) if e.job_id == job_id]
    assert isinstance(event, JobSettled)
    return event


@pytest.fixture(autouse=True)
def clean_console(browser: Any) -> Iterator[None]:
    """Every test starts with an empty console and ends with a clean one."""
    browser.get_log("browser")
    yield
    assert _console_errors(browser) == []


# ------------------------------------------------------------------------------------ the tests


def test_a_running_job_turns_completed_on_screen_without_a_reload(live: Live, browser: Any) -> None:
    spec = idle_spec(3.0)
    job_id = live.client.create_job(
        spec, gpu_class=CPU_DEV, gpu_count=1, max_price=PRICE, max_duration=120, provider=live.honest
    )
    _open(browser, f"{live.url}/jobs/{job_id}")
    # The provider takes the job at once, and it runs once the client sends its spec: only after
    # the page has shown it RUNNING, however slowly this machine renders.
    _wait(browser, lambda b: _text(b, "#job-state") == "RUNNING", "the job shown RUNNING")
    browser.execute_script("window.gpumarketKept = 'this page was never reloaded'")
    live.client.send_spec(job_id, spec)
    try:
        _wait(browser, lambda b: _text(b, "#job-state") == "COMPLETED", "the job shown COMPLETED", SETTLE_S)
    except TimeoutException:
        on_chain = live.world.market().get_job(job_id).state.name
        pytest.fail(f"job {job_id} is {on_chain} on chain; the page shows {_text(browser, '#job-state')}")
    assert browser.execute_script("return window.gpumarketKept") == "this page was never reloaded"
    assert live.world.market().get_job(job_id).state == JobState.COMPLETED
    event = _settled(live, job_id)
    assert event.provider_payment > 0 and _text(browser, "#payment") == _tokens(event.provider_payment, "mPAY")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#signers a")) >= 2  # the quorum: 2 of 3
    # Each oracle's challenges of the job (its API's GET /challenges/job/<id>), with the measured
    # throughput and the verdict, between the job's acceptance and its settlement.
    timeline = _text(browser, "#timeline")
    assert timeline.index("JobAccepted") < timeline.index("Challenge: start") < timeline.index("JobSettled")
    assert "Challenge: end" in timeline and "GOPS" in timeline and "pass" in timeline, timeline
    assert not browser.find_elements(By.ID, "unpublished")  # every oracle of the committee publishes them
    live.settled["completed"] = job_id
    _screenshot(browser, "job")


def test_a_slashed_provider_shows_its_slash(live: Live, browser: Any) -> None:
    job_id = live.world.run_job(live.client, live.lazy, busy_spec(2.0))
    assert live.world.wait_terminal(job_id, timeout_s=SETTLE_S).state == JobState.FAILED
    event = _settled(live, job_id)
    assert event.slashed > 0
    live.settled["failed"] = job_id
    _open(browser, f"{live.url}/providers/{live.lazy}")
    row = f"#slashes a[href='/jobs/{job_id}']"
    _wait(browser, lambda b: b.find_element(By.CSS_SELECTOR, row), "the slash listed with its job")
    expected = _tokens(event.slashed, "mSTK")
    assert _text(browser, "#slashes tr.slash td.num") == expected
    assert _text(browser, "#failures").startswith("1")
    _open(browser, f"{live.url}/jobs/{job_id}")
    assert _text(browser, "#job-state") == "FAILED" and _text(browser, "#slashed") == expected
    _open(browser, f"{live.url}/providers/{live.lazy}")
    _screenshot(browser, "provider")


def test_links_lead_from_a_job_to_its_provider_and_signers_and_back(live: Live, browser: Any) -> None:
    job_id = live.settled.get("completed")
    if job_id is None:
        pytest.fail("needs the job the first test ran to completion")
    _open(browser, f"{live.url}/jobs/{job_id}")
    browser.find_element(By.CSS_SELECTOR, "#job-provider a").click()
    _wait(browser, lambda b: live.honest in _text(b, "h1"), "the provider's page")
    assert browser.current_url.endswith(f"/providers/{live.honest}")
    browser.find_element(By.CSS_SELECTOR, f"#jobs a[href='/jobs/{job_id}']").click()
    _wait(browser, lambda b: _text(b, "h1").startswith(f"Job {job_id}"), "the job's page again")
    signer = browser.find_element(By.CSS_SELECTOR, "#signers a")
    address = signer.get_attribute("title")
    signer.click()
    _wait(browser, lambda b: address in _text(b, "h1"), "the signer's page")
    browser.find_element(By.CSS_SELECTOR, f"#signed a[href='/jobs/{job_id}']").click()
    _wait(browser, lambda b: _text(b, "h1").startswith(f"Job {job_id}"), "the job's page from its signer's")
    browser.find_element(By.LINK_TEXT, "Oracles").click()
    _wait(browser, lambda b: _text(b, "h1") == "Oracles", "the oracles' page")
    assert live.dead_oracle in _text(browser, "#down")
    browser.find_element(By.CSS_SELECTOR, f"#members a[title='{address}']").click()
    _wait(browser, lambda b: address in _text(b, "h1"), "the signer's page from the committee")


def test_every_page_loads_clean_and_fits_a_phone(live: Live, browser: Any) -> None:
    member = live.world.market().members()[0]
    pages = ["/", "/providers", f"/providers/{live.honest}", f"/providers/{live.lazy}", "/jobs"]
    pages += ["/jobs?state=COMPLETED", "/oracles", f"/oracles/{member}"]
    pages += [f"/jobs/{job_id}" for job_id in live.settled.values()]
    for width in (1280, 390):
        browser.set_window_size(width, 1000)
        for path in pages:
            _open(browser, live.url + path)
            assert _console_errors(browser) == [], path
            overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} is {overflow} px wider than a {width} px window"
    browser.set_window_size(1280, 1000)
    _open(browser, live.url + "/")
    _screenshot(browser, "market")
