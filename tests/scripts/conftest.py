"""Fixtures for the deploy script, the walkthrough and the gas benchmark.

The scripts run as users run them (`ape run ...`, `python -m bench.gas`) in a subprocess
from the repository root; their own chain lives and dies with that process.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PARAMS = REPO_ROOT / "deploy" / "params" / "default.yaml"
# Generous: a cold `ape run` on a busy 2-core machine takes a few seconds.
SUBPROCESS_TIMEOUT_S = 240


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def default_params_path() -> Path:
    return DEFAULT_PARAMS


@pytest.fixture
def params_data() -> dict[str, Any]:
    """deploy/params/default.yaml as plain data, for a test to change."""
    return yaml.safe_load(DEFAULT_PARAMS.read_text())


@pytest.fixture(scope="session")
def run_in_repo() -> Callable[..., subprocess.CompletedProcess]:
    """Runs a command of the venv (`ape`, or python with `-m`) from the repository root."""

    def run(*args: str) -> subprocess.CompletedProcess:
        executable = args[0]
        if executable == "ape":
            command = [str(Path(sys.executable).parent / "ape"), *args[1:]]
        elif executable == "python":
            command = [sys.executable, *args[1:]]
        else:
            raise ValueError(f"unexpected executable {executable}")
        return subprocess.run(
            command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False
        )

    return run


@pytest.fixture
def write_params(tmp_path) -> Callable[[dict[str, Any]], Path]:
    """Writes params data to a YAML file in the test's temporary folder."""

    def write(data: dict[str, Any], name: str = "params.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data))
        return path

    return write
