"""The market's role actions, one implementation each, with their pre-checks.

Used by the `gpumarket` command line (provider, market and client groups) and by the ape
scripts (scripts/*.py), so a check or a message is written once:

    from gpumarket.actions import ActionError, NeedsApproval, approve, jobs, provider, governance
    market = deployment.market_at(w3, signer=key)     # or actions.open_market(...)
    provider.stake(market, amount, approve=True)

Modules: errors (ActionError, NeedsApproval, guard), common (ActionResult, token checks,
approve), provider, jobs, governance, render (terminal tables), context (a market from a
deployment with the wrong-network check). Every action either returns an ActionResult or
raises an ActionError whose hint says what to do; the contract's reverts and a node on
another chain arrive as ActionErrors too, never as a raw dump.
"""

from gpumarket.actions import governance, jobs, provider, render
from gpumarket.actions.common import ActionResult, TxRecord, approve
from gpumarket.actions.context import open_market
from gpumarket.actions.errors import ActionError, NeedsApproval, guard

__all__ = [
    "ActionError",
    "ActionResult",
    "NeedsApproval",
    "TxRecord",
    "approve",
    "governance",
    "guard",
    "jobs",
    "open_market",
    "provider",
    "render",
]
