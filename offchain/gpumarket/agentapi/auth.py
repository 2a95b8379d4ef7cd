"""Signed client requests: the client proves it is the job's on-chain client, once per request.

The client signs (EIP-191 ``personal_sign``, ``eth_account.messages.encode_defunct``) a short
text that names everything the request may do, one field a line in a fixed order::

    gpumarket provider request
    action: put-spec
    chain_id: 31337
    market: 0x5FbDB2315678afecb367f032d93F642f64180aa3
    job_id: 7
    spec_hash: 0x9c0f...            ("none" for get-result)
    issued_at: 1767225600
    nonce: 0x3b1e...                (16 random bytes)

So a signature made for one action, job, chain or market deployment, or one spec, authorises
nothing else. It travels in the ``Authorization`` header as ``GpuMarket <base64url(JSON)>``
(``SignedRequest.to_header`` / ``from_header``), so a PUT's body is exactly the spec document.

The agent (``RequestVerifier``) checks, in this order: the scope (action, job, chain, market,
spec hash) -> 403; the time (``issued_at`` no older than ``max_age_s``, no more than
``max_skew_s`` ahead) -> 401; the signature -> 401; the recovered address equals the job's
client -> 403; and last, once every other check of the request has passed, that the nonce was
never used by this signer (``NonceStore``, SQLite in the agent) -> 409. A nonce is kept for as
long as its request could still be accepted, so no request is ever accepted twice. Replay is
keyed by (signer, nonce), not by the signature, so signature malleability gains nothing.

``sign_request`` is the client's side.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from eth_account import Account
from eth_account.messages import SignableMessage, encode_defunct
from eth_keys.exceptions import BadSignature
from eth_utils.address import is_checksum_address, to_checksum_address
from eth_utils.exceptions import ValidationError as EthValidationError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError

from gpumarket.agentapi.errors import AgentError

__all__ = [
    "ACTIONS",
    "AUTH_SCHEME",
    "MAX_HEADER_CHARS",
    "Action",
    "AuthError",
    "AuthScope",
    "NonceStore",
    "RequestVerifier",
    "SignedRequest",
    "request_text",
    "sign_request",
]

AUTH_SCHEME = "GpuMarket"
MAX_HEADER_CHARS = 2048
NONCE_BYTES = 16
ACTIONS = ("put-spec", "get-result")
Action = Literal["put-spec", "get-result"]
_TITLE = "gpumarket provider request"


class AuthError(AgentError):
    """A request whose authentication failed (401), which is not allowed (403) or replayed (409)."""


def _hex(size: int) -> Any:
    def parse(value: Any) -> bytes:
        if isinstance(value, bytes):
            raw = value
        elif isinstance(value, str) and value.startswith("0x"):
            try:
                raw = bytes.fromhex(value[2:])
            except ValueError:
                raise ValueError("is not hex") from None
        else:
            raise ValueError("must be a 0x-prefixed hex string")
        if len(raw) != size:
            raise ValueError(f"must be {size} bytes, got {len(raw)}")
        return raw

    return Annotated[bytes, BeforeValidator(parse), PlainSerializer(lambda raw: "0x" + raw.hex(), return_type=str)]


def _checksum(value: Any) -> str:
    if not isinstance(value, str) or not is_checksum_address(value):
        raise ValueError("must be a checksummed 0x address")
    return value


Address = Annotated[str, BeforeValidator(_checksum)]


class SignedRequest(BaseModel):
    """The signed fields and the 65-byte signature over ``request_text`` of them."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    action: Action
    chain_id: int = Field(ge=1, lt=2**256)
    market: Address
    job_id: int = Field(ge=0, lt=2**256)
    spec_hash: _hex(32) | None = None  # type: ignore[valid-type]
    issued_at: int = Field(ge=0, lt=2**63)
    nonce: _hex(NONCE_BYTES)  # type: ignore[valid-type]
    signature: _hex(65)  # type: ignore[valid-type]

    def text(self) -> str:
        return request_text(
            action=self.action,
            chain_id=self.chain_id,
            market=self.market,
            job_id=self.job_id,
            spec_hash=self.spec_hash,
            issued_at=self.issued_at,
            nonce=self.nonce,
        )

    def signer(self) -> str:
        """The address that signed; AuthError (401) when the signature recovers no address."""
        try:
            address: str = Account.recover_message(encode_defunct(text=self.text()), signature=self.signature)
        except (BadSignature, EthValidationError, ValueError) as error:
            raise AuthError(401, "bad_signature", f"the signature recovers no address: {error}") from None
        return address

    def to_header(self) -> str:
        """The ``Authorization`` header value."""
        compact = json.dumps(self.model_dump(mode="json"), separators=(",", ":"), sort_keys=True)
        return f"{AUTH_SCHEME} {base64.urlsafe_b64encode(compact.encode()).decode('ascii')}"

    @classmethod
    def from_header(cls, value: str | None) -> SignedRequest:
        """Parses an ``Authorization`` header; AuthError (401) says what is wrong with it."""
        if not value:
            raise AuthError(401, "missing_auth", f"this request must carry 'Authorization: {AUTH_SCHEME} <token>'")
        if len(value) > MAX_HEADER_CHARS:
            raise AuthError(401, "malformed_auth", f"the Authorization header exceeds {MAX_HEADER_CHARS} characters")
        scheme, _, token = value.partition(" ")
        if scheme != AUTH_SCHEME or not token:
            raise AuthError(401, "malformed_auth", f"the Authorization scheme must be {AUTH_SCHEME!r}")
        try:
            data = json.loads(base64.urlsafe_b64decode(token.strip().encode("ascii")).decode("utf-8"))
        except (binascii.Error, UnicodeError, ValueError, RecursionError):  # RecursionError: nested too deeply
            raise AuthError(401, "malformed_auth", "the Authorization token is not base64url-encoded JSON") from None
        if not isinstance(data, dict):
            raise AuthError(401, "malformed_auth", "the Authorization token is not a JSON object")
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            reasons = "; ".join(
                f"{'.'.join(str(p) for p in problem['loc'])}: {problem['msg'].removeprefix('Value error, ')}"
                for problem in error.errors()
            )
            raise AuthError(401, "malformed_auth", f"the signed request is malformed: {reasons}") from None


