"""Asking an image registry whether it serves an image, and how big the image is (OCI distribution API).

    client = RegistryClient({"127.0.0.1:5000": "http://127.0.0.1:5000", "ghcr.io": "https://ghcr.io"})
    check = client.check(parse_image_reference("ghcr.io/org/train@sha256:<hex>"))
    check.status        # FOUND, NOT_FOUND, UNREACHABLE or UNCHECKABLE
    check.size_bytes    # FOUND: the image's size (config + layers, as the manifest declares them)

An oracle uses this to see for itself whether a job's image could be had (gpumarket.oracle.images).
What it does, and nothing more:

- Only the registries in the map are asked, each at its base URL (the map is the operator's:
  the registries the providers use). A reference without a registry part, or with one not in
  the map (``localhost/...``: an image that lives only on a provider's machine), is
  ``UNCHECKABLE`` and nothing is sent anywhere. With ``default_https`` (a provider agent sizing
  the images it is about to pull, from wherever its engine would pull them), a registry not in
  the map is asked at ``https://<host[:port]>``; ``localhost`` still never is.
- ``GET <base>/v2/<repository>/manifests/<digest>`` with the OCI and Docker v2 manifest and
  index media types in ``Accept``. The body must hash (sha256) to the digest: a registry that
  serves other bytes is not trusted (``UNREACHABLE``).
- Anonymous bearer-token auth: a 401 with ``WWW-Authenticate: Bearer realm=...,service=...,
  scope=...`` fetches a token from the realm (an http(s) URL; https when the registry's base
  URL is) and retries once with it. A registry that wants credentials, or refuses the token,
  is ``UNREACHABLE``.
- The size of a single manifest is ``config.size + sum(layers[].size)``. For an index (or a
  Docker manifest list) it is the largest of its linux platform manifests, each fetched and
  verified the same way, at most ``max_index_manifests`` of them: the largest, because the
  oracle does not know the provider's platform, and a size within a limit must be within it
  whatever the platform.
- ``404``, ``MANIFEST_UNKNOWN`` or ``NAME_UNKNOWN`` is ``NOT_FOUND``; connection errors,
  timeouts, 5xx, other refusals, auth failures, oversized or mismatched answers are
  ``UNREACHABLE``. Bytes that hash right but are no manifest this client can size (schema 1,
  a nested index, an index with too many linux manifests) are ``UNCHECKABLE``.

Bounded, over gpumarket.web.client (its connections pooled across checks): a connect timeout
and a read timeout per request, a time limit for the whole check (``RegistryTimeouts.total_s``:
every wait of every request ends by then, however slowly a registry drips its bytes), each
answer read up to a size cap (``max_manifest_bytes``, 4 MiB; an error answer is cut at 64 KiB),
redirects followed only to the same scheme, host and port (at most ``_MAX_REDIRECTS``), proxies
from the environment ignored. ``check`` never raises for anything the network or the registry does.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from gpumarket.containers.reference import ImageReference
from gpumarket.web.client import Answer, Timeouts, TooLarge, Unreachable, WebClient

__all__ = [
    "ACCEPT_MANIFESTS",
    "MAX_INDEX_MANIFESTS",
    "MAX_MANIFEST_BYTES",
    "ImageCheck",
    "ImageStatus",
    "RegistryClient",
    "RegistryTimeouts",
    "registry_map",
]

MAX_MANIFEST_BYTES: Final = 4 * 1024 * 1024
MAX_INDEX_MANIFESTS: Final = 16
_MAX_TOKEN_BYTES: Final = 64 * 1024
_MAX_ERROR_BYTES: Final = 64 * 1024
_MAX_REDIRECTS: Final = 3
_MAX_LAYERS: Final = 10_000

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT_MANIFESTS: Final = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
_INDEX_TYPES: Final = frozenset({OCI_INDEX, DOCKER_LIST})
_MANIFEST_TYPES: Final = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
_NOT_FOUND_CODES: Final = frozenset({"MANIFEST_UNKNOWN", "NAME_UNKNOWN"})
_DIGEST: Final = re.compile(r"sha256:[0-9a-f]{64}")
# One auth-param of a challenge: key=token or key="quoted string" (RFC 7235).
_AUTH_PARAM: Final = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)')


class ImageStatus(enum.StrEnum):
    FOUND = "found"  # the registry served the manifest by digest, and it hashes to the digest
    NOT_FOUND = "not_found"  # the registry says the manifest or the name is unknown
    UNREACHABLE = "unreachable"  # no trustworthy answer: network, 5xx, auth, oversized or wrong bytes
    UNCHECKABLE = "uncheckable"  # not asked (no registry, or one not configured) or not sizable


@dataclass(frozen=True)
class ImageCheck:
    """One check's answer: ``size_bytes`` is set only when FOUND."""

    status: ImageStatus
    size_bytes: int | None = None
    detail: str = ""

    @property
    def found(self) -> bool:
        return self.status is ImageStatus.FOUND


