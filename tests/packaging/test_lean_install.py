"""`pip install gpumarket` with no extra: what an oracle operator, a provider or a client installs.

One fresh venv for the module, under a temporary folder: the package is built from a copy of the
checkout (the build writes nothing into it) and installed by a real `pip install`, its core
dependencies resolved from the configured index with requirements.lock as constraints (the versions
CI tests). Then none of the dev or demo packages came along, every command's --help works, the
operators' commands run against a real node with the contracts the package ships (no compiler), and
a command that needs an extra says which one.

Slow (a venv install: a minute or two): marked `packaging`, run by `make test-packaging`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from gpumarket.chain.anvil import AnvilNode
from gpumarket.chain.artifacts import load_artifacts
from gpumarket.chain.connection import connect

pytestmark = pytest.mark.packaging

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK = REPO_ROOT / "requirements.lock"
PARAMS = REPO_ROOT / "deploy" / "params" / "default.yaml"
INSTALL_TIMEOUT_S = 900  # a cold pip cache downloads ~50 wheels; a warm one takes under a minute

# What the issue names as never part of the core install, besides every package an extra lists.
NEVER_IN_CORE = {
    "eth-ape",
    "ape-vyper",
    "ape-titanoboa",
    "ape-foundry",
    "vyper",
    "snekmate",
    "titanoboa",
    "pytest",
    "hypothesis",
    "eth-tester",
    "py-evm",
}
# Their top-level modules: importing every gpumarket module must load none of them.
EXTRA_MODULES = {
    "ape",
    "ape_vyper",
    "ape_titanoboa",
    "ape_foundry",
    "vyper",
    "snekmate",
    "boa",
    "pytest",
    "_pytest",
    "hypothesis",
    "eth_tester",
    "eth",
    "torch",
}
# The only modules that need an extra to import: a test helper (dev) and the torch prover (gpu).
NEEDS_AN_EXTRA = {
    "gpumarket.testing.hypothesis_profiles": "hypothesis",
    "gpumarket.measure.provers.torch_prover": "torch",
}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


@dataclass(frozen=True)
class LeanVenv:
    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def run(self, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=_clean_env(), cwd=self.root
        )

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        return self.run(self.bin / "python", "-c", textwrap.dedent(code))

    def gpumarket(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return self.run(self.bin / "gpumarket", *args)


def _clean_env() -> dict[str, str]:
    """This process's environment without what would let the lean venv see the dev one."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    dev_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != dev_bin)
    return env


