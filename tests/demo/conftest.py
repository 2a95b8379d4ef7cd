"""Fixtures of the demo's tests (anvil for devnet comes from tests/conftest.py's `anvil_binary`)."""

from __future__ import annotations

import pytest

from gpumarket.chain.params import DeployParams, load_params
from gpumarket.demo.story import DEFAULT_PARAMS


@pytest.fixture(scope="session")
def deploy_params() -> DeployParams:
    return load_params(DEFAULT_PARAMS)
