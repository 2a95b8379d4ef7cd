"""`gpumarket bench oracle`: the JSON's shape, its figures positive and finite and consistent with
one another, and the file it writes. Tiny sizes: the timings' values are not checked, only that
they were measured (a loaded CI machine makes any bound on them flaky)."""

from __future__ import annotations

import json
import math
import statistics

from click.testing import CliRunner

from gpumarket.cli import main
from gpumarket.oracle.bench import STAGES

STAGE_FIGURES = {"mean_seconds", "median_seconds", "share"}


def positive(value: object) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def invoke(*args: str):
    return CliRunner(mix_stderr=False).invoke(main, ["bench", "oracle", *args])


def check_reports(record: dict, reports: int, warmup: int) -> None:
    part = record["reports"]
    assert (part["reports"], part["warmup"]) == (reports, warmup)
    assert positive(part["wall_seconds"]) and positive(part["cpu_seconds"])
    assert record["reports_per_second"] == part["reports_per_second"] == reports / part["wall_seconds"]
    assert set(part["stages"]) == set(STAGES)
    for figures in part["stages"].values():
        assert set(figures) == STAGE_FIGURES and all(positive(figures[name]) for name in STAGE_FIGURES)
    # The stages split each report's time: their shares add up to the whole.
    assert math.isclose(sum(f["share"] for f in part["stages"].values()), 1.0, rel_tol=1e-6)
    assert math.isclose(
        sum(f["mean_seconds"] for f in part["stages"].values()) * reports, part["wall_seconds"], rel_tol=1e-6
    )


def test_bench_oracle_json_with_a_settled_job(tmp_path):
    out = tmp_path / "results" / "oracle.json"
    result = invoke(
        "--json",
        "--reports",
        "6",
        "--warmup",
        "1",
        "--settle-jobs",
        "1",
        "--job-seconds",
        "0.3",
        "--job-poll-interval",
        "0.3",
        "--tick-interval",
        "0.1",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output + result.stderr
    record = json.loads(result.stdout)  # exactly one JSON document on stdout
    assert json.loads(out.read_text()) == record  # and the same in the file
    assert {"reports_per_second", "settle_latency_seconds", "reports", "settlement"} <= set(record)
    check_reports(record, 6, 1)

    settlement = record["settlement"]
    assert settlement["outcomes"] == ["COMPLETED"]  # an honest provider's job settles as completed
    assert len(settlement["latencies_seconds"]) == 1 and all(map(positive, settlement["latencies_seconds"]))
    assert (
        record["settle_latency_seconds"]
        == settlement["settle_latency_seconds"]
        == statistics.median(settlement["latencies_seconds"])
    )
    assert positive(record["settle_latency_seconds"])
    assert "finished_at" in settlement["basis"] and "wall clock" in settlement["basis"]
    assert settlement["timings"] == {
        "job_poll_interval_s": 0.3,
        "tick_interval_s": 0.1,
        "follower_poll_interval_s": 0.5,
    }


def test_bench_oracle_human_output_without_the_chain(tmp_path):
    out = tmp_path / "oracle.json"
    result = invoke("--reports", "3", "--warmup", "0", "--settle-jobs", "0", "--out", str(out))
    assert result.exit_code == 0, result.output + result.stderr
    assert "reports_per_second" in result.stdout and f"written to {out}" in result.stdout
    assert all(stage in result.stdout for stage in STAGES) and "settle_latency" not in result.stdout
    record = json.loads(out.read_text())
    check_reports(record, 3, 0)
    assert record["settle_latency_seconds"] is None and record["settlement"] is None


def test_bench_oracle_refuses_sizes_out_of_range(tmp_path):
    for args in (["--reports", "0"], ["--warmup", "-1"], ["--job-seconds", "0"], ["--settle-jobs", "-1"]):
        result = invoke(*args, "--out", str(tmp_path / "never.json"))
        assert result.exit_code == 2, (args, result.output)
    assert not (tmp_path / "never.json").exists()
