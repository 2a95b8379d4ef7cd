"""A child oracle process for the crash tests: decides and signs, and can kill itself with SIGKILL
at a chosen point. Prints one JSON line per event on stdout (flushed), so the parent sees
exactly which signatures left the process before it died.

    python crash_child.py DB KIND decide JOB OUTCOME [--crash POINT]
    python crash_child.py DB KIND loop FIRST COUNT

KIND is job or hardware (for hardware, JOB is valid_until and OUTCOME the measured throughput).
Crash points (each a real SIGKILL of this process, no cleanup runs):
  before_commit  the decision's INSERT ran, the COMMIT is about to execute (sqlite trace hook)
  after_commit   the decision is committed; killed inside the key's sign_report() (no signature yet)
  after_sign     the signature exists and is printed, killed before it is stored
"""

from __future__ import annotations

import json
import os
import signal
import sys

from gpumarket.chain.keys import ServiceKey, test_oracle
from gpumarket.oracle.signer import OracleSigner
from gpumarket.oracle.store import ConflictingDecision, DecisionStore
from gpumarket.signing.eip712 import Domain, Outcome
from gpumarket.testing.committee import hardware_report, job_report

CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
MEMBERS = [test_oracle(i).address for i in range(3)]


def emit(**event: object) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def build(kind: str, key: int, value: int):
    if kind == "job":
        return job_report(key, PROVIDER, outcome=Outcome(value), gpu_seconds=100 + value)
    return hardware_report(PROVIDER, gpu_class=1, gpu_count=1, measured_throughput=value, valid_until=key)


def install_crash(point: str, store: DecisionStore) -> None:
    if point == "before_commit":
        inserted = False

        def trace(statement: str) -> None:
            nonlocal inserted
            if statement.startswith("INSERT INTO") and "_decisions" in statement:
                inserted = True
            elif statement == "COMMIT" and inserted:
                emit(event="dying", point=point)
                die()

        store._db.set_trace_callback(trace)  # test-only: the store keeps its connection private
    elif point == "after_commit":

        def sign_report(self, domain, report):  # replaces ServiceKey.sign_report in this process only
            emit(event="dying", point=point)
            die()

        ServiceKey.sign_report = sign_report  # type: ignore[method-assign]
    elif point == "after_sign":

        def attach(self, decision, signature):
            emit(event="signed", signature=signature.hex())
            emit(event="dying", point=point)
            die()

        DecisionStore.attach_signature = attach  # type: ignore[method-assign]
    elif point != "none":
        raise SystemExit(f"unknown crash point {point}")


def main(argv: list[str]) -> None:
    db, kind, mode = argv[0], argv[1], argv[2]
    key = test_oracle(0)
    store = DecisionStore.open(db, Domain(chain_id=1337, verifying_contract=CONTRACT), key.address)
    store.set_committee(1, MEMBERS, 2)
    signer = OracleSigner(store, key)
    if mode == "decide":
        report = build(kind, int(argv[3]), int(argv[4]))
        point = argv[6] if len(argv) > 6 and argv[5] == "--crash" else "none"
        install_crash(point, store)
        emit(event="ready")
        try:
            signed = signer.decide_and_sign(report)
        except ConflictingDecision:
            emit(event="conflict")
        else:
            emit(event="signed", signature=signed.signature.hex())
    elif mode == "loop":
        first, count = int(argv[3]), int(argv[4])
        emit(event="ready")
        for index in range(first, first + count):
            value = 1 + index % 2 if kind == "job" else 10**9 + index
            signed = signer.decide_and_sign(build(kind, index, value))
            emit(event="signed", key=index, value=value, signature=signed.signature.hex())
    store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
