"""`gpumarket oracle run`'s refusals before it starts anything (the running service is tested
in tests/oracle_service and, as a process on anvil, by the devnet test in tests/demo)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpumarket.cli import main


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["oracle", "run", *args])
    return result.exit_code, result.output


def deployment_file(tmp_path: Path) -> Path:
    path = tmp_path / "deployment.json"
    address = "0x" + "11" * 20
    path.write_text(
        json.dumps(
            {
                "chain_id": 31337,
                "market": address,
                "stake_token": address,
                "payment_token": address,
                "deployer": address,
                "block": 1,
                "mock_tokens": True,
            }
        )
    )
    return path


def test_the_embedded_chain_is_refused(tmp_path: Path) -> None:
    code, output = run(
        "--rpc",
        "embedded",
        "--deployment",
        str(deployment_file(tmp_path)),
        "--key",
        "test-oracle:0",
        "--db",
        str(tmp_path / "o.sqlite"),
    )
    assert code == 2 and "embedded chain lives inside one process" in output


def test_an_unreachable_node_is_a_clear_error(tmp_path: Path) -> None:
    code, output = run(
        "--rpc",
        "http://127.0.0.1:9",
        "--deployment",
        str(deployment_file(tmp_path)),
        "--key",
        "test-oracle:0",
        "--db",
        str(tmp_path / "o.sqlite"),
    )
    assert code == 1 and "Error: node http://127.0.0.1:9" in output and "Traceback" not in output


def test_help_lists_every_timing() -> None:
    code, output = run("--help")
    assert code == 0
    for option in (
        "--heartbeat-interval",
        "--silent-after",
        "--fallback-delay",
        "--job-workers",
        "--turn-wait",
        "--max-job-lag",
        "--batch-size",
        "--batch-max-age",
    ):
        assert option in output


def test_what_is_missing_is_named(tmp_path: Path) -> None:
    code, output = run(
        "--rpc",
        "http://127.0.0.1:9",
        "--deployment",
        str(deployment_file(tmp_path)),
        "--db",
        str(tmp_path / "o.sqlite"),
    )
    assert code == 2 and "--key required" in output


def test_the_config_file_supplies_the_node_and_the_deployment(tmp_path: Path) -> None:
    config = tmp_path / "gpumarket.toml"
    config.write_text(f'rpc = "http://127.0.0.1:9"\ndeployment = "{deployment_file(tmp_path)}"\n')
    code, output = run("--config", str(config), "--key", "test-oracle:0", "--db", str(tmp_path / "o.sqlite"))
    assert code == 1 and "Error: node http://127.0.0.1:9" in output  # it got as far as the node


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("ghcr.io", "is not HOST=URL"),
        ("=https://ghcr.io", "is not HOST=URL"),
        ("ghcr.io=", "is not HOST=URL"),
        ("ghcr.io=ftp://ghcr.io", "is not an http(s) URL"),
        ("ghcr.io/x=https://ghcr.io", "is not host[:port]"),
    ],
)
def test_the_registry_option_is_checked_before_anything_starts(tmp_path: Path, option: str, message: str) -> None:
    common = ("--rpc", "http://127.0.0.1:9", "--deployment", str(deployment_file(tmp_path)), "--key", "test-oracle:0")
    code, output = run(*common, "--db", str(tmp_path / "o.sqlite"), "--registry", option)
    assert code == 2 and "--registry" in output and message in output, output
    code, output = run(
        *common,
        "--db",
        str(tmp_path / "o.sqlite"),
        "--registry",
        "ghcr.io=https://ghcr.io",
        "--registry",
        "127.0.0.1:5000=http://127.0.0.1:5000",
    )
    assert code == 1 and "Error: node http://127.0.0.1:9" in output  # got as far as the node


@pytest.mark.parametrize("through", ["flag", "config file"])
def test_a_missing_deployment_record_is_named_however_it_was_given(tmp_path: Path, through: str) -> None:
    missing = tmp_path / "missing.json"
    if through == "flag":
        where: tuple[str, ...] = ("--rpc", "http://127.0.0.1:9", "--deployment", str(missing))
    else:
        config = tmp_path / "gpumarket.toml"
        config.write_text(f'rpc = "http://127.0.0.1:9"\ndeployment = "{missing}"\n')
        where = ("--config", str(config))
    code, output = run(*where, "--key", "test-oracle:0", "--db", str(tmp_path / "o.sqlite"))
    assert code == 2 and "no deployment record at" in output and "Traceback" not in output
