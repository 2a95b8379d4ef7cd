"""The progress notices of long waits (gpumarket.actions.progress), used by the gpumarket
commands and the ape scripts."""

from __future__ import annotations

import time

from gpumarket.actions.progress import waiting


def test_a_quick_action_prints_nothing_and_a_long_one_says_how_long(capsys) -> None:
    with waiting("stake", first_notice_s=0.2, repeat_s=0.2):
        pass
    assert capsys.readouterr().err == ""

    with waiting("stake", first_notice_s=0.2, repeat_s=0.2):
        time.sleep(1.0)  # notices at 0.2, 0.4, ... s: at least two, whatever the load
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 2 and all(line.startswith("stake: waiting for the chain (") for line in lines)
    time.sleep(0.5)
    assert capsys.readouterr().err == ""  # the notices stop with the wait
