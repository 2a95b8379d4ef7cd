"""A command whose extra is not installed ends in one line naming the extra (fast, in process: the
extra's module is made unimportable, as in a core install; test_lean_install.py checks a real one)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpumarket.chain.connection import EMBEDDED, connect
from gpumarket.cli import main, missing_extra

PARAMS = Path(__file__).resolve().parents[2] / "deploy" / "params" / "default.yaml"


@pytest.fixture
def no_py_evm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "eth", None)  # `import eth` (py-evm) now fails as if not installed


def test_the_embedded_chain_names_the_demo_extra(no_py_evm) -> None:
    with pytest.raises(ModuleNotFoundError, match=r"py-evm .*pip install 'gpumarket\[demo\]'"):
        connect(EMBEDDED)


def test_a_command_on_the_embedded_chain_names_the_demo_extra(no_py_evm, tmp_path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "market",
            "deploy",
            "--rpc",
            EMBEDDED,
            "--key",
            "test-account:0",
            "--mock-tokens",
            "--params",
            str(PARAMS),
            "--out",
            str(tmp_path / "d.json"),
        ],
    )
    assert result.exit_code == 1, result.output
    assert result.output.strip() == (
        "Error: this command needs the demo extra (py-evm is not installed): pip install 'gpumarket[demo]'"
    )
    assert not (tmp_path / "d.json").exists()


def test_only_an_extras_module_is_named() -> None:
    assert missing_extra(ModuleNotFoundError("x", name="ape.contracts")) == ("eth-ape", "dev")
    assert missing_extra(ModuleNotFoundError("x", name="eth_tester")) == ("eth-tester", "demo")
    # A core dependency missing is a broken install, not an extra: it propagates as it is.
    assert missing_extra(ModuleNotFoundError("x", name="web3")) is None
    assert missing_extra(ModuleNotFoundError("x")) is None
