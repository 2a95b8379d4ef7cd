"""Fixtures of the provider agent's tests: accounts, the JobSource double, a served agent.

Everything is real except the chain: SQLite in tmp_path, subprocess jobs, the numpy prover,
HTTP on 127.0.0.1 with an ephemeral port. Each served agent is stopped (and its jobs killed)
when its test ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpumarket.measure.provers import make_prover
from gpumarket.provider.agent import AgentConfig, ProviderAgent
from gpumarket.provider.api import ProviderServer
from gpumarket.provider.runner import Runner, RunnerConfig
from gpumarket.provider.store import Store

from .support import CHAIN_ID, MARKET, Http, MemoryJobSource, account


@pytest.fixture(scope="session")
def client_account():
    return account("client")


@pytest.fixture(scope="session")
def other_client():
    return account("other client")


@pytest.fixture(scope="session")
def provider_account():
    return account("provider")


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(RunnerConfig(root=tmp_path / "jobs", meter_interval_s=0.05, meter_gpus=False, kill_grace_s=0.5))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "agent.sqlite")
    yield store
    store.close()


@pytest.fixture
def jobs() -> MemoryJobSource:
    return MemoryJobSource()


@dataclass
class Served:
    agent: ProviderAgent
    server: ProviderServer
    http: Http
    store: Store
    runner: Runner
    jobs: MemoryJobSource


@pytest.fixture
def served(store: Store, runner: Runner, jobs: MemoryJobSource, provider_account) -> Iterator[Served]:
    config = AgentConfig(address=provider_account.address, chain_id=CHAIN_ID, market=MARKET)
    agent = ProviderAgent(config, store, runner, jobs, make_prover("numpy"))
    agent.recover()
    server = ProviderServer(agent, "127.0.0.1", 0, request_timeout_s=5.0).start()
    try:
        yield Served(agent, server, Http("127.0.0.1", server.port), store, runner, jobs)
    finally:
        server.stop()
        agent.close(stop_jobs=True, timeout_s=10)
