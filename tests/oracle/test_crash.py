"""Crash safety with real processes: an oracle killed with SIGKILL at any point never signs two
different reports for one job (or one hardware measurement) once restarted.

A child process (crash_child.py) decides and signs and is killed: at chosen points (just
before the decision's COMMIT; after the commit, inside sign; after signing, before the
signature is stored) and at random times while deciding many jobs. A fresh child then asks
for a DIFFERENT decision (refused whenever the first one was committed) and the SAME one (the
same signature bytes as any signature that left the dead process).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpumarket.chain.keys import test_oracle
from gpumarket.oracle.store import ConflictingDecision, DecisionStore
from gpumarket.signing import eip712
from gpumarket.testing.committee import oracle_key

from . import crash_child

CHILD = Path(__file__).with_name("crash_child.py")
TIMEOUT_S = 30


def run_child(*args: object) -> tuple[int, list[dict]]:
    """Run the child to its end (or its death); returns (returncode, its events)."""
    proc = subprocess.run(
        [sys.executable, str(CHILD), *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT_S
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, events


def expected_signature(kind: str, key: int, value: int) -> bytes:
    domain = eip712.Domain(chain_id=1337, verifying_contract=crash_child.CONTRACT)
    return eip712.sign(oracle_key(0), domain, crash_child.build(kind, key, value))


# (kind, key, the first decision's value, a different value)
CASES = {"job": (41, 1, 2), "hardware": (1_900_000_000, 10**12, 10**9)}


@pytest.mark.parametrize("kind", ["job", "hardware"])
@pytest.mark.parametrize("point", ["after_commit", "after_sign"])
def test_killed_after_the_commit_the_decision_stands(tmp_path, kind, point):
    db = tmp_path / "oracle.db"
    key, first, different = CASES[kind]
    code, events = run_child(db, kind, "decide", key, first, "--crash", point)
    assert code == -signal.SIGKILL and events[-1] == {"event": "dying", "point": point}
    leaked = [bytes.fromhex(e["signature"]) for e in events if e["event"] == "signed"]

    code, events = run_child(db, kind, "decide", key, different)  # restarted, asked otherwise
    assert code == 0 and events[-1] == {"event": "conflict"}
    code, events = run_child(db, kind, "decide", key, first)  # restarted, asked the same
    assert code == 0 and events[-1]["event"] == "signed"
    signature = bytes.fromhex(events[-1]["signature"])
    assert signature == expected_signature(kind, key, first)
    assert all(s == signature for s in leaked)  # after_sign: the escaped signature is the same bytes
    code, events = run_child(db, kind, "decide", key, different)
    assert events[-1] == {"event": "conflict"}


@pytest.mark.parametrize("kind", ["job", "hardware"])
def test_killed_before_the_commit_nothing_was_decided_or_signed(tmp_path, kind):
    db = tmp_path / "oracle.db"
    key, first, different = CASES[kind]
    code, events = run_child(db, kind, "decide", key, first, "--crash", "before_commit")
    assert code == -signal.SIGKILL and not any(e["event"] == "signed" for e in events)
    domain = eip712.Domain(chain_id=1337, verifying_contract=crash_child.CONTRACT)
    with DecisionStore.open(db, domain, test_oracle(0).address) as store:
        assert store.counts().job_decisions == store.counts().hardware_decisions == 0
    # Nothing left the dead process, so the restarted oracle is free to decide; that decision is final.
    code, events = run_child(db, kind, "decide", key, different)
    assert code == 0 and bytes.fromhex(events[-1]["signature"]) == expected_signature(kind, key, different)
    code, events = run_child(db, kind, "decide", key, first)
    assert events[-1] == {"event": "conflict"}


@pytest.mark.parametrize("kind", ["job", "hardware"])
def test_killed_at_random_times_every_escaped_signature_is_the_only_one(tmp_path, kind):
    db = tmp_path / "oracle.db"
    domain = eip712.Domain(chain_id=1337, verifying_contract=crash_child.CONTRACT)
    rng = random.Random(f"crash-{kind}")
    escaped: dict[int, tuple[int, bytes]] = {}
    first = 1
    for _round in range(3):
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(db), kind, "loop", str(first), "400"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline())["event"] == "ready"
            seen = proc.stdout.readline()  # the first signature is out: from here on, kill anywhere
            time.sleep(rng.uniform(0.0, 0.2))
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate(timeout=TIMEOUT_S)
            out = seen + out
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=TIMEOUT_S)
        assert proc.returncode == -signal.SIGKILL, "the child finished before the kill: raise its count"
        for line in out.splitlines():
            event = json.loads(line)
            if event["event"] == "signed":
                escaped[event["key"]] = (event["value"], bytes.fromhex(event["signature"]))
        first += 400

    assert escaped, "no signature left the child before it was killed"
    key = test_oracle(0)
    with DecisionStore.open(db, domain, key.address) as store:
        decided = 0
        for index in range(1, first):
            value = 1 + index % 2 if kind == "job" else 10**9 + index
            report = crash_child.build(kind, index, value)
            decision = store.decision_for(report)
            if decision is None:
                assert index not in escaped  # a signature never leaves without a committed decision
                continue
            decided += 1
            assert decision.report == report
            other_value = 3 - value if kind == "job" else value + 1
            with pytest.raises(ConflictingDecision):
                store.decide(crash_child.build(kind, index, other_value))
            # Restart path: the same decision signs to the same bytes that escaped.
            assert key.sign_report(domain, store.decide(report).report) == expected_signature(kind, index, value)
            if index in escaped:
                assert escaped[index] == (value, expected_signature(kind, index, value))
        assert decided >= len(escaped)
