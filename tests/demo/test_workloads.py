"""The demo's workloads: each check accepts a right answer and names what is wrong with a wrong
one, from a real result bundle (collect_result over files, as the agent builds it)."""

from __future__ import annotations

import json

import pytest

from gpumarket.agentapi.result import collect_result
from gpumarket.demo.workloads import OUTPUT, WORKLOADS, workload


def bundle(tmp_path, result: object, exit_code: int = 0):
    work = tmp_path / "work"
    work.mkdir(parents=True)
    if result is not None:
        (work / OUTPUT).write_text(json.dumps(result))
    for name in ("stdout", "stderr"):
        (tmp_path / name).write_text("")
    return collect_result(
        job_id=1,
        exit_code=exit_code,
        timed_out=False,
        killed_for_output=False,
        stdout=tmp_path / "stdout",
        stderr=tmp_path / "stderr",
        work_dir=work,
        outputs=[OUTPUT],
        max_bytes=1 << 20,
    )


def collatz_length(start: int) -> int:
    steps = 1
    while start != 1:
        start = start // 2 if start % 2 == 0 else 3 * start + 1
        steps += 1
    return steps


def test_the_story_cycles_through_the_workloads_and_each_spec_runs_python():
    assert [workload(i) for i in range(len(WORKLOADS) + 1)] == [*WORKLOADS, WORKLOADS[0]]
    for item in WORKLOADS:
        spec = item.spec()
        assert spec.command[1] == "-c" and json.loads(spec.command[3]) == item.params and spec.outputs == [OUTPUT]


def test_factor_check(tmp_path):
    factor = next(w for w in WORKLOADS if w.name == "factor")
    n = factor.params["n"]
    assert factor.check(bundle(tmp_path / "a", {"n": n, "factors": [59_999_999, 79_999_987]})) is None
    assert "!=" in factor.check(bundle(tmp_path / "b", {"n": n, "factors": [3, n // 3]}))
    assert "two factors" in factor.check(bundle(tmp_path / "c", {"n": n, "factors": [1, n]}))


def test_collatz_check(tmp_path):
    collatz = WORKLOADS[0]
    limit = collatz.params["limit"]
    right = {"limit": limit, "start": 97, "length": collatz_length(97)}
    assert collatz.check(bundle(tmp_path / "a", right)) is None
    assert "terms" in collatz.check(bundle(tmp_path / "b", {**right, "length": right["length"] + 1}))
    assert "not for a start below" in collatz.check(bundle(tmp_path / "c", {**right, "start": limit}))


def test_pi_check(tmp_path):
    pi = next(w for w in WORKLOADS if w.name == "pi")
    digits = pi.params["digits"]
    wrong = "3.14159" + "0" * (digits - 5)
    assert pi.check(bundle(tmp_path / "a", {"digits": digits, "pi": wrong})) == "the digits of pi are wrong"
    assert "decimals" in pi.check(bundle(tmp_path / "b", {"digits": digits, "pi": "3.14"}))


@pytest.mark.parametrize("exit_code", [1, None])
def test_a_job_that_did_not_exit_0_is_reported(tmp_path, exit_code):
    factor = next(w for w in WORKLOADS if w.name == "factor")
    assert factor.check(bundle(tmp_path, {}, exit_code=exit_code)) == f"the job exited with {exit_code}"


def test_a_missing_output_is_reported(tmp_path):
    assert WORKLOADS[0].check(bundle(tmp_path, None)) == f"the result has no {OUTPUT}"
