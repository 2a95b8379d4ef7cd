"""The dashboard's web app: server-rendered pages on the services' web stack (gpumarket.web.server),
Jinja2 templates and the static files shipped in this package.

Routes::

    GET /                          the market: parameters, committee, tokens, totals, jobs per state
    GET /providers                 every provider
    GET /providers/<address>       one provider: its hardware reports against its class floor, slashes, jobs
    GET /jobs?state=&provider=&client=&page=
                                   jobs, newest first, filtered
    GET /jobs/<id>                 one job: timeline, challenges, settlement and its signers
    GET /oracles                   the committee and the oracles polled (and which are down)
    GET /oracles/<address>         one oracle: its API's figures and the reports it signed
    GET /api/version               {"version": "..."}: changes when a page may have changed
    GET /static/<name>             the stylesheet, the live-update script, the icon

Live updates: every page carries the version it was rendered at; ``static/live.js`` asks
``/api/version`` every few seconds and, when it moved on, fetches the page again and swaps its
``<main>``: no reload, nothing else fetched.

Refusals: a bad query or path parameter is 400 ``invalid_field`` (``field`` names it), an
unknown query parameter 400 ``unknown_field``, an unknown job, provider or oracle 404
``unknown_job`` / ``unknown_provider`` / ``unknown_oracle``, in the JSON envelope of
gpumarket.web.errors, or, for a browser (``Accept: text/html``), an HTML page saying the same
with the same status. Every page is sent with a Content-Security-Policy that allows only this
server's own scripts, styles and images.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from gpumarket.chain.models import JobState
from gpumarket.dashboard import units
from gpumarket.dashboard.queries import JobFilter
from gpumarket.dashboard.views import DashboardViews, Unknown
from gpumarket.signing.eip712 import checksum_address
from gpumarket.web.errors import NOT_FOUND, HttpError
from gpumarket.web.server import Endpoint, in_thread, json_app, json_response

__all__ = ["INVALID_FIELD", "UNKNOWN_FIELD", "dashboard_app"]

INVALID_FIELD = "invalid_field"
UNKNOWN_FIELD = "unknown_field"
MAX_PAGE = 1_000_000
MAX_UINT256 = 2**256 - 1

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self';"
        " base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Context = dict[str, Any]


def _templates() -> Environment:
    environment = Environment(
        loader=PackageLoader("gpumarket.dashboard", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,  # a misspelt name fails the page (and its test), never renders empty
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["short"] = units.short_address
    return environment


def _static_files() -> dict[str, tuple[bytes, str]]:
    """Every file of static/, read once: name -> (bytes, media type)."""
    folder = resources.files("gpumarket.dashboard") / "static"
    files = {}
    for entry in folder.iterdir():
        if entry.is_file():
            media_type = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
            files[entry.name] = (entry.read_bytes(), media_type)
    return files


# ------------------------------------------------------------------ parameters


def _address(value: str, field: str) -> str:
    try:
        return checksum_address(value)
    except ValueError:
        raise HttpError(400, INVALID_FIELD, f"{field} must be a 0x-prefixed 20-byte address", field=field) from None


def _uint(value: str, field: str, upper: int) -> int:
    # The length first: int() refuses thousands of digits with a ValueError, which is no answer.
    if not (value.isascii() and value.isdigit()) or len(value) > len(str(upper)) or int(value) > upper:
        raise HttpError(400, INVALID_FIELD, f"{field} must be a whole number from 0 to {upper}", field=field)
    return int(value)


def _state(value: str) -> JobState:
    names = [state.name for state in JobState if state is not JobState.NONE]
    if value.upper() not in names:
        raise HttpError(400, INVALID_FIELD, f"state must be one of {', '.join(names)}", field="state")
    return JobState[value.upper()]


def _query(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query's parameters, empty ones left out (a form submits its empty fields)."""
    for name in request.query_params:
        if name not in allowed:
            raise HttpError(
                400,
                UNKNOWN_FIELD,
                f"unknown query parameter; this page takes {', '.join(allowed) or 'none'}",
                field=name,
            )
    return {name: value for name, value in request.query_params.items() if value.strip()}


