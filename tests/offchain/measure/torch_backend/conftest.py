"""The torch prover's tests: marked ``torch`` (``make test-torch`` selects them with ``-m torch``)
and skipped, with the reason, where torch (the optional ``gpu`` extra) is not installed."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "torch: needs torch, the optional 'gpu' extra (make test-torch installs it)")
