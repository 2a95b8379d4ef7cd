"""The errors of the role actions: what went wrong and what to do about it.

Every refusal of an action, whether found by a pre-check before anything is sent or by the
contract itself, is an ActionError with a `code` (stable, for scripts and --json), a
`message` (what is wrong, with the numbers) and a `hint` (the next step). `str(error)` is
the message followed by the hint, so a command line prints it as it is:

    try:
        actions.provider.stake(market, 10**21)
    except NeedsApproval as missing:              # the caller may approve and retry
        actions.approve(market, missing.token, missing.amount)
    except ActionError as error:
        sys.exit(f"error: {error}")

`guard()` turns the chain layer's exceptions into ActionErrors: a ContractRevert becomes
code "reverted" naming the contract's reason (with a hint for the reasons a user can act
on), a ChainMismatch becomes "wrong_network"; the client library's errors (a provider that
does not answer, a result that does not verify) keep their code and hint. A raw revert dump
never reaches the user.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gpumarket.agentapi.errors import ClientError
from gpumarket.chain.errors import ChainMismatch, ContractRevert, NotLocalChain, TransactionTimeout
from gpumarket.chain.keys import KeyLoadError

__all__ = ["ActionError", "NeedsApproval", "from_client_error", "from_revert", "guard"]


class ActionError(RuntimeError):
    """An action refused: `code` (e.g. "insufficient_balance"), `message`, `hint`, and
    `details` a script needs to carry on (e.g. the id of a job that exists already)."""

    def __init__(
        self, message: str, hint: str = "", *, code: str = "refused", details: dict[str, Any] | None = None
    ) -> None:
        self.message = message
        self.hint = hint
        self.code = code
        self.details = dict(details or {})
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message

    def to_json(self) -> dict[str, Any]:
        return {**self.details, "error": self.code, "message": self.message, "hint": self.hint}


class NeedsApproval(ActionError):
    """The market may not pull `amount` of `token` from the sender yet (allowance too low).

    `token` is the token's address, `spender` the market's; approve with
    `gpumarket.actions.approve(market, token, amount)` and retry.
    """

    def __init__(self, *, token: str, symbol: str, spender: str, amount: int, allowance: int) -> None:
        self.token = token
        self.symbol = symbol
        self.spender = spender
        self.amount = amount
        self.allowance = allowance
        super().__init__(
            f"the market may spend {allowance} {symbol} of yours, this needs {amount}",
            f"approve {amount} {symbol} ({token}) for the market {spender} first (on the command line: add --approve)",
            code="needs_approval",
        )

    def to_json(self) -> dict[str, Any]:
        return {
            **super().to_json(),
            "token": self.token,
            "spender": self.spender,
            "amount": str(self.amount),
            "allowance": str(self.allowance),
        }


# Hints for the contract's revert reasons a user can act on; a pre-check normally catches
# each first, these cover a state that changed between the check and the transaction.
_REVERT_HINTS = {
    "registry: already registered": "use `update` to change the claim, price or endpoint",
    "registry: not registered": "register first",
    "registry: hardware not verified": "wait for the committee's hardware report (the agent must be running)",
    "registry: provider jailed": "ask governance to unjail the provider",
    "governance: unknown gpu class": "use a class the market lists (`gpumarket market params` shows them)",
    "staking: insufficient free stake": "check the free stake with `gpumarket provider status`",
    "staking: nothing unbonding": "request an unstake first",
    "staking: unbonding not released": "wait until the release time (`gpumarket provider status`)",
    "staking: free stake too low": "stake more",
    "escrow: job not open": "only an open job can be cancelled; check it with `status`",
    "escrow: caller is not the client": "send it from the account that created the job",
    "ledger: nothing to claim": "nothing is credited to this account now",
    "ownable: caller is not the owner": "send it from the market's owner account",
    "governance: value out of bounds": "`gpumarket market params` shows each parameter's bounds",
    "pausable: contract is paused": "the market is paused by governance; retry once it is unpaused",
    "escrow: deadline not passed": "an open job can be expired only after its accept deadline (`gpumarket client"
    " status JOB` shows it, by the chain's clock)",
    "escrow: settle grace not passed": "a running job can be expired only after its paid time and the settle grace"
    " (`gpumarket client status JOB` shows when)",
    "escrow: job not open or running": "it is over already: `gpumarket client claim` collects any refund",
    "escrow: accept deadline passed": "nobody accepted it in time: expire it (`gpumarket client cancel JOB --expire`)",
}


def from_revert(error: ContractRevert) -> ActionError:
    """The ActionError for a contract's refusal, naming its reason."""
    reason = error.reason or "<no reason given>"
    where = f"{error.function}: " if error.function else ""
    mined = f" (mined in {error.tx_hash})" if error.tx_hash else ""
    hint = next((hint for known, hint in _REVERT_HINTS.items() if reason.startswith(known)), "")
    return ActionError(f"{where}the contract refused: {reason}{mined}", hint, code="reverted")


def from_client_error(error: ClientError) -> ActionError:
    """The ActionError for the client library's error: its message, hint and code."""
    return ActionError(error.args[0] if error.args else str(error), error.hint, code=error.code)


@contextmanager
def guard() -> Iterator[None]:
    """Turn the chain layer's errors raised inside into ActionErrors (see the module docstring)."""
    try:
        yield
    except ContractRevert as error:
        raise from_revert(error) from None
    except ChainMismatch as error:
        raise ActionError(
            f"wrong network: {error}",
            "point --rpc at the deployment's chain, or use that chain's deployment file",
            code="wrong_network",
        ) from None
    except NotLocalChain as error:
        raise ActionError(
            str(error), "use a keystore key (keystore:<alias>) on this network", code="not_local_chain"
        ) from None
    except KeyLoadError as error:
        raise ActionError(
            str(error), "check --key (keystore:<alias> or, on a local chain, test-account:<i>)", code="bad_key"
        ) from None
    except TransactionTimeout as error:
        raise ActionError(
            str(error), "it may still be mined: check the state before sending it again", code="tx_timeout"
        ) from None
    except ClientError as error:
        raise from_client_error(error) from None
