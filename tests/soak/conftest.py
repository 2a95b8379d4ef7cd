"""The soak's test: the `soak` marker, and anvil (skipped, saying why, only where neither anvil
nor npm is installed: `make test` installs anvil with npm when npm exists)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gpumarket.chain.anvil import ANVIL_NPM_PACKAGE, find_anvil


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "soak: the fault soak on anvil (minutes of a saturated machine); in `make test`, "
                   "`-m 'not soak'` leaves it out")


@pytest.fixture
def anvil_binary() -> Path:
    binary = find_anvil()
    if binary is None:
        if shutil.which("npm") is not None:
            pytest.fail(f"anvil is not installed but npm is: run `make anvil` (npm install {ANVIL_NPM_PACKAGE})")
        reason = f"neither anvil nor npm is installed: the soak needs anvil ({ANVIL_NPM_PACKAGE} from npm)"
        print(reason)
        pytest.skip(reason)
    return binary