@dataclass(frozen=True)
class RegistryTimeouts:
    """Seconds to connect, to wait for each read of an answer, and for a whole check (every
    request it makes: token, manifest, an index's manifests)."""

    connect_s: float = 5.0
    read_s: float = 10.0
    total_s: float = 30.0

    def __post_init__(self) -> None:
        if not (self.connect_s > 0 and self.read_s > 0 and self.total_s > 0):
            raise ValueError("timeouts must be positive")


class _Failed(Exception):
    """Ends a check with this answer."""

    def __init__(self, status: ImageStatus, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class _Session:
    """One check's requests to one registry: the token, once one was fetched, is reused."""

    base: urllib.parse.SplitResult
    repository: str
    deadline: float  # time.monotonic() by which the check ends
    token: str | None = None

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _Failed(ImageStatus.UNREACHABLE, "the registry took longer than this check may")
        return left


def _origin(url: urllib.parse.SplitResult) -> tuple[str, str, int]:
    port = url.port or (443 if url.scheme == "https" else 80)
    return url.scheme, (url.hostname or "").lower(), port


def _parse_base(host: str, base: str) -> urllib.parse.SplitResult:
    try:
        parsed = urllib.parse.urlsplit(base)
        _ = parsed.port  # ValueError for a port that is no number or out of range
    except ValueError as error:
        raise ValueError(f"registry {host!r}: base URL {base!r} is not a URL ({error})") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"registry {host!r}: base URL {base!r} is not an http(s) URL")
    if parsed.query or parsed.fragment or parsed.username or parsed.password:
        raise ValueError(f"registry {host!r}: base URL {base!r} may have no query, fragment or credentials")
    return parsed


