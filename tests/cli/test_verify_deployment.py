"""`gpumarket market verify-deployment` on anvil: a timelocked deployment passes against its own
parameters file, governance's changes pass once the file records them, and anything the chain
holds that the file does not say (a parameter, a role, the code) fails with exit 1, naming it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from gpumarket.chain.anvil import ANVIL_NPM_PACKAGE, AnvilNode, find_anvil
from gpumarket.chain.connection import advance_time, connect
from gpumarket.chain.market_deploy import MarketDeployment
from gpumarket.cli import main
from gpumarket.testing.committee import Committee
from helpers.timelock import EXECUTOR, PROPOSER, timelocked_params

DELAY = 300


class Governed:
    """One anvil, a timelocked market deployed from a YAML file, and the CLI against both."""

    def __init__(self, node: AnvilNode, folder: Path) -> None:
        self.node, self.folder = node, folder
        self.params_path = folder / "params.yaml"
        self.record = folder / "deployment.json"
        data = timelocked_params(DELAY)
        self.write_params(data)
        deployed = self.invoke("market", "deploy", "--params", str(self.params_path), "--out", str(self.record), key=0)
        assert deployed.exit_code == 0, deployed.stdout + deployed.stderr

    def params(self) -> dict[str, Any]:
        return yaml.safe_load(self.params_path.read_text())

    def write_params(self, data: dict[str, Any]) -> None:
        self.params_path.write_text(yaml.safe_dump(data))

    def invoke(self, *args: str, key: int | None = None) -> Result:
        flags = ["--rpc", self.node.url, "--json"]
        if self.record.exists():
            flags += ["--deployment", str(self.record)]
        if key is not None:
            flags += ["--key", f"test-account:{key}"]
        return CliRunner(mix_stderr=False).invoke(main, [*args, *flags], env={"GPUMARKET_CONFIG": ""})

    def govern(self, *args: str) -> None:
        """Schedule a change as the proposer, wait out the delay, execute it as the executor."""
        scheduled = self.invoke("market", *args, key=PROPOSER)
        assert scheduled.exit_code == 0, scheduled.stdout + scheduled.stderr
        advance_time(connect(self.node.url), DELAY)
        executed = self.invoke("market", "execute", json.loads(scheduled.stdout)["operation"], key=EXECUTOR)
        assert executed.exit_code == 0, executed.stdout + executed.stderr

    def verify(self) -> tuple[int, dict[str, Any]]:
        result = self.invoke("market", "verify-deployment")
        return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def governed(tmp_path) -> Iterator[Governed]:
    binary = find_anvil()
    if binary is None:
        pytest.skip(f"anvil not installed: `make anvil` installs it with npm ({ANVIL_NPM_PACKAGE})")
    node = AnvilNode(binary, log_path=tmp_path / "anvil.log").start()
    try:
        yield Governed(node, tmp_path)
    finally:
        node.stop()


def _differing(document: dict[str, Any]) -> list[str]:
    return [check["what"] for check in document["checks"] if not check["ok"]]


def test_a_fresh_timelocked_deployment_passes_against_its_parameters(governed):
    code, document = governed.verify()
    assert (code, document["ok"], _differing(document)) == (0, True, [])
    checked = [check["what"] for check in document["checks"]]
    for expected in ("code of GpuMarket", "code of Timelock", "code hash of OracleBonds", "timelock proposers"):
        assert any(what.startswith(expected) for what in checked), expected
    record = MarketDeployment.read(governed.record)
    assert record.params_file == str(governed.params_path)


def test_governance_changes_pass_once_the_file_records_them_and_one_more_fails(governed):
    members = Committee.of_size(5, threshold=3).addresses
    governed.govern("committee", "--set", ",".join(members), "--threshold", "3")
    governed.govern("params", "--set", "slash_bps=5000")
    # The chain changed, the file did not: both show as differences.
    code, document = governed.verify()
    assert code == 1
    assert set(_differing(document)) == {"committee members", "committee threshold"} | (
        {"parameter slash_bps"} if "slash_bps" in governed.params()["parameters"] else set()
    )
    data = governed.params()
    data["committee"] = {"members": members, "threshold": 3}
    data["parameters"]["slash_bps"] = 5_000
    governed.write_params(data)
    assert governed.verify()[0] == 0

    governed.govern("params", "--set", "settle_grace=900")
    code, document = governed.verify()
    assert (code, _differing(document)) == (1, ["parameter settle_grace"])
    differing = next(check for check in document["checks"] if not check["ok"])
    assert (differing["expected"], differing["found"]) == ("1800", "900")


def test_a_role_the_file_does_not_name_fails(governed):
    data = governed.params()
    data["timelock"]["guardians"] = []
    governed.write_params(data)
    code, document = governed.verify()
    assert (code, _differing(document)) == (1, ["timelock guardians"])


def test_code_that_is_not_the_compile_fails(governed, tmp_path):
    # A record naming another contract's address as the market's BatchSettler: its code differs.
    record = json.loads(governed.record.read_text())
    record["contracts"]["BatchSettler"]["address"] = record["contracts"]["OracleBonds"]["address"]
    governed.record.write_text(json.dumps(record))
    code, document = governed.verify()
    assert code == 1 and any(what.startswith("code of BatchSettler") for what in _differing(document))
