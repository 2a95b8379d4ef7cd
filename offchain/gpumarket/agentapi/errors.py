"""The errors of the provider agent's API, on both sides of the wire.

The agent's side: ``AgentError``, the one error type the agent raises towards a caller. Every
refusal carries the HTTP status the API answers with, a short stable ``code`` a program can switch
on, and a ``detail`` sentence for a person. It is a :class:`gpumarket.web.errors.HttpError`, so the
API answers it with the services' one envelope ``{"error": code, "detail": detail}``; nothing else
about the request (and never a key) is put in it.

The caller's side (a client, the oracle's job loop): ``ProviderUnreachable`` (no answer) and
``ProviderRefused`` (an error answer), both ``ClientError``: the base of every error a caller of the
market meets, each saying what to do next in ``hint`` (the client's own are in
gpumarket.client.errors). None of them ever carries a key: they name addresses, job ids, endpoints
and hashes only. ``code`` is a stable name for scripts (the command line's --json error documents
carry it).
"""

from __future__ import annotations

from gpumarket.web.errors import HttpError

__all__ = ["AgentError", "ClientError", "ProviderRefused", "ProviderUnreachable"]


class AgentError(HttpError):
    """A refused request: ``status`` (HTTP), ``code`` (stable, snake_case), ``detail`` (why)."""

    def __init__(self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, code, detail, headers=headers)


class ClientError(RuntimeError):
    """Base class; `hint` is the next step for the user (also shown by the CLI)."""

    hint: str = ""
    code: str = "client_error"

    def __init__(self, message: str, hint: str = "") -> None:
        self.hint = hint or self.hint
        super().__init__(message)

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} ({self.hint})" if self.hint else base


class ProviderUnreachable(ClientError):
    """The provider's endpoint did not answer (connection refused, timeout, bad HTTP, an answer over the size cap)."""

    code = "provider_unreachable"
    hint = "retry later; if it stays down after acceptance, the committee fails the job and you are refunded"

    def __init__(self, endpoint: str, reason: str) -> None:
        self.endpoint = endpoint
        self.reason = reason
        super().__init__(f"provider at {endpoint} unreachable: {reason}")


class ProviderRefused(ClientError):
    """The provider answered with an error: `code`, `detail` (and `field`, when it names one) from
    its error document {"error", "detail", "field"}, or `http_error` when it sent none."""

    def __init__(self, endpoint: str, status: int, code: str, detail: str, field: str | None = None) -> None:
        self.endpoint = endpoint
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        hints = {
            "spec_hash_mismatch": "send the exact spec whose hash the job was created with",
            "wrong_signer": "use the key of the account that created the job",
            "job_not_running": "wait until the job is accepted (`gpumarket client status`)",
            "not_finished": "wait until the job is finished (`gpumarket client status`)",
            "expired": "check this machine's clock",
        }
        super().__init__(f"provider at {endpoint} refused ({status} {code}): {detail}", hints.get(code, ""))