class RegistryClient:
    """Checks images on the registries in ``registries`` (host[:port] as written in references ->
    base URL); see the module docstring."""

    def __init__(
        self,
        registries: Mapping[str, str],
        *,
        timeouts: RegistryTimeouts | None = None,
        max_manifest_bytes: int = MAX_MANIFEST_BYTES,
        max_index_manifests: int = MAX_INDEX_MANIFESTS,
        default_https: bool = False,
    ) -> None:
        if max_manifest_bytes < 1024 or max_index_manifests < 1:
            raise ValueError("max_manifest_bytes must be >= 1024 and max_index_manifests >= 1")
        self._bases: dict[str, urllib.parse.SplitResult] = {}
        for host, base in registries.items():
            if not isinstance(host, str) or not host or "/" in host:
                raise ValueError(f"registry host {host!r} is not host[:port]")
            self._bases[host.lower()] = _parse_base(host, base)
        self.timeouts = timeouts or RegistryTimeouts()
        self.max_manifest_bytes = max_manifest_bytes
        self.max_index_manifests = max_index_manifests
        self.default_https = default_https
        self._web = WebClient(
            timeouts=Timeouts(self.timeouts.connect_s, self.timeouts.read_s),
            max_response_bytes=max_manifest_bytes,
            max_error_bytes=_MAX_ERROR_BYTES,
            headers={"User-Agent": "gpumarket-oracle"},
        )

    def close(self) -> None:
        """Close the pooled connections (also done when the client is collected)."""
        self._web.close()

    @property
    def registries(self) -> dict[str, str]:
        """The configured registries (host -> base URL)."""
        return {host: base.geturl() for host, base in self._bases.items()}

    def __repr__(self) -> str:
        return f"RegistryClient({sorted(self._bases)})"

    # ------------------------------------------------------------------ the check

    def check(self, reference: ImageReference, *, timeout_s: float | None = None) -> ImageCheck:
        """Whether the reference's registry serves its manifest by digest, and the image's size;
        within ``timeout_s`` when given (and ``timeouts.total_s`` in any case)."""
        if reference.registry is None:
            return ImageCheck(
                ImageStatus.UNCHECKABLE,
                detail=(f"{reference} names no registry (the engine's default applies): this oracle does not check it"),
            )
        host = reference.registry.lower()
        local = host.partition(":")[0] == "localhost"
        base = self._bases.get(host)
        if base is None and self.default_https and not local:
            base = _parse_base(host, f"https://{host}")
        if base is None:
            why = "a provider-local image" if local else "on a registry this oracle is not configured to ask"
            return ImageCheck(ImageStatus.UNCHECKABLE, detail=f"{reference} is {why}: not checked")
        total_s = self.timeouts.total_s if timeout_s is None else min(timeout_s, self.timeouts.total_s)
        session = _Session(base, reference.repository, time.monotonic() + total_s)
        try:
            size = self._size(session, reference.digest)
        except _Failed as failed:
            return ImageCheck(failed.status, detail=f"{reference}: {failed.detail}")
        return ImageCheck(ImageStatus.FOUND, size, f"{reference}: found, {size} bytes")

    def _size(self, session: _Session, digest: str) -> int:
        body, media_type = self._manifest(session, digest)
        document = _json_object(body)
        media_type = _declared_type(document, media_type)
        if "manifests" in document or media_type in _INDEX_TYPES:
            return self._index_size(session, document)
        return _manifest_size(document, media_type)

    def _index_size(self, session: _Session, index: dict[str, Any]) -> int:
        entries = index.get("manifests")
        if not isinstance(entries, list):
            raise _Failed(ImageStatus.UNCHECKABLE, "the index has no manifests list")
        linux: list[str] = []
        for entry in entries:
            platform = entry.get("platform") if isinstance(entry, dict) else None
            if isinstance(platform, dict) and platform.get("os") == "linux":
                child = entry.get("digest")
                if not isinstance(child, str) or not _DIGEST.fullmatch(child):
                    raise _Failed(ImageStatus.UNCHECKABLE, f"the index lists a manifest digest {str(child)[:80]!r}")
                if child not in linux:
                    linux.append(child)
        if not linux:
            raise _Failed(ImageStatus.NOT_FOUND, "the index lists no linux manifest")
        if len(linux) > self.max_index_manifests:
            raise _Failed(
                ImageStatus.UNCHECKABLE,
                (
                    f"the index lists {len(linux)} linux manifests, more than the {self.max_index_manifests} "
                    "this oracle fetches"
                ),
            )
        sizes = []
        for child in linux:
            body, media_type = self._manifest(session, child)
            document = _json_object(body)
            media_type = _declared_type(document, media_type)
            if "manifests" in document or media_type in _INDEX_TYPES:
                raise _Failed(ImageStatus.UNCHECKABLE, f"the index's manifest {child} is itself an index")
            sizes.append(_manifest_size(document, media_type))
        return max(sizes)

    def _manifest(self, session: _Session, digest: str) -> tuple[bytes, str]:
        """The verified bytes of the manifest ``digest`` and its media type (from Content-Type)."""
        path = f"/v2/{session.repository}/manifests/{digest}"
        answer = self._get(session, path, {"Accept": ACCEPT_MANIFESTS}, self.max_manifest_bytes)
        if answer.status == 200:
            actual = "sha256:" + hashlib.sha256(answer.body).hexdigest()
            if actual != digest:
                raise _Failed(
                    ImageStatus.UNREACHABLE,
                    (f"the registry served bytes that hash to {actual}, not {digest}: not trusted"),
                )
            content_type = (answer.headers.get("Content-Type") or "").split(";")[0].strip()
            return answer.body, content_type
        codes = _error_codes(answer.body)
        if answer.status == 404 or codes & _NOT_FOUND_CODES:
            said = ", ".join(sorted(codes)) or "404"
            raise _Failed(ImageStatus.NOT_FOUND, f"the registry says the manifest is unknown ({said})")
        if answer.status == 401:
            raise _Failed(ImageStatus.UNREACHABLE, "the registry refused the request (401: auth failed)")
        said = f" ({', '.join(sorted(codes))})" if codes else ""
        raise _Failed(ImageStatus.UNREACHABLE, f"the registry answered {answer.status}{said}")

    # ------------------------------------------------------------------ HTTP

    def _get(self, session: _Session, path: str, headers: dict[str, str], limit: int) -> Answer:
        """GET ``path`` on the session's registry, through the token dance once if it asks for it."""
        url = session.base._replace(path=session.base.path.rstrip("/") + path)
        answer = self._follow(session, url, self._with_token(session, headers), limit)
        if answer.status == 401 and session.token is None:
            challenge = next(iter(answer.headers.get_list("WWW-Authenticate")), "")
            session.token = self._token(session, challenge)
            answer = self._follow(session, url, self._with_token(session, headers), limit)
        return answer

    @staticmethod
    def _with_token(session: _Session, headers: dict[str, str]) -> dict[str, str]:
        if session.token is None:
            return headers
        return {**headers, "Authorization": f"Bearer {session.token}"}

    def _follow(self, session: _Session, url: urllib.parse.SplitResult, headers: dict[str, str], limit: int) -> Answer:
        """One GET, following redirects only within the same origin."""
        origin = _origin(url)
        for _ in range(_MAX_REDIRECTS + 1):
            answer = self._request(session, url, headers, limit)
            if answer.status not in (301, 302, 303, 307, 308):
                return answer
            location = answer.headers.get("Location") or ""
            target = urllib.parse.urlsplit(urllib.parse.urljoin(url.geturl(), location))
            try:
                same = _origin(target) == origin
            except ValueError:
                same = False
            if not same:
                raise _Failed(ImageStatus.UNREACHABLE, f"redirect to another host not followed ({location[:120]!r})")
            url = target
        raise _Failed(ImageStatus.UNREACHABLE, f"more than {_MAX_REDIRECTS} redirects")

    def _token(self, session: _Session, challenge: str) -> str:
        """An anonymous token from the Bearer challenge's realm."""
        scheme, _, params_text = challenge.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise _Failed(
                ImageStatus.UNREACHABLE,
                (f"the registry wants {scheme or 'unnamed'} auth: credentials this oracle does not have"),
            )
        params = _auth_params(params_text)
        realm = params.get("realm", "")
        try:
            target = urllib.parse.urlsplit(realm)
            _ = target.port  # ValueError for a port that is no number or out of range
        except ValueError:
            raise _Failed(ImageStatus.UNREACHABLE, f"the token realm {realm[:120]!r} is not a URL") from None
        if target.scheme not in ("http", "https") or not target.hostname:
            raise _Failed(ImageStatus.UNREACHABLE, f"the token realm {realm[:120]!r} is not an http(s) URL")
        if session.base.scheme == "https" and target.scheme != "https":
            raise _Failed(ImageStatus.UNREACHABLE, "the token realm is not https while the registry is")
        query = urllib.parse.parse_qsl(target.query, keep_blank_values=True)
        if "service" in params:
            query.append(("service", params["service"]))
        query.append(("scope", params.get("scope") or f"repository:{session.repository}:pull"))
        url = target._replace(query=urllib.parse.urlencode(query), fragment="")
        answer = self._follow(session, url, {"Accept": "application/json"}, _MAX_TOKEN_BYTES)
        if answer.status != 200:
            raise _Failed(ImageStatus.UNREACHABLE, f"the token realm answered {answer.status}: auth failed")
        try:
            document = json.loads(answer.body)
        except ValueError:
            document = None
        token = None
        if isinstance(document, dict):
            token = document.get("token") or document.get("access_token")
        if not isinstance(token, str) or not token or not token.isascii() or not token.isprintable() or " " in token:
            raise _Failed(ImageStatus.UNREACHABLE, "the token realm's answer holds no usable token")
        return token

    def _request(self, session: _Session, url: urllib.parse.SplitResult, headers: dict[str, str], limit: int) -> Answer:
        """One GET; every wait in it (connect, each read) ends by the check's deadline."""
        session.remaining()  # _Failed once the check's time is up
        try:
            return self._web.request("GET", url.geturl(), headers=headers, limit=limit, deadline=session.deadline)
        except TooLarge as error:
            raise _Failed(ImageStatus.UNREACHABLE, error.reason) from None
        except Unreachable as error:
            host = f"{url.hostname}:{url.port}" if url.port else str(url.hostname)
            raise _Failed(ImageStatus.UNREACHABLE, f"{host}: {error.reason}") from None


