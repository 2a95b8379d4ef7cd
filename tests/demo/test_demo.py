"""`gpumarket demo`: the whole story in this process on the embedded chain, judged; and a story
whose expectation cannot hold (the "lazy" provider does all its work) exits non-zero."""

from __future__ import annotations

import json

from click.testing import CliRunner

from gpumarket.cli import main
from gpumarket.demo.cli import tell
from gpumarket.demo.inprocess import InProcessLauncher
from gpumarket.demo.story import StoryParams

from .expect import check_story_json


def test_demo_json_outcomes_and_money_follow_the_rules(tmp_path, deploy_params):
    result = CliRunner(mix_stderr=False).invoke(main, ["demo", "--json", "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)  # progress went to stderr: stdout is the JSON alone
    assert "every provider is verified" in result.stderr and "settled FAILED" in result.stderr
    check_story_json(summary, StoryParams(), deploy_params)
    assert (tmp_path / "demo.log").is_file()


def test_a_provider_that_does_not_cheat_after_all_is_a_deviation(tmp_path, capsys):
    # Told the lazy provider is caught, but its prover skips nothing: its job completes. (The
    # lazy provider alone, one job: the smallest story that shows it.)
    lazy = next(role for role in StoryParams().providers if role.lazy)
    story = StoryParams(providers=(lazy,), lazy_skip_fraction=0.0, open_job=False)
    code = tell(InProcessLauncher, as_json=True, workdir=tmp_path, keep=True, params=story)
    captured = capsys.readouterr()
    assert code == 1
    summary = json.loads(captured.out)
    assert summary["ok"] is False and summary["slashed_providers"] == []
    lazy = [job for job in summary["jobs"] if job["provider"] == "lazy"]
    assert [job["outcome"] for job in lazy] == ["COMPLETED"]
    assert any("lazy" in d and "ended COMPLETED, expected FAILED" in d for d in summary["deviations"])
    # The money followed the chain's rules for what did happen: the books still balance.
    assert summary["conservation_ok"] is True
    assert "the demo deviated from the protocol" in captured.err


def test_a_step_that_does_not_complete_in_time_fails_with_its_reason(tmp_path, capsys):
    honest = StoryParams().providers[0]
    story = StoryParams(providers=(honest,), verify_timeout_s=0.1)  # no committee verifies that fast
    code = tell(InProcessLauncher, as_json=True, workdir=tmp_path, keep=True, params=story)
    captured = capsys.readouterr()
    assert code == 1
    assert json.loads(captured.out) == {
        "ok": False,
        "error": "honest-1: the committee did not verify it within 0.1 s",
        "workdir": str(tmp_path),
    }
    assert "demo failed: honest-1: the committee did not verify it within 0.1 s" in captured.err
