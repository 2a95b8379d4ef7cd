"""The one error type the provider agent raises towards a caller.

Every refusal carries the HTTP status the API answers with, a short stable ``code`` a program
can switch on, and a ``detail`` sentence for a person. The API layer turns it into
``{"error": code, "detail": detail}``; nothing else about the request (and never a key) is put
in it.
"""

from __future__ import annotations

__all__ = ["AgentError"]


class AgentError(Exception):
    """A refused request: ``status`` (HTTP), ``code`` (stable, snake_case), ``detail`` (why)."""

    def __init__(self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})

    def to_json(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}
