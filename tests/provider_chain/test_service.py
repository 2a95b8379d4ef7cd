"""ProviderService in process on the embedded chain, and `gpumarket provider run` as a real
process on anvil: startup checks, the watcher thread taking a job, the spec run, SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from eth_account import Account

from gpumarket.agentapi.auth import sign_request
from gpumarket.chain.anvil import AnvilNode
from gpumarket.chain.connection import TEST_HD_PATH, TEST_MNEMONIC, RetryPolicy, connect
from gpumarket.chain.errors import ChainUnavailable
from gpumarket.chain.keys import ServiceKey, test_account
from gpumarket.chain.models import JobState
from gpumarket.cli import main
from gpumarket.provider.runtime import RuntimeSettings
from gpumarket.provider.service import ProviderService, ServiceConfig, StartupError
from gpumarket.provider.store import JobStatus

from .conftest import CPU_DEV, PRICE, PROVIDER_ENDPOINT, Chain, build_chain, python_spec

Account.enable_unaudited_hdwallet_features()


def service_config(chain: Chain, tmp_path: Path, key: ServiceKey, **overrides) -> ServiceConfig:
    values = dict(
        rpc="embedded", deployment=chain.deployment, key=key, db_path=tmp_path / "provider.sqlite",
        workdir=tmp_path / "jobs", port=0, backend="numpy", confirmations=0, poll_interval=0.05,
        meter_interval=0.05, runtime=RuntimeSettings(kind="process"),
    )  # fmt: skip
    values.update(overrides)
    return ServiceConfig(**values)


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {seconds} s"
        time.sleep(0.05)


@pytest.fixture
def service(chain, tmp_path) -> Iterator[ProviderService]:
    service = ProviderService(
        service_config(chain, tmp_path, chain.provider, public_url=PROVIDER_ENDPOINT), w3=chain.w3
    )
    service.start()
    try:
        yield service
    finally:
        service.close(stop_jobs=True)


def test_the_service_takes_a_job_and_runs_the_clients_spec(chain, service):
    assert service.checks.warnings == () and service.checks.gpu_class.id == CPU_DEV
    spec = python_spec("print('served')")
    job_id = chain.create_job(spec.hash())
    wait_for(lambda: service.store.get(job_id) is not None, 10, "the watcher accepts the job")
    assert chain.market().get_job(job_id).state == JobState.RUNNING
    signed = sign_request(
        chain.client,
        action="put-spec",
        chain_id=chain.deployment.chain_id,
        market=chain.deployment.market,
        job_id=job_id,
        spec_hash=spec.hash(),
    )
    connection = http.client.HTTPConnection("127.0.0.1", service.server.port, timeout=10)
    connection.request("PUT", f"/jobs/{job_id}/spec", spec.canonical_bytes(), {"Authorization": signed.to_header()})
    response = connection.getresponse()
    assert response.status == 202, response.read()
    connection.close()
    wait_for(lambda: service.store.get(job_id).state == JobStatus.FINISHED, 15, "the job finishes")
    service.stop()
    assert service.wait(5) == 0


def test_an_unregistered_provider_is_refused_before_anything_is_served(chain, tmp_path):
    stranger = test_account(5)
    service = ProviderService(service_config(chain, tmp_path, stranger), w3=chain.w3)
    with pytest.raises(StartupError, match="not registered"):
        service.start()
    assert service.server is None and service.watcher is None


def test_standing_problems_are_warnings(chain, tmp_path):
    newcomer = test_account(6)
    chain.market(newcomer).register(CPU_DEV, 1, PRICE, "http://provider.example:8700")
    service = ProviderService(service_config(chain, tmp_path, newcomer), w3=chain.w3).start()
    try:
        warnings = " | ".join(service.checks.warnings)
        assert "not verified" in warnings and "min_stake" in warnings and "differs" in warnings
        assert service.url == service.server.url  # the API still serves: oracles must reach it to verify
    finally:
        service.close(stop_jobs=True)


def _private_key_hex(index: int) -> str:
    return Account.from_mnemonic(TEST_MNEMONIC, account_path=f"{TEST_HD_PATH}/{index}").key.hex().removeprefix("0x")


def test_run_command_as_a_process_on_anvil(tmp_path, anvil_binary):
    with AnvilNode(anvil_binary, log_path=tmp_path / "anvil.log") as node:
        chain = build_chain(connect(node.url))
        deployment = chain.deployment.write(tmp_path / "deployment.json")
        ready = tmp_path / "provider.ready"
        command = [
            sys.executable, "-m", "gpumarket", "provider", "run", "--rpc", node.url,
            "--deployment", str(deployment), "--key", "test-account:2", "--db", str(tmp_path / "provider.sqlite"),
            "--workdir", str(tmp_path / "jobs"), "--port", "0", "--backend", "numpy", "--confirmations", "0",
            "--poll-interval", "0.1", "--ready-file", str(ready), "--runtime", "process",
        ]  # fmt: skip
        log_path = tmp_path / "provider.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: ready.exists() or process.poll() is not None, 30, "the provider is ready")
            assert process.poll() is None, log_path.read_text()
            info = json.loads(ready.read_text())
            assert info["address"] == chain.provider.address and info["pid"] == process.pid
            job_id = chain.create_job()
            wait_for(lambda: chain.market().get_job(job_id).state == JobState.RUNNING, 15, "the job is accepted")
            assert chain.market().get_job(job_id).provider == chain.provider.address
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0, log_path.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    output = log_path.read_text()
    assert "differs" in output  # the registered endpoint is not the ephemeral port it bound
    assert len(_private_key_hex(2)) == 64 and _private_key_hex(2) not in output.lower()  # the key is never logged
    assert os.path.exists(tmp_path / "provider-watcher.sqlite")


def test_a_node_down_past_the_retry_budget_stops_the_service_with_1(tmp_path, anvil_binary):
    with AnvilNode(anvil_binary, log_path=tmp_path / "anvil.log") as node:
        chain = build_chain(connect(node.url))
        config = service_config(
            chain,
            tmp_path,
            chain.provider,
            rpc=node.url,
            retry=RetryPolicy(attempts=2, base_delay=0.05, max_delay=0.05),
            max_outages=2,
        )
        service = ProviderService(config).start()
        try:
            assert service.wait(0.3) is None  # running
            node.stop()
            assert service.wait(15) == 1
            assert isinstance(service.fatal_error, ChainUnavailable)
        finally:
            service.close(stop_jobs=True)


def test_run_refuses_the_embedded_chain_and_reports_an_unreachable_node(tmp_path, chain):
    deployment = chain.deployment.write(tmp_path / "deployment.json")
    common = ["--deployment", str(deployment), "--key", "test-account:2", "--db", str(tmp_path / "p.sqlite"),
              "--workdir", str(tmp_path / "jobs")]  # fmt: skip
    embedded = CliRunner().invoke(main, ["provider", "run", "--rpc", "embedded", *common])
    assert embedded.exit_code == 2 and "embedded chain lives inside one process" in embedded.output
    unreachable = CliRunner().invoke(main, ["provider", "run", "--rpc", "http://127.0.0.1:1", *common])
    assert unreachable.exit_code == 1 and "node http://127.0.0.1:1" in unreachable.output


def test_configured_gpus_bound_the_gpus_held(chain, tmp_path):
    config = service_config(chain, tmp_path, chain.provider, public_url=PROVIDER_ENDPOINT, gpus=(0,))
    service = ProviderService(config, w3=chain.w3).start()
    try:
        assert service.watcher.policy.max_gpus == 1  # registered for 2, but this machine assigns one
    finally:
        service.close(stop_jobs=True)
