"""Signing keys of the services: ape keystore accounts, or public test keys on local chains.

A service names its key with one string (a CLI option or config field):

    keystore:<alias>      ~/.ape/accounts/<alias>.json (ape's keystore), decrypted with the
                          passphrase in $APE_ACCOUNTS_<alias>_PASSPHRASE (as ape reads it)
    test-account:<i>      account i of ape's public test mnemonic (funded on anvil and on
                          the embedded chain); local chains only
    test-oracle:<i>       gpumarket.testing.committee.oracle_key(i); local chains only

    key = load_key("keystore:oracle1")               # -> ServiceKey
    key = load_key("test-oracle:0", w3=w3)           # refuses unless w3 is a local chain

A ServiceKey signs transactions, EIP-712 reports and messages, and never shows its
secret: repr, str, format, logging and pickling print or carry only the address and where
the key came from; errors name the alias, never the passphrase or the key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.datastructures import SignedMessage, SignedTransaction
from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
from eth_account.messages import SignableMessage
from eth_account.signers.local import LocalAccount
from web3 import Web3

from gpumarket.chain.connection import TEST_HD_PATH, TEST_MNEMONIC, require_local_chain
from gpumarket.signing import eip712
from gpumarket.signing.eip712 import Domain, Report
from gpumarket.testing.committee import oracle_key

__all__ = [
    "APE_ACCOUNTS_DIR_ENV",
    "KeyLoadError",
    "ServiceKey",
    "load_key",
    "load_keystore",
    "passphrase_env_var",
    "test_account",
    "test_oracle",
]

# Where ape keeps its data (ape's own variable); accounts live in <it>/accounts.
APE_ACCOUNTS_DIR_ENV = "APE_DATA_FOLDER"
_MAX_KEYFILE_BYTES = 64 * 1024
_MAX_TEST_INDEX = 255


class KeyLoadError(ValueError):
    """A key could not be loaded; the message names the source, never a secret."""


class ServiceKey:
    """A local signing key that never prints itself.

    `source` says where it came from ("keystore:<alias>", "test-account:<i>", ...).
    """

    __slots__ = ("__account", "address", "source")

    def __init__(self, private_key: bytes, source: str) -> None:
        account: LocalAccount = Account.from_key(private_key)
        # Name-mangled: `key._ServiceKey__account` is the only way in, never a plain attribute.
        self.__account = account
        self.address: str = account.address
        self.source = source

    def __repr__(self) -> str:
        return f"ServiceKey(address={self.address}, source={self.source!r})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(repr(self), spec)

    def __reduce__(self) -> Any:
        raise TypeError("a ServiceKey cannot be pickled (it would carry the key)")

    def __copy__(self) -> ServiceKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ServiceKey:
        return self

    def sign_transaction(self, transaction: dict[str, Any]) -> SignedTransaction:
        return self.__account.sign_transaction(transaction)

    def sign_message(self, message: SignableMessage) -> SignedMessage:
        """EIP-191 signature (e.g. of an HTTP request body's hash)."""
        return self.__account.sign_message(message)

    def sign_report(self, domain: Domain, report: Report) -> bytes:
        """This member's 65-byte EIP-712 signature of a JobReport or HardwareReport."""
        return eip712.sign(self.__account.key, domain, report)


def passphrase_env_var(alias: str) -> str:
    """The variable ape reads an account's passphrase from: APE_ACCOUNTS_<alias>_PASSPHRASE."""
    return f"APE_ACCOUNTS_{alias}_PASSPHRASE"


def _accounts_dir() -> Path:
    data = os.environ.get(APE_ACCOUNTS_DIR_ENV)
    return (Path(data) if data else Path.home() / ".ape") / "accounts"


def load_keystore(alias: str, passphrase: str | None = None, accounts_dir: Path | None = None) -> ServiceKey:
    """Decrypt ape keystore account `alias` (<accounts_dir>/<alias>.json, default ~/.ape/accounts).

    The passphrase comes from the argument, else $APE_ACCOUNTS_<alias>_PASSPHRASE.
    """
    if not alias or "/" in alias or alias.startswith(".") or len(alias) > 64:
        raise KeyLoadError(f"invalid account alias {alias!r}")
    path = (accounts_dir if accounts_dir is not None else _accounts_dir()) / f"{alias}.json"
    if passphrase is None:
        passphrase = os.environ.get(passphrase_env_var(alias))
        if passphrase is None:
            raise KeyLoadError(f"keystore:{alias}: no passphrase (set {passphrase_env_var(alias)})")
    try:
        if path.stat().st_size > _MAX_KEYFILE_BYTES:
            raise KeyLoadError(f"keystore:{alias}: {path} is too large to be a keyfile")
        keyfile = json.loads(path.read_text())
    except FileNotFoundError:
        raise KeyLoadError(f"keystore:{alias}: no keyfile at {path} (ape accounts import {alias})") from None
    except (OSError, ValueError) as error:
        raise KeyLoadError(f"keystore:{alias}: cannot read {path} ({type(error).__name__})") from None
    try:
        private_key = Account.decrypt(keyfile, passphrase)
    except ValueError:
        # eth-account says "MAC mismatch" for a wrong passphrase; neither is repeated here.
        raise KeyLoadError(f"keystore:{alias}: wrong passphrase or corrupt keyfile") from None
    except (KeyError, TypeError):
        raise KeyLoadError(f"keystore:{alias}: {path} is not a keystore file") from None
    return ServiceKey(bytes(private_key), f"keystore:{alias}")


def _check_index(kind: str, index: int) -> None:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= _MAX_TEST_INDEX:
        raise KeyLoadError(f"{kind}: index must be an int in 0 .. {_MAX_TEST_INDEX}")


def test_account(index: int) -> ServiceKey:
    """Account `index` of ape's public test mnemonic (0 .. TEST_ACCOUNT_COUNT - 1 are funded)."""
    _check_index("test-account", index)
    seed = seed_from_mnemonic(TEST_MNEMONIC, "")
    return ServiceKey(key_from_seed(seed, f"{TEST_HD_PATH}/{index}"), f"test-account:{index}")


def test_oracle(index: int) -> ServiceKey:
    """Test oracle `index` of gpumarket.testing.committee (deploy/params/default.yaml uses 0-2)."""
    _check_index("test-oracle", index)
    return ServiceKey(oracle_key(index), f"test-oracle:{index}")


# Not collected by pytest despite the names.
test_account.__test__ = False  # type: ignore[attr-defined]
test_oracle.__test__ = False  # type: ignore[attr-defined]


def load_key(spec: str, *, w3: Web3 | None = None, accounts_dir: Path | None = None) -> ServiceKey:
    """Load the key `spec` names (see the module docstring).

    Test keys need `w3` and refuse unless it is a local chain (their keys are public).
    """
    kind, _, rest = spec.partition(":")
    if kind == "keystore":
        return load_keystore(rest, accounts_dir=accounts_dir)
    if kind in ("test-account", "test-oracle"):
        if w3 is None:
            raise KeyLoadError(f"{kind}: a test key needs the chain connection, to check it is local")
        require_local_chain(w3, f"the public test key {kind}")
        try:
            index = int(rest)
        except ValueError:
            raise KeyLoadError(f"{kind}: expected {kind}:<index>, got {spec!r}") from None
        return test_account(index) if kind == "test-account" else test_oracle(index)
    raise KeyLoadError(f"unknown key source {kind!r}: use keystore:<alias>, test-account:<i> or test-oracle:<i>")
