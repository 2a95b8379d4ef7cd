"""The agent against a real market: MarketJobSource reads jobs from GpuMarket on the embedded
py-evm chain (gpumarket.chain), and the whole spec -> run -> result path runs on those facts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpumarket.agentapi.auth import sign_request
from gpumarket.agentapi.result import ResultBundle
from gpumarket.agentapi.spec import JobSpec
from gpumarket.chain.artifacts import load_artifacts
from gpumarket.chain.connection import EMBEDDED, connect, latest_timestamp
from gpumarket.chain.events import JobCreated
from gpumarket.chain.keys import ServiceKey, test_account
from gpumarket.chain.market import Market
from gpumarket.chain.market_deploy import MarketDeployment, deploy_market_web3
from gpumarket.chain.params import load_params
from gpumarket.measure.provers import make_prover
from gpumarket.provider.agent import AgentConfig, ProviderAgent
from gpumarket.provider.api import ProviderServer
from gpumarket.provider.jobsource import JobState, MarketJobSource
from gpumarket.testing.committee import Committee, hardware_report

from .support import Http, python_spec

PARAMS = Path(__file__).resolve().parents[2] / "deploy" / "params" / "default.yaml"
CPU_DEV = 1
PRICE = 10**15


@dataclass
class Chain:
    deployment: MarketDeployment
    provider: ServiceKey
    client: ServiceKey
    other: ServiceKey
    markets: dict[str, Market]

    def create_job(self, spec: JobSpec, *, accept: bool = True) -> int:
        client = self.markets[self.client.address]
        deadline = latest_timestamp(client.w3) + 3600
        job_id = (
            client.create_job(CPU_DEV, 1, 2 * PRICE, 3600, spec.hash(), deadline, provider=None)
            .event(JobCreated)
            .job_id
        )
        if accept:
            self.markets[self.provider.address].accept_job(job_id)
        return job_id


@pytest.fixture(scope="module")
def chain() -> Chain:
    artifacts = load_artifacts()
    params = load_params(PARAMS)
    w3 = connect(EMBEDDED)
    deployer, provider, client, other = (test_account(i) for i in (0, 2, 4, 5))
    deployment = deploy_market_web3(w3, deployer, params, artifacts=artifacts)
    markets = {
        key.address: deployment.market_at(w3, signer=key, artifacts=artifacts) for key in (provider, client, other)
    }
    for key in (provider, client, other):
        market = markets[key.address]
        for token in (market.stake_token, market.payment_token):
            token.mint(key.address, 10**24)
            token.approve(market.address)
    market = markets[provider.address]
    # GPUs for every job the module's tests leave running (running jobs hold theirs).
    gpus = 4
    market.register(CPU_DEV, gpus, PRICE, "http://127.0.0.1:8700")
    report = hardware_report(
        provider.address,
        CPU_DEV,
        gpus,
        gpus * market.class_floor(CPU_DEV),
        latest_timestamp(w3) + 86_400,
        epoch=market.epoch(),
    )
    market.submit_hardware_report(report, Committee.of_size(3, threshold=2).sign(market.domain, report))
    market.stake(params.parameters.min_stake + 10**20)
    return Chain(deployment, provider, client, other, markets)


@pytest.fixture
def agent_http(chain, store, runner) -> Iterator[Http]:
    source = MarketJobSource(chain.markets[chain.provider.address])
    config = AgentConfig(
        address=chain.provider.address, chain_id=chain.deployment.chain_id, market=chain.deployment.market
    )
    agent = ProviderAgent(config, store, runner, source, make_prover("numpy"))
    server = ProviderServer(agent).start()
    try:
        yield Http("127.0.0.1", server.port)
    finally:
        server.stop()
        agent.close(stop_jobs=True)


def put_spec(http, chain, signer, job_id, spec):
    signed = sign_request(
        signer,
        action="put-spec",
        chain_id=chain.deployment.chain_id,
        market=chain.deployment.market,
        job_id=job_id,
        spec_hash=spec.hash(),
    )
    return http.request("PUT", f"/jobs/{job_id}/spec", spec.canonical_bytes(), {"Authorization": signed.to_header()})


def test_the_market_source_reports_the_chains_facts(chain):
    source = MarketJobSource(chain.markets[chain.provider.address])
    spec = python_spec("print('facts')")
    assert source.get_job(10**9) is None
    open_job = chain.create_job(spec, accept=False)
    facts = source.get_job(open_job)
    assert (facts.state, facts.client, facts.spec_hash) == (JobState.OPEN, chain.client.address, spec.hash())
    chain.markets[chain.provider.address].accept_job(open_job)
    facts = source.get_job(open_job)
    assert (facts.state, facts.provider, facts.gpu_count) == (JobState.RUNNING, chain.provider.address, 1)


def test_spec_run_result_on_chain_facts(chain, agent_http):
    http = agent_http
    spec = python_spec("open('r.txt', 'w').write('on chain')", outputs=["r.txt"])
    job_id = chain.create_job(spec)

    wrong = put_spec(http, chain, chain.other, job_id, spec)
    assert (wrong.status, wrong.error) == (403, "wrong_signer")
    other_spec = python_spec("print('not the one on chain')")
    mismatch = put_spec(http, chain, chain.client, job_id, other_spec)
    assert (mismatch.status, mismatch.error) == (409, "spec_hash_mismatch")
    not_accepted = chain.create_job(spec, accept=False)
    assert put_spec(http, chain, chain.client, not_accepted, spec).error == "job_not_running"

    response = put_spec(http, chain, chain.client, job_id, spec)
    assert response.status == 202, response.body
    deadline = time.monotonic() + 15
    while (status := http.request("GET", f"/jobs/{job_id}/status").json())["state"] != "finished":
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    signed = sign_request(
        chain.client,
        action="get-result",
        chain_id=chain.deployment.chain_id,
        market=chain.deployment.market,
        job_id=job_id,
    )
    result = http.request("GET", f"/jobs/{job_id}/result", headers={"Authorization": signed.to_header()})
    bundle = ResultBundle.parse(result.body)
    bundle.verify(bytes.fromhex(status["result_hash"][2:]))
    assert bundle.contents["outputs/r.txt"] == b"on chain"
