"""Why a job ended as it did, quoted from the services' own logs in the soak's working directory.

    reasons_for_job(workdir, job_id, oracles=["oracle-0", ...], agents=["provider-1", ...])
    reasons_for_hardware(workdir, address, oracles=[...])

The oracles log each decision with its reason (gpumarket.oracle.jobs: "job 7 decided FAILED,
0 gpu_seconds: the agent reports the job lost") and each failing challenge; the agents log
what they lost and why ("job 7: lost (...)"), and any warning about the job. Each quoted line
is prefixed with its service's name, and preceded by the soak's last restart marker in that
log before it (gpumarket.soak.faults), so a reader sees which kill came before the decision.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from gpumarket.soak.faults import MARKER

__all__ = ["reasons_for_hardware", "reasons_for_job"]

MAX_LINES = 12  # per job: the decisions come first, then the agents' lines


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def _quote(workdir: Path, service: str, pattern: re.Pattern[str]) -> list[str]:
    """The service's lines matching `pattern`, each after the soak's last restart marker before it."""
    quoted: list[str] = []
    marker: str | None = None
    for line in _lines(workdir / f"{service}.log"):
        if MARKER in line:
            marker = line
        elif pattern.search(line):
            if marker is not None:  # the restart before this line: the reader sees what came first
                quoted.append(f"{service}: {marker.strip()}")
                marker = None
            quoted.append(f"{service}: {line.strip()}")
    return quoted


def reasons_for_job(workdir: Path, job_id: int, *, oracles: Sequence[str], agents: Sequence[str]) -> list[str]:
    """The oracles' decisions and failed challenges for the job, then its agents' losses and warnings."""
    job = rf"\bjob {job_id}\b"
    decisions = re.compile(
        rf"{job} decided |{job}: \w+ challenge fail|{job}: keeping the earlier decision|"
        rf"{job}: settlement refused"
    )
    agent_lines = re.compile(rf"{job}: lost|(WARNING|ERROR) .*{job}")
    quoted = [line for oracle in oracles for line in _quote(workdir, oracle, decisions)]
    quoted += [line for agent in agents for line in _quote(workdir, agent, agent_lines)]
    return quoted[:MAX_LINES]


def reasons_for_hardware(workdir: Path, address: str, *, oracles: Sequence[str]) -> list[str]:
    """The oracles' hardware decisions about the provider at `address`."""
    pattern = re.compile(rf"gpumarket\.oracle\.hardware: hardware {re.escape(address)}: ", re.IGNORECASE)
    return [line for oracle in oracles for line in _quote(workdir, oracle, pattern)][:MAX_LINES]
