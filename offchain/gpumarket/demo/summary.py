"""The demo's closing summary: the jobs, the accounts' holdings before and after, the books.

Text for people (`render`), and `DemoResult.to_json` for programs (`gpumarket demo --json`).
Amounts are shown in tokens (18 decimals; "~" marks a rounded figure); the JSON has exact
base units as decimal strings.
"""

from __future__ import annotations

from gpumarket.chain.walkthrough import tokens
from gpumarket.demo.judge import DemoResult

__all__ = ["render"]


def _signed(amount: int) -> str:
    return ("+" if amount > 0 else "") + tokens(amount) if amount else "0"


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = (
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]


def render(result: DemoResult, *, description: str = "") -> str:
    lines = [f"gpumarket demo: market {result.market} on {result.chain}" + (f", {description}" if description else "")]
    lines += ["", "Jobs (paid and refunded in mPAY, slashed in mSTK)"]
    rows = [
        [
            str(job.job_id),
            job.workload,
            job.provider + ("" if job.directed else " (open job)"),
            job.state,
            str(job.gpu_seconds),
            tokens(job.paid),
            tokens(job.fee),
            tokens(job.refunded),
            tokens(job.slashed),
            job.result or "-",
        ]
        for job in result.jobs
    ]
    lines += _table(
        ["job", "workload", "provider", "outcome", "gpu-s", "paid", "fee", "refunded", "slashed", "result"],
        rows,
        right={0, 4, 5, 6, 7, 8},
    )
    lines += ["", "Holdings = wallet + claimable + stake in the market (mSTK | mPAY)"]
    rows = [
        [
            account.name,
            tokens(account.before["stake"]),
            tokens(account.after["stake"]),
            _signed(account.change["stake"]),
            tokens(account.before["payment"]),
            tokens(account.after["payment"]),
            _signed(account.change["payment"]),
            "yes" if account.change == account.expected_change else "NO",
        ]
        for account in result.accounts
    ]
    lines += _table(
        ["account", "mSTK before", "mSTK after", "change", "mPAY before", "mPAY after", "change", "as the rules say"],
        rows,
        right={1, 2, 3, 4, 5, 6},
    )
    lines.append("")
    if result.conservation_ok:
        lines.append(
            "conservation: OK (each token's market balance = stakes + claimable + live escrow; "
            "supply = wallets + market)"
        )
    else:
        lines += ["conservation: BROKEN", *(f"  {problem}" for problem in result.conservation_problems)]
    lines.append(f"slashed providers: {', '.join(result.slashed_providers) or 'none'}")
    if result.ok:
        lines.append("every outcome, payment, refund and slash is as the protocol says")
    else:
        lines += [f"DEVIATIONS ({len(result.deviations)}):", *(f"  - {d}" for d in result.deviations)]
    return "\n".join(lines)
