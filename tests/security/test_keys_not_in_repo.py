"""Keys never in the repo (docs/PROTOCOL.md, Security properties).

Scans every git-tracked file for a 64-hex-digit value near a private-key-ish name, and for
any of the keys the tests sign with: the oracle keys are keccak-derived at run time and
ape's test accounts come from the public test mnemonic, so none of them may appear in a
file. Each scanner is first shown to catch a planted key, so a pass means something.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from helpers.committee import oracle_key

REPO_ROOT = Path(__file__).resolve().parents[2]
# A name that announces a key, then (on the same line, within 40 characters) 64 hex digits.
NAMED_KEY = re.compile(r"(private[_ -]?key|secret|mnemonic)[^\n]{0,40}?\b(?:0x)?[0-9a-f]{64}\b", re.IGNORECASE)
HEX_64 = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])", re.IGNORECASE)
# Covers every oracle index the tests use (committees of up to 32, offsets 100, 500, 1000).
ORACLE_INDICES = range(2_048)


def tracked_files() -> list[Path]:
    try:
        listing = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git work tree (e.g. an unpacked sdist): nothing tracked to scan")
    return [REPO_ROOT / name for name in listing.decode().split("\0") if name]


def read_text(path: Path) -> str | None:
    """The file's text, or None for binaries and files deleted in the work tree."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
    return None if b"\0" in data else data.decode("utf-8", errors="replace")


def named_keys(text: str) -> list[str]:
    return [match.group(0) for match in NAMED_KEY.finditer(text)]


def known_keys_in(text: str, known: set[str]) -> set[str]:
    return {value.lower() for value in HEX_64.findall(text)} & known


@pytest.fixture(scope="module")
def signing_keys(accounts) -> set[str]:
    """Hex of every private key the test suite signs with."""
    keys = {oracle_key(index).hex() for index in ORACLE_INDICES}
    keys |= {account.private_key.lower().removeprefix("0x") for account in accounts}
    return keys


@pytest.fixture(scope="module")
def tracked_texts() -> dict[Path, str]:
    texts = {path: read_text(path) for path in tracked_files()}
    return {path: text for path, text in texts.items() if text is not None}


def test_the_named_key_scanner_catches_a_planted_key():
    planted = "PRIVATE_KEY = 0x" + "ab" * 32  # built at run time, so this file stays clean
    assert named_keys(f"config:\n  {planted}\n") == [planted]
    assert named_keys("secret: " + "0" * 64) != []
    assert named_keys("result_hash = 0x" + "ab" * 32) == []


def test_no_tracked_file_names_a_key(tracked_texts):
    found = {str(path.relative_to(REPO_ROOT)): named_keys(text) for path, text in tracked_texts.items()}
    assert {path: hits for path, hits in found.items() if hits} == {}


def test_the_known_key_scanner_catches_a_test_key(signing_keys):
    assert known_keys_in(f"key = '0x{oracle_key(3).hex().upper()}'", signing_keys) == {oracle_key(3).hex()}


def test_no_tracked_file_holds_a_test_key(tracked_texts, signing_keys):
    found = {
        str(path.relative_to(REPO_ROOT)): known_keys_in(text, signing_keys) for path, text in tracked_texts.items()
    }
    assert {path: len(keys) for path, keys in found.items() if keys} == {}
