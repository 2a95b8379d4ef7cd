"""The one JSON error envelope of the off-chain services, and the transport codes they share.

Every refusal by the oracle's API or the provider agent's API is ::

    {"error": "<code>", "detail": "<a sentence for a person>", "field": "<name>"?}

with a precise HTTP status; ``field`` names the offending field where there is one. A program
switches on ``error``; ``detail`` is for people and may change.

Application codes belong to each service (``unknown_job``, ``not_decided``, ``busy``, ...: see
each API's module docstring). The codes below are the transport's, the same in both services for
the same fault, whether the server stack (:mod:`gpumarket.web.server`) or a route refuses:

====  ========================  ===============================================================
400   bad_request               the request line or headers are not HTTP/1.1 (h11 refused them;
                                an HTTP/1.1 request also needs a Host header)
400   invalid_content_length    Content-Length is not one non-negative decimal number
400   truncated_body            the client ended the connection before its Content-Length bytes
404   not_found                 no such route
405   method_not_allowed        the path exists, the method does not (``Allow`` names those that do)
408   request_timeout           the request (head and body) did not arrive within the server's
                                request timeout; the connection is closed
411   length_required           a body is needed with a Content-Length (a chunked body is refused)
413   body_too_large            Content-Length above the route's limit, refused before reading
415   unsupported_media_type    a body that is not ``application/json`` where JSON is expected
431   headers_too_large         a request head (request line and headers) over the server's byte
                                limit, or more header fields than its limit
500   internal                  a bug; logged by the service, never carrying request or key data
501   not_implemented           a Transfer-Encoding other than chunked
503   busy                      the connection came while the server had its limit of others open
                                (``Retry-After: 1``; the connection is closed)
====  ========================  ===============================================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping

__all__ = [
    "BAD_REQUEST",
    "BODY_TOO_LARGE",
    "BUSY",
    "HEADERS_TOO_LARGE",
    "INTERNAL",
    "INVALID_CONTENT_LENGTH",
    "LENGTH_REQUIRED",
    "METHOD_NOT_ALLOWED",
    "NOT_FOUND",
    "NOT_IMPLEMENTED",
    "REQUEST_TIMEOUT",
    "TRUNCATED_BODY",
    "UNSUPPORTED_MEDIA_TYPE",
    "HttpError",
    "envelope",
    "envelope_bytes",
]

BAD_REQUEST = "bad_request"
INVALID_CONTENT_LENGTH = "invalid_content_length"
TRUNCATED_BODY = "truncated_body"
NOT_FOUND = "not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"
REQUEST_TIMEOUT = "request_timeout"
LENGTH_REQUIRED = "length_required"
BODY_TOO_LARGE = "body_too_large"
UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
HEADERS_TOO_LARGE = "headers_too_large"
INTERNAL = "internal"
NOT_IMPLEMENTED = "not_implemented"
BUSY = "busy"


def envelope(code: str, detail: str, field: str | None = None) -> dict[str, str]:
    """The JSON object of a refusal."""
    body = {"error": code, "detail": detail}
    if field is not None:
        body["field"] = field
    return body


def envelope_bytes(code: str, detail: str, field: str | None = None) -> bytes:
    return json.dumps(envelope(code, detail, field), separators=(",", ":")).encode()


class HttpError(Exception):
    """A refusal: the HTTP ``status``, a stable snake_case ``code``, a ``detail`` sentence, the
    ``field`` at fault if any, extra response ``headers``, and ``close`` when the connection must
    not be reused after the answer."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.headers = dict(headers or {})
        self.close = close

    def to_json(self) -> dict[str, str]:
        return envelope(self.code, self.detail, self.field)