def _auth_params(text: str) -> dict[str, str]:
    """The auth-params of a challenge (``realm="...",service="...",scope="..."``)."""
    params: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _AUTH_PARAM.match(text, position)
        if match is None or match.end() == position:
            break
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else (bare or "")
        params.setdefault(match.group(1).lower(), value)
        position = match.end()
    return params


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError:
        raise _Failed(ImageStatus.UNCHECKABLE, "the manifest is not JSON") from None
    if not isinstance(document, dict):
        raise _Failed(ImageStatus.UNCHECKABLE, "the manifest is not a JSON object")
    return document


def _declared_type(document: dict[str, Any], served: str) -> str:
    """The manifest's own ``mediaType`` when it declares one, else the type it was served as."""
    declared = document.get("mediaType")
    return declared if isinstance(declared, str) else served


def _error_codes(body: bytes) -> set[str]:
    """The ``errors[].code`` of a registry's error answer (empty when there are none)."""
    try:
        document = json.loads(body)
    except ValueError:
        return set()
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return set()
    return {e["code"] for e in errors if isinstance(e, dict) and isinstance(e.get("code"), str)}


def _blob_size(descriptor: object, where: str) -> int:
    size = descriptor.get("size") if isinstance(descriptor, dict) else None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _Failed(ImageStatus.UNCHECKABLE, f"the manifest's {where} has no valid size")
    return size


