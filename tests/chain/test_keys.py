"""gpumarket.chain.keys: ape keystore accounts with the passphrase from the environment,
public test keys on local chains only, and a key object that never shows its secret."""

from __future__ import annotations

import copy
import json
import logging
import os
import pickle
from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from gpumarket.chain.anvil import AnvilNode
from gpumarket.chain.connection import EMBEDDED, connect
from gpumarket.chain.errors import NotLocalChain
from gpumarket.chain.keys import (
    KeyLoadError,
    ServiceKey,
    load_key,
    load_keystore,
    passphrase_env_var,
    test_account,
    test_oracle,
)
from gpumarket.signing import eip712
from gpumarket.signing.eip712 import Domain
from gpumarket.testing.committee import Committee, job_report

PASSPHRASE = "correct horse battery staple"
WRONG = "not-the-passphrase-4711"
ALIAS = "oracle1"


@pytest.fixture(scope="module")
def secret() -> bytes:
    return os.urandom(32)


@pytest.fixture(scope="module")
def keystore_dir(tmp_path_factory, secret):
    """An ape accounts folder holding `oracle1`, written the way `ape accounts import` writes it
    (eth-account's default scrypt keyfile as JSON)."""
    folder = tmp_path_factory.mktemp("ape") / "accounts"
    folder.mkdir()
    (folder / f"{ALIAS}.json").write_text(json.dumps(Account.encrypt(secret, PASSPHRASE)))
    (folder / "broken.json").write_text(json.dumps({"not": "a keyfile"}))
    return folder


def _secret_forms(secret: bytes) -> list[str]:
    return [secret.hex(), secret.hex().upper(), "0x" + secret.hex(), repr(secret), str(list(secret))[:40]]


def test_keystore_with_passphrase_from_the_environment(keystore_dir, secret, monkeypatch):
    monkeypatch.setenv(passphrase_env_var(ALIAS), PASSPHRASE)
    key = load_key(f"keystore:{ALIAS}", accounts_dir=keystore_dir)
    assert key.address == Account.from_key(secret).address
    assert key.source == f"keystore:{ALIAS}"
    assert passphrase_env_var(ALIAS) == "APE_ACCOUNTS_oracle1_PASSPHRASE"


def test_keystore_in_apes_data_folder(keystore_dir, secret, monkeypatch):
    monkeypatch.setenv("APE_DATA_FOLDER", str(keystore_dir.parent))
    key = load_keystore(ALIAS, PASSPHRASE)
    assert key.address == Account.from_key(secret).address


@pytest.mark.parametrize(
    ("alias", "env", "message"),
    [
        (ALIAS, WRONG, "keystore:oracle1: wrong passphrase or corrupt keyfile"),
        (ALIAS, None, "keystore:oracle1: no passphrase (set APE_ACCOUNTS_oracle1_PASSPHRASE)"),
        ("nobody", "x", "keystore:nobody: no keyfile at"),
        ("broken", "x", "is not a keystore file"),
        ("../etc", "x", "invalid account alias"),
    ],
)
def test_keystore_errors_name_the_alias_never_the_secret(keystore_dir, secret, monkeypatch, alias, env, message):
    monkeypatch.delenv(passphrase_env_var(alias), raising=False)
    if env is not None:
        monkeypatch.setenv(passphrase_env_var(alias), env)
    with pytest.raises(KeyLoadError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        load_key(f"keystore:{alias}", accounts_dir=keystore_dir)
    text = f"{caught.value} {caught.value!r} {caught.value.__cause__!r} {caught.value.__context__!r}"
    for form in [*_secret_forms(secret), PASSPHRASE, WRONG]:
        assert form not in text


def test_the_key_never_shows_itself(keystore_dir, secret, monkeypatch, caplog):
    monkeypatch.setenv(passphrase_env_var(ALIAS), PASSPHRASE)
    key = load_key(f"keystore:{ALIAS}", accounts_dir=keystore_dir)

    @dataclass
    class ServiceConfig:
        name: str
        key: ServiceKey

    log = logging.getLogger("gpumarket.test.keys")
    with caplog.at_level(logging.DEBUG):
        log.debug("key %s %r %a", key, key, key)
        log.info("config %s", ServiceConfig("oracle", key))
        log.info("mapping %s", {"key": key, "list": [key]})
        log.info("formatted %s", f"{key} {key!r} {key:>80}")
    shown = [repr(key), str(key), format(key), f"{key!s:^90}", "%s" % key, caplog.text]  # noqa: UP031 - %-formatting too
    for text in shown:
        assert key.address in text or text == caplog.text
        for form in _secret_forms(secret):
            assert form not in text
    assert repr(key) == f"ServiceKey(address={key.address}, source='keystore:oracle1')"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(key)
    assert copy.deepcopy(key) is key
    assert not hasattr(key, "__dict__") and not hasattr(key, "key") and not hasattr(key, "private_key")


def test_the_key_signs(keystore_dir, monkeypatch):
    key = test_oracle(0)
    domain = Domain(chain_id=31337, verifying_contract="0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0")
    report = job_report(1, test_account(2).address)
    assert eip712.recover(domain, report, key.sign_report(domain, report)) == key.address
    signed = key.sign_message(encode_defunct(text="hello"))
    assert Account.recover_message(encode_defunct(text="hello"), signature=signed.signature) == key.address


def test_public_test_keys():
    assert test_account(0).address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # ape's and anvil's account 0
    assert [test_oracle(i).address for i in range(3)] == Committee.of_size(3, 2).addresses
    with pytest.raises(KeyLoadError, match="index must be an int"):
        test_account(-1)
    with pytest.raises(KeyLoadError, match="index must be an int"):
        test_oracle(True)  # type: ignore[arg-type]


def test_test_keys_need_a_local_chain(anvil_binary, tmp_path):
    local = connect(EMBEDDED)
    assert load_key("test-account:3", w3=local).address == test_account(3).address
    assert load_key("test-oracle:1", w3=local).source == "test-oracle:1"
    with pytest.raises(KeyLoadError, match="needs the chain connection"):
        load_key("test-account:0")
    with pytest.raises(KeyLoadError, match="expected test-oracle:<index>"):
        load_key("test-oracle:x", w3=local)
    with pytest.raises(KeyLoadError, match="unknown key source"):
        load_key("raw:0x01", w3=local)
    # A node that says it is Ethereum mainnet (chain id 1): the public keys are refused.
    with AnvilNode(anvil_binary, chain_id=1, log_path=tmp_path / "anvil.log") as mainnet_like:
        with pytest.raises(NotLocalChain, match="not chain id 1"):
            load_key("test-oracle:0", w3=connect(mainnet_like.url))