@pytest.fixture(scope="module")
def lean(tmp_path_factory: pytest.TempPathFactory) -> LeanVenv:
    work = tmp_path_factory.mktemp("lean-install")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO_ROOT / name, source / name)
    shutil.copytree(
        REPO_ROOT / "offchain", source / "offchain", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    )
    root = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, env=_clean_env(), timeout=300)
    install = subprocess.run(
        [
            str(root / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-c",
            str(LOCK),
            str(source),
        ],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=INSTALL_TIMEOUT_S,
    )
    assert install.returncode == 0, (
        f"pip install of the core package failed:\n{install.stdout[-4000:]}\n{install.stderr[-4000:]}"
    )
    return LeanVenv(root)


def test_the_core_install_holds_no_dev_or_demo_package(lean: LeanVenv) -> None:
    listed = lean.run(lean.bin / "python", "-m", "pip", "list", "--format=json", "--disable-pip-version-check")
    assert listed.returncode == 0, listed.stderr
    installed = {_normalized(entry["name"]) for entry in json.loads(listed.stdout)}
    project = _pyproject()["project"]
    in_extras = {_normalized(Requirement(r).name) for reqs in project["optional-dependencies"].values() for r in reqs}
    forbidden = {_normalized(n) for n in NEVER_IN_CORE} | in_extras
    assert installed & forbidden == set(), f"the core install pulled in {sorted(installed & forbidden)}"
    assert not [name for name in installed if name.startswith("ape-")]
    core = {_normalized(Requirement(r).name) for r in project["dependencies"]}
    assert core - installed == set(), f"core dependencies missing: {sorted(core - installed)}"
    assert "gpumarket" in installed


def test_the_operators_commands_start(lean: LeanVenv) -> None:
    for command in (["--help"], ["oracle", "run", "--help"], ["provider", "run", "--help"], ["client", "--help"]):
        result = lean.gpumarket(*command)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        assert result.stdout.startswith("Usage: gpumarket"), (command, result.stdout[:200])


def test_every_commands_help_works_without_an_extra(lean: LeanVenv) -> None:
    result = lean.python("""
        import json
        import click
        from click.testing import CliRunner
        from gpumarket.cli import main

        def paths(group, prefix=()):
            found = [prefix]
            for name, command in sorted(group.commands.items()):
                found += paths(command, (*prefix, name)) if isinstance(command, click.Group) else [(*prefix, name)]
            return found

        runner = CliRunner()
        failures = {}
        walked = paths(main)
        for path in walked:
            outcome = runner.invoke(main, [*path, "--help"], prog_name="gpumarket")
            if outcome.exit_code != 0:
                failures[" ".join(path)] = outcome.output[-500:] + repr(outcome.exception)
        print(json.dumps({"walked": len(walked), "failures": failures}))
    """)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["walked"] > 30  # the whole tree, not just the root
    assert report["failures"] == {}


def test_no_module_imports_an_extra(lean: LeanVenv) -> None:
    result = lean.python(f"""
        import importlib, json, pkgutil, sys
        import gpumarket

        failed = {{}}
        for module in pkgutil.walk_packages(gpumarket.__path__, "gpumarket."):
            try:
                importlib.import_module(module.name)
            except ImportError as error:
                failed[module.name] = str(error)
        loaded = sorted(name for name in sys.modules if name.split(".")[0] in {sorted(EXTRA_MODULES)!r})
        print(json.dumps({{"failed": failed, "loaded": loaded}}))
    """)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["loaded"] == [], "a gpumarket module imports an extra's package at import time"
    assert set(report["failed"]) == set(NEEDS_AN_EXTRA), report["failed"]
    for module, package in NEEDS_AN_EXTRA.items():
        assert package in report["failed"][module]


def test_the_shipped_contracts_load_without_a_compiler(lean: LeanVenv) -> None:
    result = lean.python("""
        import json
        from gpumarket.chain.artifacts import load_artifacts
        artifacts = load_artifacts()
        print(json.dumps({name: a.bytecode for name, a in artifacts.contracts.items()}))
    """)
    assert result.returncode == 0, result.stderr
    shipped = load_artifacts()
    assert json.loads(result.stdout) == {name: a.bytecode for name, a in shipped.contracts.items()}


def test_a_market_deploys_from_the_core_install(lean: LeanVenv, anvil_binary: Path) -> None:
    record = lean.root.parent / "deployment.json"
    node = AnvilNode(anvil_binary, log_path=lean.root.parent / "anvil.log").start()
    try:
        deployed = lean.gpumarket(
            "market",
            "deploy",
            "--rpc",
            node.url,
            "--key",
            "test-account:0",
            "--mock-tokens",
            "--params",
            PARAMS,
            "--out",
            record,
        )
        assert deployed.returncode == 0, (deployed.stdout, deployed.stderr)
        market = json.loads(record.read_text())["market"]
        code = connect(node.url).eth.get_code(market).hex().removeprefix("0x")
        assert code.startswith(load_artifacts()["GpuMarket"].runtime_bytecode.removeprefix("0x"))
        params = lean.gpumarket("market", "params", "--rpc", node.url, "--deployment", record, "--json")
        assert params.returncode == 0, (params.stdout, params.stderr)
        assert json.loads(params.stdout)
    finally:
        node.stop()


@pytest.mark.parametrize(
    "command",
    [
        ["demo"],
        ["market", "deploy", "--rpc", "embedded", "--key", "test-account:0", "--mock-tokens", "--params", str(PARAMS)],
    ],
)
def test_a_command_that_needs_the_demo_extra_names_it(lean: LeanVenv, command: list[str]) -> None:
    result = lean.gpumarket(*command)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "pip install 'gpumarket[demo]'" in result.stderr, result.stderr
