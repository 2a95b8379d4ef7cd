"""The cluster runtime's options, as `provider run` and `serve-api` share them: refused before
anything starts when they do not go together."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from gpumarket.cli import main

COMMON = ("--address", "0x" + "11" * 20, "--chain-id", "31337", "--market", "0x" + "22" * 20)


def serve_api(tmp_path, *options: str) -> tuple[int, str]:
    arguments = ["provider", "serve-api", "--db", str(tmp_path / "p.sqlite"), "--workdir", str(tmp_path / "jobs")]
    result = CliRunner().invoke(main, [*arguments, *COMMON, *options])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    "options",
    [("--runtime", "ray"), ("--runtime", "ray", "--ray-address", "127.0.0.1:6379")],
)
def test_the_ray_runtime_needs_the_clusters_addresses(tmp_path, options) -> None:
    code, output = serve_api(tmp_path, *options)
    assert code == 2 and "--runtime ray needs the cluster's --ray-address and --ray-dashboard" in output


@pytest.mark.parametrize(
    ("option", "value"),
    [("--ray-address", "x"), ("--ray-dashboard", "x"), ("--ray-node-ip", "x"), ("--ray-python", "x")]
    + [("--ray-jobs-in", "process")],
)
def test_the_ray_options_are_refused_with_another_runtime(tmp_path, option, value) -> None:
    code, output = serve_api(tmp_path, "--runtime", "process", option, value)
    assert code == 2 and "the --ray-* options are for --runtime ray" in output


def test_help_names_the_ray_options() -> None:
    result = CliRunner().invoke(main, ["provider", "run", "--help"])
    assert result.exit_code == 0
    for option in ("--ray-address", "--ray-dashboard", "--ray-node-ip", "--ray-python", "--ray-jobs-in"):
        assert option in result.output


def test_without_ray_the_runtime_names_the_extra(tmp_path, monkeypatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real_find_spec(name, *a)
    )
    code, output = serve_api(
        tmp_path, "--runtime", "ray", "--ray-address", "127.0.0.1:9", "--ray-dashboard", "http://127.0.0.1:9"
    )
    assert code != 0 and "pip install 'gpumarket[ray]'" in output and "Traceback" not in output