def _manifest_size(document: dict[str, Any], media_type: str) -> int:
    """config.size + sum(layers[].size) of a single (OCI or Docker v2) image manifest."""
    if document.get("schemaVersion") != 2:
        raise _Failed(
            ImageStatus.UNCHECKABLE,
            (f"schemaVersion {document.get('schemaVersion')!r} manifests are not sized by this oracle"),
        )
    if media_type and media_type not in _MANIFEST_TYPES and media_type not in ("application/json",):
        raise _Failed(ImageStatus.UNCHECKABLE, f"media type {media_type[:80]!r} is not an image manifest")
    layers = document.get("layers")
    if not isinstance(layers, list) or len(layers) > _MAX_LAYERS:
        raise _Failed(ImageStatus.UNCHECKABLE, "the manifest has no layers list (or an absurd one)")
    total = _blob_size(document.get("config"), "config")
    for index, layer in enumerate(layers):
        total += _blob_size(layer, f"layer {index}")
    return total


def registry_map(options: Iterable[str] = (), base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Registries (host[:port] -> base URL) from ``HOST=URL`` texts (``--registry`` options) over
    ``base`` (a config file's table): a host the options name again takes their URL. ValueError
    for text that is no HOST=URL, a host the options give twice, or an entry RegistryClient
    refuses."""
    given: dict[str, str] = {}
    for value in options:
        host, equals, url = value.partition("=")
        host, url = host.strip().lower(), url.strip()
        if not equals or not host or not url:
            raise ValueError(f"{value!r} is not HOST=URL (e.g. ghcr.io=https://ghcr.io)")
        if host in given:
            raise ValueError(f"registry {host} is given twice")
        given[host] = url
    merged = {str(host).lower(): url for host, url in (base or {}).items()} | given
    RegistryClient(merged)  # raises ValueError naming the entry it refuses
    return merged
