"""The config file (gpumarket.config): TOML and YAML, flags over the file, $GPUMARKET_CONFIG,
and its refusals; then the file used by the provider commands and by the client group."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpumarket.cli import main
from gpumarket.config import ConfigError, load_config, resolve_settings
from gpumarket.containers.registry import registry_map

from .conftest import key, ok


def test_toml_and_yaml_and_relative_paths(tmp_path):
    (tmp_path / "a.toml").write_text('rpc = "http://node:8545"\ndeployment = "d/local.json"\nkey = "keystore:p1"\n')
    (tmp_path / "b.yaml").write_text("rpc: http://node:8545\ndeployment: /abs/local.json\n")
    toml = load_config(tmp_path / "a.toml")
    assert (toml.rpc, toml.deployment, toml.key) == ("http://node:8545", tmp_path / "d" / "local.json", "keystore:p1")
    yaml_ = load_config(tmp_path / "b.yaml")
    assert (yaml_.deployment, yaml_.key) == (Path("/abs/local.json"), None)


def test_flags_override_the_file_and_the_environment_names_it(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('rpc = "http://file:1"\nkey = "keystore:file"\n')
    settings = resolve_settings(None, rpc="http://flag:2", environ={"GPUMARKET_CONFIG": str(path)})
    assert (settings.rpc, settings.key, settings.source) == ("http://flag:2", "keystore:file", path)
    assert resolve_settings(None, environ={}).rpc is None


@pytest.mark.parametrize(
    "name, text, words",
    [
        ("x.toml", 'rpc = "u"\nrpcc = "typo"\n', "unknown field(s) rpcc"),
        ("x.toml", "rpc = [", "not valid TOML"),
        ("x.yaml", "- a\n- b\n", "expected a table"),
        ("x.yaml", "rpc: 5\n", "rpc must be a non-empty string"),
        ("x.ini", "rpc=u", "unknown config format"),
    ],
)
def test_bad_files_are_refused_precisely(tmp_path, name, text, words):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_config(tmp_path / name)


def test_registries_from_the_file_and_the_options(tmp_path):
    (tmp_path / "r.toml").write_text(
        'rpc = "u"\n[registries]\n"GHCR.io" = "https://ghcr.io"\n"10.0.0.5:5000" = "http://10.0.0.5:5000"\n'
    )
    (tmp_path / "r.yaml").write_text("registries:\n  ghcr.io: https://ghcr.io\n")
    from_toml = load_config(tmp_path / "r.toml").registries
    assert from_toml == {"ghcr.io": "https://ghcr.io", "10.0.0.5:5000": "http://10.0.0.5:5000"}
    assert load_config(tmp_path / "r.yaml").registries == {"ghcr.io": "https://ghcr.io"}
    assert resolve_settings(None, environ={}).registries == {}
    # Options add to the file's table, and a host named in both takes the option's URL.
    merged = registry_map(["ghcr.io=https://mirror.example", "quay.io=https://quay.io"], from_toml)
    assert merged == {
        "ghcr.io": "https://mirror.example",
        "10.0.0.5:5000": "http://10.0.0.5:5000",
        "quay.io": "https://quay.io",
    }
    for options, words in (
        (["ghcr.io"], "is not HOST=URL"),
        (["a.io=https://a", "A.io=https://b"], "given twice"),
        (["a.io=ftp://a"], "is not an http(s) URL"),
    ):
        with pytest.raises(ValueError, match=re.escape(words)):
            registry_map(options)


@pytest.mark.parametrize(
    "text, words",
    [
        ('registries = "ghcr.io"\n', "registries must be a table of host[:port] = base URL strings"),
        ('[registries]\n"ghcr.io" = 5\n', "registries must be a table"),
        (
            '[registries]\n"ghcr.io" = "ghcr.io"\n',
            "registries: registry 'ghcr.io': base URL 'ghcr.io' is not an http(s) URL",
        ),
        ('[registries]\n"a/b" = "https://a"\n', "registries: registry host 'a/b' is not host[:port]"),
    ],
)
def test_bad_registries_are_refused_precisely(tmp_path, text, words):
    (tmp_path / "r.toml").write_text(text)
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'r.toml'}: {words}")):
        load_config(tmp_path / "r.toml")


def test_a_raw_private_key_is_refused_without_repeating_it(tmp_path):
    secret = "ab" * 32
    (tmp_path / "k.toml").write_text(f'key = "0x{secret}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "k.toml")
    assert secret not in str(caught.value) and "raw private key" in str(caught.value)


def test_the_config_file_drives_the_provider_and_client_commands(cli_world, tmp_path):
    config = tmp_path / "gpumarket.toml"
    config.write_text(
        f'rpc = "{cli_world.node.url}"\ndeployment = "{cli_world.deployment_path}"\nkey = "test-account:8"\n'
    )
    status = ok(cli_world.invoke("provider", "status", "--json", "--config", str(config), connect_flags=False))
    assert status["address"] == key(8).address
    via_env = ok(
        cli_world.invoke("provider", "status", "--json", connect_flags=False, env={"GPUMARKET_CONFIG": str(config)})
    )
    assert via_env["address"] == key(8).address
    # A flag overrides the file's key.
    flagged = ok(
        cli_world.invoke(
            "provider", "status", "--json", "--config", str(config), "--key", "test-account:9", connect_flags=False
        )
    )
    assert flagged["address"] == key(9).address
    # The client group reads the same file.
    listed = CliRunner(mix_stderr=False).invoke(main, ["client", "--config", str(config), "providers", "--json"])
    assert listed.exit_code == 0, listed.stdout + listed.stderr
    assert isinstance(json.loads(listed.stdout), list)
    bad = tmp_path / "bad.toml"
    bad.write_text('nope = "x"\n')
    refused = CliRunner(mix_stderr=False).invoke(main, ["client", "--config", str(bad), "providers"])
    assert refused.exit_code == 1 and "unknown field(s) nope" in refused.stderr  # as the provider's commands
    assert "fix the config file" in refused.stderr
    refused_provider = cli_world.invoke("provider", "status", "--json", "--config", str(bad), connect_flags=False)
    assert refused_provider.exit_code == 1 and json.loads(refused_provider.stdout)["error"] == "bad_config"