def _job_filter(request: Request) -> tuple[JobFilter, int]:
    query = _query(request, ("state", "provider", "client", "page"))
    page = _uint(query["page"], "page", MAX_PAGE) if "page" in query else 1
    if page < 1:
        raise HttpError(400, INVALID_FIELD, "page counts from 1", field="page")
    where = JobFilter(
        state=_state(query["state"]) if "state" in query else None,
        provider=_address(query["provider"], "provider") if "provider" in query else None,
        client=_address(query["client"], "client") if "client" in query else None,
    )
    return where, page


# ------------------------------------------------------------------ the app


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def dashboard_app(views: DashboardViews, *, live_interval_s: float = 2.0) -> Starlette:
    """The app over ``views``; ``live_interval_s``: how often pages ask whether they changed."""
    templates = _templates()
    static = _static_files()

    def render(template: str, context: Context, status: int = 200) -> Response:
        body = templates.get_template(template).render(live_ms=int(live_interval_s * 1000), **context)
        return Response(body, status, HEADERS, media_type="text/html")

    def page(template: str, build: Callable[[Request], Context]) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                context = await in_thread(_known, build, request)
                return await in_thread(render, template, context)
            except HttpError as error:
                if not _wants_html(request):
                    raise  # json_app answers with the envelope
                error_context = {"error": error, "title": f"{error.status} {error.code}", "section": ""}
                return await in_thread(render, "error.html", {**_error_frame(views), **error_context}, error.status)

        return handle

    async def version(request: Request) -> Response:
        return json_response({"version": await in_thread(views.version)})

    async def static_file(request: Request) -> Response:
        found = static.get(request.path_params["name"])
        if found is None:
            raise HttpError(404, NOT_FOUND, f"no static file {request.path_params['name'][:100]!r}")
        return Response(found[0], 200, HEADERS, media_type=found[1])

    def no_query(build: Callable[[], Context]) -> Callable[[Request], Context]:
        def checked(request: Request) -> Context:
            _query(request, ())
            return build()

        return checked

    def address_in_path(request: Request) -> str:
        return _address(request.path_params["address"], "address")

    def job_in_path(request: Request) -> int:
        return _uint(request.path_params["job_id"], "job_id", MAX_UINT256)

    return json_app(
        [
            Endpoint("GET", "/", page("market.html", no_query(views.market))),
            Endpoint("GET", "/providers", page("providers.html", no_query(views.providers))),
            Endpoint(
                "GET", "/providers/{address}", page("provider.html", lambda r: views.provider(address_in_path(r)))
            ),
            Endpoint("GET", "/jobs", page("jobs.html", lambda request: views.jobs(*_job_filter(request)))),
            Endpoint("GET", "/jobs/{job_id}", page("job.html", lambda request: views.job(job_in_path(request)))),
            Endpoint("GET", "/oracles", page("oracles.html", no_query(views.oracles))),
            Endpoint("GET", "/oracles/{address}", page("oracle.html", lambda r: views.oracle(address_in_path(r)))),
            Endpoint("GET", "/api/version", version),
            Endpoint("GET", "/static/{name}", static_file),
        ]
    )


def _known(build: Callable[[Request], Context], request: Request) -> Context:
    """``build(request)``, an unknown job, provider or oracle turned into a 404."""
    try:
        return build(request)
    except Unknown as error:
        raise HttpError(404, f"unknown_{error.kind}", str(error)) from None


def _error_frame(views: DashboardViews) -> dict[str, Any]:
    """What the error page shows of the market: no chain read, so it renders whatever failed."""
    return {"market": views.deployment.market, "chain_id": views.deployment.chain_id, "version": views.version()}