def request_text(
    *,
    action: str,
    chain_id: int,
    market: str,
    job_id: int,
    spec_hash: bytes | None,
    issued_at: int,
    nonce: bytes,
) -> str:
    """The exact text that is signed (EIP-191): one ``name: value`` line per field, fixed order."""
    lines = [
        _TITLE,
        f"action: {action}",
        f"chain_id: {chain_id}",
        f"market: {to_checksum_address(market)}",
        f"job_id: {job_id}",
        f"spec_hash: {'0x' + spec_hash.hex() if spec_hash is not None else 'none'}",
        f"issued_at: {issued_at}",
        f"nonce: 0x{nonce.hex()}",
    ]
    return "\n".join(lines)


MessageSigner = Callable[[SignableMessage], bytes]


class _HasSignMessage(Protocol):
    def sign_message(self, signable_message: SignableMessage) -> Any: ...


def sign_request(
    signer: _HasSignMessage | MessageSigner,
    *,
    action: Action,
    chain_id: int,
    market: str,
    job_id: int,
    spec_hash: bytes | None = None,
    issued_at: int | None = None,
    nonce: bytes | None = None,
) -> SignedRequest:
    """The client's side: a fresh signed request (``issued_at`` now, a random nonce).

    ``signer`` is an eth_account ``LocalAccount`` (anything whose ``sign_message`` returns an
    object with ``.signature``) or a callable from the SignableMessage to the 65-byte
    signature (for a keystore or hardware wallet). No key passes through this function."""
    if action == "put-spec" and spec_hash is None:
        raise ValueError("a put-spec request must name the spec_hash it authorises")
    if action == "get-result" and spec_hash is not None:
        raise ValueError("a get-result request names no spec_hash")
    issued_at = int(time.time()) if issued_at is None else issued_at
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    text = request_text(
        action=action,
        chain_id=chain_id,
        market=market,
        job_id=job_id,
        spec_hash=spec_hash,
        issued_at=issued_at,
        nonce=nonce,
    )
    message = encode_defunct(text=text)
    if hasattr(signer, "sign_message"):
        signature = bytes(signer.sign_message(message).signature)
    else:
        signature = bytes(signer(message))
    return SignedRequest(
        action=action,
        chain_id=chain_id,
        market=to_checksum_address(market),
        job_id=job_id,
        spec_hash=spec_hash,
        issued_at=issued_at,
        nonce=nonce,
        signature=signature,
    )


