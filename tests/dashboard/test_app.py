"""The dashboard over real HTTP: its pages, its refusals (precise 400/404 in the web stack's
envelope, an HTML page for a browser, the app still up after), live versions, the oracles it
polls (a real oracle API, one that publishes more, one that is down), its static files and its
command line (on anvil, as an operator runs it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.requests import Request
from starlette.responses import Response

from gpumarket.chain.anvil import AnvilNode
from gpumarket.chain.artifacts import load_artifacts
from gpumarket.chain.connection import EMBEDDED, connect
from gpumarket.chain.keys import test_account, test_oracle
from gpumarket.chain.market_deploy import deploy_market_web3
from gpumarket.chain.params import load_params
from gpumarket.cli import main
from gpumarket.dashboard import Dashboard, DashboardConfig
from gpumarket.oracle.api import OracleAPI
from gpumarket.oracle.signer import OracleSigner
from gpumarket.oracle.store import DecisionStore
from gpumarket.oracle.sync import CommitteeSync
from gpumarket.web.client import Answer, WebClient
from gpumarket.web.server import Endpoint, WebServer, bytes_response, json_app, json_response
from helpers.waiting import eventually

from .conftest import PARAMS, Story, dead_url, section

HTML = {"Accept": "text/html"}
STUB_PEERS_REACHABLE = 2
STUB_MEASURED_GOPS = 21.5
OTHER_MARKET = "0x000000000000000000000000000000000000dEaD"


def _stub_oracle(address: str, market: tuple[int, str], settled_at: int, *, publishes: bool = True) -> WebServer:
    """An oracle's API that publishes its peers reachable, its last settlement and its challenges
    of a job; or (``publishes`` False) an older one that has none of them."""
    metrics = (
        f'gpumarket_oracle_stored_signatures{{origin="self"}} 4.0\n'
        f"gpumarket_oracle_settled_jobs 2.0\n"
        f'gpumarket_oracle_settlement_submissions_total{{result="sent"}} 1.0\n'
        f"gpumarket_oracle_peers_reachable {STUB_PEERS_REACHABLE}.0\n"
        f"gpumarket_oracle_last_settlement_timestamp_seconds {settled_at}.0\n"
    ).encode()

    async def health(request: Request) -> Response:
        chain_id, contract = market
        return json_response(
            {"status": "ok", "address": address, "chain_id": chain_id, "contract": contract, "epoch": 1, "member": True}
        )

    async def exposition(request: Request) -> Response:
        return bytes_response(metrics, media_type="text/plain; version=0.0.4")

    async def challenges(request: Request) -> Response:
        challenge = {
            "kind": "start",
            "at": settled_at,
            "measured_gops": STUB_MEASURED_GOPS,
            "required_gops": 10,
            "verdict": "pass",
        }
        return json_response({"job_id": int(request.path_params["id"]), "challenges": [challenge]})

    async def no_metrics(request: Request) -> Response:
        return bytes_response(b"", media_type="text/plain; version=0.0.4")

    if not publishes:
        return WebServer(
            json_app([Endpoint("GET", "/health", health), Endpoint("GET", "/metrics", no_metrics)])
        ).start()
    app = json_app(
        [
            Endpoint("GET", "/health", health),
            Endpoint("GET", "/metrics", exposition),
            Endpoint("GET", "/challenges/job/{id}", challenges),
        ]
    )
    return WebServer(app, port=0).start()


@pytest.fixture(scope="module")
def served(story: Story, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Dashboard, WebClient]]:
    root = tmp_path_factory.mktemp("app")
    market = story.market()
    key = test_oracle(0)
    store = DecisionStore.open(root / "oracle.sqlite", market.domain, key.address)
    CommitteeSync(store, market).load_current()
    oracle = OracleAPI(store, OracleSigner(store, key)).start()
    stub = _stub_oracle(test_oracle(1).address, (story.deployment.chain_id, market.address), market.block_timestamp())
    older = _stub_oracle(test_oracle(2).address, (story.deployment.chain_id, market.address), 0, publishes=False)
    elsewhere = _stub_oracle(test_oracle(2).address, (story.deployment.chain_id, OTHER_MARKET), 0)
    config = DashboardConfig(
        rpc=EMBEDDED,
        deployment=story.deployment,
        oracles=(oracle.url, stub.url, dead_url(), elsewhere.url, older.url),
        port=0,
        confirmations=0,
        poll_interval_s=0.1,
        oracle_interval_s=0.2,
    )
    dashboard = Dashboard(config, w3=story.w3).start()
    client = WebClient(dashboard.url)
    try:
        yield dashboard, client
    finally:
        client.close()
        dashboard.close()
        older.stop()
        elsewhere.stop()
        stub.stop()
        oracle.stop()
        store.close()


def _get(served: tuple[Dashboard, WebClient], path: str, html: bool = False) -> Answer:
    return served[1].request("GET", path, headers=HTML if html else None)


def test_every_page_is_html_with_a_strict_content_security_policy(story: Story, served) -> None:
    paths = [
        "/",
        "/providers",
        f"/providers/{story.honest}",
        "/jobs",
        "/jobs?state=running&provider=&client=",  # a form's empty fields are no filter
        f"/jobs/{story.jobs['completed']}",
        "/oracles",
        f"/oracles/{story.committee.addresses[0]}",
    ]
    for path in paths:
        answer = _get(served, path)
        assert answer.status == 200, (path, answer.body[:300])
        assert answer.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert b"<main>" in answer.body and b"data-version=" in answer.body
    lowercase = _get(served, f"/providers/{story.honest.lower()}")  # an address in any case
    assert lowercase.status == 200 and story.honest.encode() in lowercase.body


def test_a_market_its_owner_account_changes_has_no_timelock(served) -> None:
    pending = section(_get(served, "/").body.decode(), "pending")
    assert "with no timelock: its changes apply at once" in pending and f'title="{test_account(0).address}"' in pending
    assert "Pending changes" in pending and "pending-changes" not in pending


@pytest.mark.parametrize(
    ("path", "status", "code", "field"),
    [
        ("/jobs?state=bogus", 400, "invalid_field", "state"),
        ("/jobs?provider=0x123", 400, "invalid_field", "provider"),
        ("/jobs?client=0x6c6eBE19d43874f710464730Ea16994c3D416921", 400, "invalid_field", "client"),  # bad checksum
        ("/jobs?page=0", 400, "invalid_field", "page"),
        ("/jobs?page=-1", 400, "invalid_field", "page"),
        ("/jobs?sort=newest", 400, "unknown_field", "sort"),
        ("/?x=1", 400, "unknown_field", "x"),
        ("/jobs/seven", 400, "invalid_field", "job_id"),
        (f"/jobs/{2**256}", 400, "invalid_field", "job_id"),
        ("/jobs/" + "9" * 5_000, 400, "invalid_field", "job_id"),
        ("/jobs/999", 404, "unknown_job", None),
        ("/providers/not-an-address", 400, "invalid_field", "address"),
        ("/providers/0x000000000000000000000000000000000000dEaD", 404, "unknown_provider", None),
        ("/oracles/0x000000000000000000000000000000000000dEaD", 404, "unknown_oracle", None),
        ("/static/nothing.js", 404, "not_found", None),
        ("/no/such/page", 404, "not_found", None),
    ],
)
def test_a_bad_request_is_refused_precisely_and_the_app_stays_up(served, path, status, code, field) -> None:
    answer = _get(served, path)
    assert answer.status == status, answer.body[:300]
    envelope = json.loads(answer.body)
    assert envelope["error"] == code and envelope["detail"]
    assert envelope.get("field") == field
    assert _get(served, "/").status == 200


def test_a_browser_is_refused_with_a_page_saying_the_same(served) -> None:
    answer = _get(served, "/jobs/999", html=True)
    assert answer.status == 404 and answer.headers["content-type"].startswith("text/html")
    assert b"unknown_job" in answer.body and b"no job 999 in this market" in answer.body
    assert served[1].request("POST", "/").status == 405


def test_the_version_moves_when_a_block_is_indexed(story: Story, served) -> None:
    before = json.loads(_get(served, "/api/version").body)["version"]
    story.market(test_account(4)).payment_token.mint(story.client, 1)  # a block, no market event
    assert eventually(lambda: json.loads(_get(served, "/api/version").body)["version"] != before, 20)


def test_the_oracles_page_shows_who_answers_what_they_publish_and_who_is_down(story: Story, served) -> None:
    dashboard, _ = served
    assert dashboard.oracles is not None
    real, stub, dead, elsewhere, older = dashboard.oracles.statuses()
    assert real.up and real.address == test_oracle(0).address and real.reports_signed == 0
    assert older.up and older.peers_reachable is None and older.reports_signed is None  # published by none
    assert stub.up and stub.peers_reachable == STUB_PEERS_REACHABLE and stub.submissions == (("sent", 1),)
    assert not dead.up and dead.error is not None and "ConnectionRefusedError" in dead.error
    assert (
        not elsewhere.up
        and elsewhere.error == f"an oracle of market {OTHER_MARKET} on chain {story.deployment.chain_id}, not this one"
    )
    page = _get(served, "/oracles").body.decode()
    assert "2 oracle(s) down" in page and dead.url in page and OTHER_MARKET in page
    assert "not published" in page and f">{STUB_PEERS_REACHABLE}<" in page
    member = _get(served, f"/oracles/{test_oracle(1).address}").body.decode()
    assert "Reports signed" in member and ">4<" in member


def test_a_job_page_shows_the_challenges_each_oracle_publishes(story: Story, served) -> None:
    page = _get(served, f"/jobs/{story.jobs['completed']}").body.decode()
    timeline = page[page.index('id="timeline"') :]
    # Between the acceptance and the settlement: the stub's challenge, with its figures.
    accepted, challenge, settled = (timeline.index(s) for s in ("JobAccepted", "Challenge: start", "JobSettled"))
    assert accepted < challenge < settled
    assert f"{STUB_MEASURED_GOPS:,.2f} GOPS" in timeline and "verdict-pass" in timeline
    assert "Challenges not published by" in page and test_oracle(2).address in page  # the older API
    opened = _get(served, f"/jobs/{story.jobs['open']}").body.decode()
    assert "Challenge:" not in opened and "not published" not in opened  # nobody took it: nothing to challenge


def test_the_static_files_ship_with_the_package(served) -> None:
    script = _get(served, "/static/live.js")
    assert script.status == 200 and "javascript" in script.headers["content-type"]
    assert b"/api/version" in script.body
    assert _get(served, "/static/dashboard.css").headers["content-type"].startswith("text/css")
    assert _get(served, "/static/favicon.svg").headers["content-type"].startswith("image/svg+xml")


# ------------------------------------------------------------------------------------ the command line


def test_the_command_explains_itself_and_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    runner = CliRunner()
    helped = runner.invoke(main, ["dashboard", "--help"])
    assert helped.exit_code == 0 and "--oracle URL" in helped.output and "--deployment" in helped.output
    missing = runner.invoke(main, ["dashboard", "--deployment", str(tmp_path / "d.json")], env={"GPUMARKET_CONFIG": ""})
    assert missing.exit_code == 2 and "--rpc required" in missing.output
    embedded = runner.invoke(main, ["dashboard", "--rpc", EMBEDDED, "--deployment", str(tmp_path / "d.json")])
    assert embedded.exit_code == 2 and "inside one process" in embedded.output
    absent = runner.invoke(main, ["dashboard", "--rpc", "http://127.0.0.1:1", "--deployment", str(tmp_path / "d.json")])
    assert absent.exit_code == 2 and "d.json" in absent.output
    config = tmp_path / "gpumarket.toml"
    config.write_text('rpc = "http://127.0.0.1:1"\n')
    no_deployment = runner.invoke(main, ["dashboard", "--config", str(config)])
    assert no_deployment.exit_code == 2 and "--deployment required" in no_deployment.output


def test_the_command_serves_a_market_on_anvil_until_signalled(tmp_path: Path, anvil_binary: Path) -> None:
    node = AnvilNode(anvil_binary, log_path=tmp_path / "anvil.log").start()
    process = None
    try:
        deployment = deploy_market_web3(
            connect(node.url), test_account(0), load_params(PARAMS), artifacts=load_artifacts()
        )
        record = deployment.write(tmp_path / "deployment.json")
        config = tmp_path / "gpumarket.toml"  # the node and the deployment from the config file
        config.write_text(f'rpc = "{node.url}"\ndeployment = "{record.name}"\n')
        ready = tmp_path / "ready.json"
        command = [sys.executable, "-m", "gpumarket", "dashboard", "--config", str(config), "--port", "0"]
        command += ["--confirmations", "0", "--ready-file", str(ready), "--oracle", dead_url()]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ.copy())
        assert eventually(lambda: ready.exists() or process.poll() is not None, 90, 0.1), "never ready"
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        served = json.loads(ready.read_text())
        assert served["address"] == deployment.market
        with WebClient(served["url"]) as client:
            page = client.request("GET", "/").body.decode()
        assert "Mock Stake" in page and "mPAY" in page and "2 of 3 signatures" in page
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        output = process.stdout.read().decode() if process.stdout else ""
        assert f"dashboard: {served['url']}" in output
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        node.stop()
