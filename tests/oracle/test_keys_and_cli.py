"""Keys never show in an oracle: a whole run's DEBUG logs,
and the `gpumarket oracle serve-api` process (test key and ape keystore account)."""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from eth_account import Account

from gpumarket.cli import main
from gpumarket.oracle.peers import PeerClient, PeerConfig, gather_job_signatures, push_signature
from gpumarket.oracle.store import ConflictingDecision
from gpumarket.signing import eip712
from gpumarket.signing.eip712 import Outcome
from gpumarket.testing.committee import oracle_key

from .conftest import CHAIN_ID, CONTRACT, PROVIDER, job_report
from .test_api import call, push_body

PASSPHRASE = "correct horse battery staple 7"
KEYSTORE_KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")


def key_forms(raw: bytes) -> list[str]:
    """Every way a key's bytes could show up in text."""
    hexed = raw.hex()
    return [hexed, hexed.upper(), "0x" + hexed, str(raw), repr(raw), str(int.from_bytes(raw, "big"))]


def assert_no_key(text: str, *raws: bytes) -> None:
    for raw in raws:
        for form in key_forms(raw):
            assert form not in text, "key material in the output"


def write_keystore(folder: Path, alias: str, raw: bytes = KEYSTORE_KEY) -> Path:
    path = folder / "accounts" / f"{alias}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # pbkdf2 with few rounds: a test keystore needs no slow KDF.
    path.write_text(json.dumps(Account.encrypt(raw, PASSPHRASE, kdf="pbkdf2", iterations=1000)))
    return path


def test_a_whole_run_logs_no_key(make_node, domain, caplog):
    caplog.set_level(logging.DEBUG)
    nodes = [make_node(i, serve=True) for i in range(3)]
    report = job_report(31, PROVIDER, gpu_seconds=42)
    signed = [node.signer.decide_and_sign(report) for node in nodes]
    fast = PeerConfig(timeout_s=1.0, attempts=1)
    peers = [PeerClient(n.url, domain, fast) for n in nodes[1:]]
    gather_job_signatures(nodes[0].store, 31, peers, nodes[0].metrics)
    push_signature(signed[1], [PeerClient(nodes[2].url, domain, fast)])
    call(nodes[0].url, "POST", "/signatures/job/31", b"{broken")
    call(nodes[0].url, "POST", "/signatures/job/31", push_body(report, eip712.sign(oracle_key(9), domain, report)))
    with pytest.raises(ConflictingDecision):
        nodes[0].signer.decide_and_sign(replace(report, outcome=Outcome.FAILED))
    nodes[0].signer.quorum(31)
    text = caplog.text + "\n".join(repr(r.args) for r in caplog.records)
    assert "decided job 31" in text and "listening on" in text  # the logs did run at DEBUG
    assert_no_key(text, *(oracle_key(i) for i in range(3)))


# --------------------------------------------------------------------------- the CLI process


class Process:
    """A `gpumarket oracle serve-api` child whose stderr is read line by line (bounded waits)."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gpumarket", "oracle", "serve-api", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no {pattern!r} in the output: {''.join(self.seen)}")

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        time.sleep(0.1)  # let the pump drain
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code


def committee_args(members: list[str]) -> list[str]:
    args = ["--epoch", "1", "--threshold", "2"]
    for member in members:
        args += ["--member", member]
    return args


def test_serve_api_process_with_a_test_key(tmp_path, members, domain):
    db = tmp_path / "cli.db"
    proc = Process(
        ["--db", str(db), "--test-key", "1", "--chain-id", str(CHAIN_ID), "--contract", CONTRACT]
        + committee_args(members)
        + ["--log-level", "DEBUG"]
    )
    try:
        url = proc.wait_for(r"listening on (http://\S+)")[1]
        with urllib.request.urlopen(url + "/health", timeout=5) as response:
            health = json.load(response)
        assert health["address"] == members[1] and (health["epoch"], health["threshold"]) == (1, 2)
        status, body, _ = call(url, "GET", "/reports/job/1")
        assert (status, body["error"]) == (404, "not_decided")
        status, body, _ = call(url, "POST", "/signatures/job/1", b"x" * 20_000)
        assert (status, body["error"]) == (413, "body_too_large")
        assert PeerClient(url, domain, PeerConfig(attempts=1)).health()["status"] == "ok"
    finally:
        code = proc.stop()
    assert code == 0, "".join(proc.seen)
    assert any("stopped" in line for line in proc.seen)
    assert_no_key("".join(proc.seen), *(oracle_key(i) for i in range(3)))


def test_serve_api_process_with_a_keystore_account(tmp_path, members):
    write_keystore(tmp_path, "oracle-b")
    env = {"APE_DATA_FOLDER": str(tmp_path), "APE_ACCOUNTS_oracle-b_PASSPHRASE": PASSPHRASE}
    proc = Process(
        [
            "--db",
            str(tmp_path / "ks.db"),
            "--key-alias",
            "oracle-b",
            "--chain-id",
            "1",
            "--contract",
            CONTRACT,
            "--log-level",
            "DEBUG",
        ],
        env,
    )
    try:
        url = proc.wait_for(r"listening on (http://\S+)")[1]
        with urllib.request.urlopen(url + "/health", timeout=5) as response:
            health = json.load(response)
        assert health["address"] == eip712.address_of(KEYSTORE_KEY) and health["epoch"] is None
    finally:
        code = proc.stop()
    assert code == 0
    text = "".join(proc.seen)
    assert PASSPHRASE not in text
    assert_no_key(text, KEYSTORE_KEY)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--test-key", "0", "--chain-id", "1"], "refused on chain 1"),
        (["--chain-id", "1337"], "exactly one of --key-alias and --test-key"),
        (["--test-key", "0", "--key-alias", "x", "--chain-id", "1337"], "exactly one"),
        (["--test-key", "0", "--chain-id", "1337", "--epoch", "1"], "go together"),
        (["--key-alias", "nobody", "--chain-id", "1337"], "passphrase"),
    ],
)
def test_serve_api_refuses_bad_options(tmp_path, args, message, monkeypatch):
    monkeypatch.setenv("APE_DATA_FOLDER", str(tmp_path))
    result = CliRunner().invoke(
        main, ["oracle", "serve-api", "--db", str(tmp_path / "x.db"), "--contract", CONTRACT, *args]
    )
    assert result.exit_code == 2 and message in result.output, result.output
