"""The one error type the provider agent raises towards a caller.

Every refusal carries the HTTP status the API answers with, a short stable ``code`` a program
can switch on, and a ``detail`` sentence for a person. It is a :class:`gpumarket.web.errors.HttpError`,
so the API answers it with the services' one envelope ``{"error": code, "detail": detail}``;
nothing else about the request (and never a key) is put in it.
"""

from __future__ import annotations

from gpumarket.web.errors import HttpError

__all__ = ["AgentError"]


class AgentError(HttpError):
    """A refused request: ``status`` (HTTP), ``code`` (stable, snake_case), ``detail`` (why)."""

    def __init__(self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, code, detail, headers=headers)
