"""A local market's parameters with a `timelock:` section, as the governance tests deploy it:
deploy/params/default.yaml plus a Timelock whose proposer, executor and guardian are test
accounts 8, 9 and 10 (the deployer, test account 0, keeps no role)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gpumarket.chain.keys import test_account

DEFAULT_PARAMS = Path(__file__).resolve().parents[2] / "deploy" / "params" / "default.yaml"
DEPLOYER, PROPOSER, EXECUTOR, GUARDIAN, OUTSIDER = 0, 8, 9, 10, 11


def timelocked_params(min_delay: int) -> dict[str, Any]:
    """The default local parameters with a Timelock of ``min_delay`` seconds."""
    data = yaml.safe_load(DEFAULT_PARAMS.read_text())
    data["timelock"] = {
        "min_delay": min_delay,
        "proposers": [test_account(PROPOSER).address],
        "executors": [test_account(EXECUTOR).address],
        "guardians": [test_account(GUARDIAN).address],
    }
    return data
