"""An OCI image reference pinned by digest: ``[registry/]repository@sha256:<64 lowercase hex>``.

A job spec (version 2) names the image its container runs, and the spec's hash is what the
client signs on chain. A tag (``:latest``, ``:v1``) is a movable pointer: the registry may
answer the same tag with other bytes tomorrow. Only a digest fixes the bytes that run, so
``parse_image_reference`` accepts a reference only when it is pinned by one, and refuses one
that has a tag as well (the engine would ignore the tag; one reference must have one meaning).

The grammar is the OCI distribution reference grammar (Docker's ``reference`` package)::

    reference  := [registry '/'] repository '@' digest
    registry   := host [':' port]             host: domain components [A-Za-z0-9-] joined by '.'
    repository := component ('/' component)*  component: [a-z0-9]+ ((?:[._]|__|-+) [a-z0-9]+)*
    digest     := 'sha256:' 64 lowercase hex

As Docker decides, the first path part is the registry when there is a '/' after it and it
contains '.' or ':' or is ``localhost``; otherwise the whole name is the repository (the
engine's default registry applies). The text is kept exactly as given (it is hashed), so
``str(parse_image_reference(text)) == text`` for every accepted ``text``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["DIGEST_ALGORITHM", "MAX_REFERENCE_CHARS", "ImageReference", "parse_image_reference"]

MAX_REFERENCE_CHARS: Final = 255
DIGEST_ALGORITHM: Final = "sha256"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*")
_DOMAIN_COMPONENT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ALGORITHM = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")

_UNPINNED = "a tag alone (or no tag) does not fix the bytes that run; pin the image by digest: name@sha256:<64 hex>"


@dataclass(frozen=True)
class ImageReference:
    """A parsed, valid reference. ``registry`` is ``None`` when the name has no registry part."""

    registry: str | None
    repository: str
    digest: str  # "sha256:<64 lowercase hex>"

    @property
    def name(self) -> str:
        """The name without the digest: ``[registry/]repository``."""
        return self.repository if self.registry is None else f"{self.registry}/{self.repository}"

    @property
    def hex(self) -> str:
        """The digest's 64 hex characters, without the algorithm."""
        return self.digest.partition(":")[2]

    def __str__(self) -> str:
        return f"{self.name}@{self.digest}"


def _check_characters(text: str) -> None:
    for index, char in enumerate(text):
        if char == "\x00":
            raise ValueError(f"contains a NUL character at {index}")
        if char.isspace():
            raise ValueError(f"contains whitespace ({char!r}) at {index}")
        if not char.isascii():
            raise ValueError(f"contains a non-ASCII character ({char!r}) at {index}")
        if not char.isprintable():
            raise ValueError(f"contains a control character ({char!r}) at {index}")


def _parse_digest(text: str) -> str:
    algorithm, colon, encoded = text.partition(":")
    if not colon:
        raise ValueError(f"digest {text[:80]!r} has no algorithm; expected sha256:<64 lowercase hex>")
    if algorithm != DIGEST_ALGORITHM:
        shown = algorithm[:20] if _ALGORITHM.fullmatch(algorithm) else repr(algorithm[:20])
        raise ValueError(
            f"digest algorithm {shown} is not accepted; only sha256 digests are (sha256:<64 lowercase hex>)"
        )
    if len(encoded) != 64:
        raise ValueError(f"sha256 digest has {len(encoded)} hex characters, expected 64")
    if not _HEX64.fullmatch(encoded):
        if _HEX64.fullmatch(encoded.lower()):
            raise ValueError("sha256 digest must be lowercase hex")
        raise ValueError("sha256 digest is not hex (expected 64 characters 0-9a-f)")
    return text


def _parse_registry(text: str) -> str:
    host, colon, port = text.partition(":")
    if not host:
        raise ValueError(f"registry {text!r} has an empty host")
    for part in host.split("."):
        if not _DOMAIN_COMPONENT.fullmatch(part):
            raise ValueError(
                f"registry host {host!r} is not a domain name (letters, digits and '-' between dots, no empty part)"
            )
    if colon:
        if not _PORT.fullmatch(port) or int(port) > 65535:
            raise ValueError(f"registry port {port[:20]!r} is not a number from 1 to 65535 (no leading zeros)")
    return text


def _parse_repository(text: str) -> str:
    if not text:
        raise ValueError("the repository name is empty")
    for part in text.split("/"):
        if part == "":
            raise ValueError(f"repository {text!r} has an empty path component")
        if part in (".", ".."):
            raise ValueError(f"repository {text!r} has a {part!r} path component")
        if not _COMPONENT.fullmatch(part):
            if _COMPONENT.fullmatch(part.lower()):
                raise ValueError(f"repository {text!r} has uppercase letters; repository names are lowercase")
            raise ValueError(
                f"repository component {part!r} is not [a-z0-9] runs joined by '.', '_', '__' or '-' "
                "(and may not start or end with one)"
            )
    return text


def parse_image_reference(text: str) -> ImageReference:
    """The reference in ``text``, which must be pinned by a sha256 digest; ValueError says why not."""
    if not isinstance(text, str):
        raise ValueError(f"expected a string, got {type(text).__name__}")
    if not text:
        raise ValueError("is empty")
    if len(text) > MAX_REFERENCE_CHARS:
        raise ValueError(f"is {len(text)} characters, more than {MAX_REFERENCE_CHARS}")
    _check_characters(text)
    if _SCHEME.match(text):
        raise ValueError("has a URL scheme; write the reference without one: [registry/]name@sha256:<64 hex>")
    name, at, digest_text = text.partition("@")
    if not at:
        raise ValueError(_UNPINNED)
    if "@" in digest_text:
        raise ValueError("has more than one '@'")
    digest = _parse_digest(digest_text)
    if ".." in name:
        raise ValueError("contains '..'; no part of a reference is a relative path")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        tag = last.partition(":")[2]
        raise ValueError(
            f"has a tag ({tag[:40]!r}) as well as a digest; the engine would ignore the tag, and one reference "
            "must have one meaning: drop the tag (name@sha256:<64 hex>)"
        )
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry: str | None = _parse_registry(first)
        repository = _parse_repository(rest)
    else:
        registry = None
        repository = _parse_repository(name)
    return ImageReference(registry=registry, repository=repository, digest=digest)
