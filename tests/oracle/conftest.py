"""Fixtures of the oracle tests: a domain, the three test oracles (2-of-3), stores and live APIs.

Everything is real: SQLite files in tmp_path, signatures with the public test keys
(gpumarket.testing.committee.oracle_key), HTTP on 127.0.0.1 with ephemeral ports. Each
started API is stopped and each store closed when its test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpumarket.chain.keys import ServiceKey, test_oracle
from gpumarket.oracle.api import ApiConfig, OracleAPI
from gpumarket.oracle.metrics import OracleMetrics
from gpumarket.oracle.signer import OracleSigner
from gpumarket.oracle.store import DecisionStore
from gpumarket.signing.eip712 import Domain
from gpumarket.testing.committee import hardware_report, job_report

__all__ = ["CONTRACT", "PROVIDER", "Node", "hardware_report", "job_report"]

CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
CHAIN_ID = 1337


@pytest.fixture(scope="session")
def domain() -> Domain:
    return Domain(chain_id=CHAIN_ID, verifying_contract=CONTRACT)


@pytest.fixture(scope="session")
def keys() -> list[ServiceKey]:
    return [test_oracle(i) for i in range(3)]


@pytest.fixture(scope="session")
def members(keys: list[ServiceKey]) -> list[str]:
    return [key.address for key in keys]


@dataclass
class Node:
    """One oracle: its store, signer, metrics and (when started) API."""

    key: ServiceKey
    store: DecisionStore
    signer: OracleSigner
    metrics: OracleMetrics
    api: OracleAPI | None = None

    @property
    def url(self) -> str:
        assert self.api is not None
        return self.api.url


@pytest.fixture
def make_node(
    tmp_path: Path, domain: Domain, keys: list[ServiceKey], members: list[str]
) -> Iterator[Callable[..., Node]]:
    """Builder: oracle ``index`` with its own store, the 2-of-3 committee of epoch 1 recorded."""
    nodes: list[Node] = []

    def make(index: int, serve: bool = False, committee: bool = True, config: ApiConfig | None = None) -> Node:
        key = keys[index]
        store = DecisionStore.open(tmp_path / f"oracle{index}-{len(nodes)}.db", domain, key.address)
        if committee:
            store.set_committee(1, members, 2)
        metrics = OracleMetrics()
        node = Node(key, store, OracleSigner(store, key, metrics), metrics)
        nodes.append(node)
        if serve:
            node.api = OracleAPI(store, node.signer, metrics, config or ApiConfig()).start()
        return node

    yield make
    for node in nodes:
        if node.api is not None:
            node.api.stop()
        node.store.close()


@pytest.fixture
def store(make_node: Callable[..., Node]) -> DecisionStore:
    return make_node(0).store


@pytest.fixture
def report_for() -> Callable[..., object]:
    """Builder of a job report for the test provider."""

    def build(job_id: int, **fields: object):
        return job_report(job_id, PROVIDER, **fields)

    return build
