"""Fixtures of the demo's tests: anvil for devnet (skipped, saying why, only where it is not
installed: `make test` installs it with npm when npm exists)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gpumarket.chain.anvil import ANVIL_NPM_PACKAGE, find_anvil
from gpumarket.chain.params import DeployParams, load_params
from gpumarket.demo.story import DEFAULT_PARAMS


@pytest.fixture
def anvil_binary() -> Path:
    """anvil's binary. Skipped (saying why) only where neither anvil nor npm exists; with npm
    present an uninstalled anvil is a failure: `make test` installs it (`make anvil`)."""
    binary = find_anvil()
    if binary is None:
        if shutil.which("npm") is not None:
            pytest.fail(f"anvil is not installed but npm is: run `make anvil` (npm install {ANVIL_NPM_PACKAGE})")
        reason = f"neither anvil nor npm is installed: the devnet tests need anvil ({ANVIL_NPM_PACKAGE} from npm)"
        print(reason)
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="session")
def deploy_params() -> DeployParams:
    return load_params(DEFAULT_PARAMS)