@dataclass(frozen=True)
class AuthScope:
    """Where this agent's requests are valid: one chain and one market deployment."""

    chain_id: int
    market: str

    def __post_init__(self) -> None:
        if isinstance(self.chain_id, bool) or not isinstance(self.chain_id, int) or self.chain_id < 1:
            raise ValueError(f"chain_id must be a positive int, got {self.chain_id!r}")
        object.__setattr__(self, "market", to_checksum_address(self.market))


class NonceStore(Protocol):
    """Remembers used nonces (the agent's Store implements it)."""

    def use_nonce(self, signer: str, nonce: bytes, issued_at: int, forget_before: int) -> bool:
        """Records (signer, nonce); False when it was already used. Nonces issued before
        ``forget_before`` may be dropped: requests that old are refused as expired anyway."""
        ...


class RequestVerifier:
    """The agent's side: scope, time window, signature, signer, nonce."""

    def __init__(
        self,
        scope: AuthScope,
        nonces: NonceStore,
        *,
        max_age_s: int = 300,
        max_skew_s: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.scope = scope
        self._nonces = nonces
        self.max_age_s = max_age_s
        self.max_skew_s = max_skew_s
        self._clock = clock

    def authenticate(
        self, request: SignedRequest, *, action: Action, job_id: int, spec_hash: bytes | None = None
    ) -> str:
        """Checks scope, time and signature; returns the signer's checksummed address.

        The nonce is not used up here (``consume``), so a request refused for another reason
        later does not burn it."""
        wrong = []
        if request.action != action:
            wrong.append(f"signed for action {request.action!r}, this is {action!r}")
        if request.job_id != job_id:
            wrong.append(f"signed for job {request.job_id}, this is job {job_id}")
        if request.chain_id != self.scope.chain_id:
            wrong.append(f"signed for chain {request.chain_id}, this agent serves chain {self.scope.chain_id}")
        if request.market != self.scope.market:
            wrong.append(f"signed for market {request.market}, this agent serves {self.scope.market}")
        if request.spec_hash != spec_hash:
            signed = "0x" + request.spec_hash.hex() if request.spec_hash else "none"
            sent = "0x" + spec_hash.hex() if spec_hash else "none"
            wrong.append(f"signed for spec_hash {signed}, the request carries {sent}")
        if wrong:
            raise AuthError(403, "wrong_scope", "; ".join(wrong))
        now = self._clock()
        if request.issued_at < now - self.max_age_s:
            raise AuthError(
                401,
                "expired",
                f"issued {int(now - request.issued_at)} s ago; requests are valid for {self.max_age_s} s",
            )
        if request.issued_at > now + self.max_skew_s:
            raise AuthError(
                401,
                "expired",
                f"issued {int(request.issued_at - now)} s in the future; "
                f"at most {self.max_skew_s} s of clock skew is allowed",
            )
        return request.signer()

    @staticmethod
    def check_signer(signer: str, client: str) -> None:
        """403 unless the signer is the job's on-chain client."""
        if to_checksum_address(signer) != to_checksum_address(client):
            raise AuthError(
                403, "wrong_signer", f"signed by {signer}, not by the job's client {to_checksum_address(client)}"
            )

    def consume(self, request: SignedRequest, signer: str) -> None:
        """409 when this signer already used this nonce; otherwise records it."""
        forget_before = int(self._clock()) - self.max_age_s - self.max_skew_s
        if not self._nonces.use_nonce(signer, request.nonce, request.issued_at, forget_before):
            raise AuthError(409, "replayed", f"nonce 0x{request.nonce.hex()} was already used by {signer}")

    def verify(
        self, request: SignedRequest, *, action: Action, job_id: int, client: str, spec_hash: bytes | None = None
    ) -> str:
        """All checks in order (scope, time, signature, signer, nonce); returns the signer."""
        signer = self.authenticate(request, action=action, job_id=job_id, spec_hash=spec_hash)
        self.check_signer(signer, client)
        self.consume(request, signer)
        return signer
