"""The committee as its members' own APIs describe it: each oracle's ``/health`` and ``/metrics``,
polled over HTTP, and, per job, the challenges each ran.

    watch = OracleWatch(["http://127.0.0.1:8800", ...], interval_s=5.0).start()
    watch.statuses()          # -> [OracleStatus]: up or down (and why), address, epoch, figures
    watch.generation          # changes whenever what the pages show of the oracles changes
    watch.challenges(7)       # -> [JobChallenges]: per oracle that is up, its challenges of job 7
    watch.close()

What each oracle publishes (gpumarket.oracle.api and gpumarket.oracle.metrics):

- ``/health``: its address, the market it serves (one of another market is *down*), its epoch,
  whether it is a member;
- ``/metrics``: ``gpumarket_oracle_stored_signatures{origin="self"}`` (the reports it signed),
  ``gpumarket_oracle_settled_jobs`` (jobs it knows settled) and
  ``gpumarket_oracle_settlement_submissions_total{result}`` (its own settlement transactions).
  Two more are read when an oracle publishes them, and shown as "not published" otherwise:
  ``gpumarket_oracle_peers_reachable`` (peers that answered its last request) and
  ``gpumarket_oracle_last_settlement_timestamp_seconds``.
- ``GET /challenges/job/<id>`` (when published): ``{"challenges": [{"kind", "at", "measured_gops",
  "required_gops", "verdict"}]}``, the challenges it ran against the job's provider
  (``measured_gops`` null without a valid answer). An oracle without the route answers 404
  ``not_found``: its challenges are "not published".

An oracle that does not answer, answers with an error, or answers something that is not its API
is *down*, with the reason; one poll never waits more than the client's timeouts per oracle.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gpumarket.web.client import Timeouts, WebClient, WebError

__all__ = ["Challenge", "JobChallenges", "OracleStatus", "OracleWatch"]

log = logging.getLogger(__name__)

POLL_TIMEOUTS = Timeouts(connect_s=1.0, read_s=2.0)
# Metric names read from /metrics (see the module docstring).
SIGNED = "gpumarket_oracle_stored_signatures"
SETTLED = "gpumarket_oracle_settled_jobs"
SUBMISSIONS = "gpumarket_oracle_settlement_submissions_total"
PEERS_REACHABLE = "gpumarket_oracle_peers_reachable"
LAST_SETTLEMENT = "gpumarket_oracle_last_settlement_timestamp_seconds"
CHALLENGES_ROUTE = "/challenges/job/{job_id}"


@dataclass(frozen=True)
class OracleStatus:
    """One oracle as last polled; the fields after ``checked_at`` are None where it is down or
    does not publish them."""

    url: str
    up: bool
    checked_at: float
    error: str | None = None
    address: str | None = None
    epoch: int | None = None
    member: bool | None = None
    reports_signed: int | None = None
    settled_jobs: int | None = None
    submissions: tuple[tuple[str, int], ...] = ()
    peers_reachable: int | None = None
    last_settlement_at: int | None = None

    def shown(self) -> tuple[Any, ...]:
        """What the pages show of it: a change here is a change of the pages."""
        return (
            self.up,
            self.error,
            self.address,
            self.epoch,
            self.member,
            self.reports_signed,
            self.settled_jobs,
            self.submissions,
            self.peers_reachable,
            self.last_settlement_at,
        )


@dataclass(frozen=True)
class Challenge:
    """One challenge an oracle ran: its kind (start, heartbeat, end), when it ended (unix
    seconds, the oracle's clock), the throughput measured (None: no valid answer), the throughput
    required, and the oracle's verdict ("pass", "slow", "fail", "untrusted", "no answer", ...)."""

    kind: str
    at: float
    measured_gops: float | None
    required_gops: float
    verdict: str


@dataclass(frozen=True)
class JobChallenges:
    """One oracle's challenges of a job: ``challenges`` None when it does not publish them
    (``note`` says why)."""

    oracle: OracleStatus
    challenges: tuple[Challenge, ...] | None
    note: str = ""


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def _status(url: str, health: dict[str, Any], metrics: str) -> OracleStatus:
    samples = _samples(metrics)

    def value(name: str, **labels: str) -> int | None:
        found = [v for n, got, v in samples if n == name and all(got.get(k) == w for k, w in labels.items())]
        return int(sum(found)) if found else None

    return OracleStatus(
        url=url,
        up=True,
        checked_at=time.time(),
        address=str(health["address"]),
        epoch=health.get("epoch"),
        member=health.get("member"),
        reports_signed=value(SIGNED, origin="self"),
        settled_jobs=value(SETTLED),
        submissions=tuple(sorted((got.get("result", ""), int(v)) for n, got, v in samples if n == SUBMISSIONS)),
        peers_reachable=value(PEERS_REACHABLE),
        last_settlement_at=value(LAST_SETTLEMENT),
    )


def _challenge(item: Any) -> Challenge:
    measured = item["measured_gops"]
    return Challenge(
        kind=str(item["kind"]),
        at=float(item["at"]),
        measured_gops=None if measured is None else float(measured),
        required_gops=float(item["required_gops"]),
        verdict=str(item["verdict"]),
    )


class OracleWatch:
    """Polls the oracles at ``urls`` every ``interval_s`` seconds from a thread of its own.
    ``market``: (chain id, address) of the market shown; an oracle of another is down."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        market: tuple[int, str] | None = None,
        interval_s: float = 5.0,
        timeouts: Timeouts = POLL_TIMEOUTS,
    ) -> None:
        self.urls = tuple(dict.fromkeys(url.rstrip("/") for url in urls))
        self.market = None if market is None else (market[0], market[1].lower())  # addresses in any case
        self.interval_s = interval_s
        self._clients = {url: WebClient(url, timeouts=timeouts, max_connections=2) for url in self.urls}
        self._lock = threading.Lock()
        self._statuses: dict[str, OracleStatus] = {}
        self._generation = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> OracleWatch:
        self.poll_once()  # the first pages already know who is up
        self._thread = threading.Thread(target=self._run, name="dashboard-oracles", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        for client in self._clients.values():
            client.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll_once()
            except Exception:  # a bug in one poll must not end the polling
                log.exception("polling the oracles failed")

    @property
    def generation(self) -> int:
        """A number that changes whenever what the pages show of the oracles changes."""
        with self._lock:
            return self._generation

    def statuses(self) -> list[OracleStatus]:
        """Every oracle's last status, in the order the URLs were given."""
        with self._lock:
            return [self._statuses[url] for url in self.urls if url in self._statuses]

    def poll_once(self) -> None:
        for url in self.urls:
            status = self._poll(url)
            with self._lock:
                previous = self._statuses.get(url)
                self._statuses[url] = status
                if previous is None or previous.shown() != status.shown():
                    self._generation += 1

    def _poll(self, url: str) -> OracleStatus:
        client = self._clients[url]
        try:
            health = _json_object(client.request("GET", "/health").expect_ok())
            chain_id, contract = health.get("chain_id"), str(health.get("contract"))
            if self.market is not None and (chain_id, contract.lower()) != self.market:
                error = f"an oracle of market {contract} on chain {chain_id}, not this one"
                return OracleStatus(url, up=False, checked_at=time.time(), error=error)
            metrics = client.request("GET", "/metrics").expect_ok()
            return _status(url, health, metrics.decode())
        except WebError as error:
            return OracleStatus(url, up=False, checked_at=time.time(), error=_reason(error))
        except (ValueError, KeyError, TypeError) as error:
            return OracleStatus(url, up=False, checked_at=time.time(), error=f"not an oracle's API: {error}")

    def challenges(self, job_id: int) -> list[JobChallenges]:
        """Each oracle's challenges of ``job_id``, asked now of every oracle that is up."""
        found = []
        for status in self.statuses():
            if not status.up:
                continue
            try:
                answer = self._clients[status.url].request("GET", CHALLENGES_ROUTE.format(job_id=job_id))
                if answer.status == 404 and answer.refusal().code == "not_found":
                    found.append(JobChallenges(status, None, "not published by this oracle"))
                    continue
                items = _json_object(answer.expect_ok())["challenges"]
                found.append(JobChallenges(status, tuple(_challenge(item) for item in items)))
            except WebError as error:
                found.append(JobChallenges(status, None, _reason(error)))
            except (ValueError, KeyError, TypeError) as error:
                found.append(JobChallenges(status, None, f"unreadable answer: {error}"))
        return found


def _json_object(body: bytes) -> dict[str, Any]:
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError("expected a JSON object")
    return document


def _reason(error: WebError) -> str:
    """Why an oracle gave no usable answer, without its URL (the page shows that beside it)."""
    text = str(error)
    return text[len(error.url) + 2 :] if text.startswith(error.url + ": ") else text
