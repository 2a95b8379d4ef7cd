"""The oracle's Prometheus metrics, kept and exposed by prometheus-client.

:class:`OracleMetrics` declares the oracle's families in a registry of its own (never the
process-wide default one), so several oracles in one process (tests, the demo) count apart.
Every part of the oracle takes one instance: the signer counts decisions, the API requests and
signatures, peers gathering, the settlement loop submissions, the job loop its steps; the API
adds gauges read from the store at scrape time, the job loop gauges of the jobs it follows and
of its lag. prometheus-client writes the exposition format (:meth:`OracleMetrics.exposition`).

Counters are exposed as ``<name>_total`` only: the ``_created`` series prometheus-client would add
beside each are switched off (process-wide, when this module is imported).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator

import prometheus_client
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Counter", "OracleMetrics"]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what a scrape without an Accept header gets

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

Sample = tuple[dict[str, str], float]


class Counter:
    """A labelled counter family: ``inc(kind="job")``, ``value(kind="job")``."""

    def __init__(self, name: str, help: str, labelnames: Iterable[str], registry: CollectorRegistry) -> None:
        self.name = name
        self.labelnames = tuple(labelnames)
        self._family = prometheus_client.Counter(name, help, self.labelnames, registry=registry)

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        """Raises ValueError for labels other than the family's, or a negative amount."""
        self._family.labels(**{k: str(v) for k, v in labels.items()}).inc(amount)

    def value(self, **labels: object) -> float:
        """The count for these labels (0 if never incremented)."""
        wanted = {k: str(v) for k, v in labels.items()}
        for metric in self._family.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.labels == wanted:
                    return sample.value
        return 0.0


class _ReadAtScrape(Collector):
    """A gauge family whose samples a callback reads at scrape time (counts from the store, say)."""

    def __init__(self, name: str, help: str, read: Callable[[], Iterable[Sample]]) -> None:
        self.name = name
        self.help = help
        self.read = read

    def collect(self) -> Iterator[Metric]:
        samples = list(self.read())
        family = GaugeMetricFamily(self.name, self.help, labels=sorted({k for labels, _ in samples for k in labels}))
        for labels, value in samples:
            family.add_metric([labels[k] for k in sorted(labels)], value)
        yield family

    def describe(self) -> Iterator[Metric]:
        # Declared without reading the store: registering must not query it.
        yield GaugeMetricFamily(self.name, self.help)


class OracleMetrics:
    """The oracle's metric families; store-backed gauges are added by the API (:meth:`gauge`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._gauges: set[str] = set()
        self._lock = threading.Lock()
        self.decisions = self.counter(
            "gpumarket_oracle_decisions_total", "Decisions committed by this process.", ("kind",)
        )
        self.signatures_served = self.counter(
            "gpumarket_oracle_signatures_served_total", "Signed reports served over HTTP.", ("kind",)
        )
        self.peer_signatures = self.counter(
            "gpumarket_oracle_peer_signatures_total",
            "Peer signatures offered to this oracle, by how they arrived and what became of them.",
            ("source", "result"),
        )
        self.requests = self.counter(
            "gpumarket_oracle_http_requests_total",
            "HTTP requests answered, by route and status code.",
            ("route", "code"),
        )
        self.request_errors = self.counter(
            "gpumarket_oracle_http_request_errors_total",
            "HTTP requests refused, by status and error code.",
            ("code", "error"),
        )
        self.submissions = self.counter(
            "gpumarket_oracle_settlement_submissions_total", "Settlement submissions, by result.", ("result",)
        )
        # The job loop's (gpumarket.oracle.jobs), beside its gauges.
        self.job_steps = self.counter(
            "gpumarket_oracle_job_steps_total", "Steps of the job loop, by what the step did.", ("action",)
        )

    def counter(self, name: str, help: str, labelnames: Iterable[str] = ()) -> Counter:
        return Counter(name, help, labelnames, self.registry)

    def gauge(self, name: str, help: str, read: Callable[[], Iterable[Sample]]) -> None:
        """A gauge family read at scrape time; ValueError if the name is taken."""
        with self._lock:
            if name in self._gauges:
                raise ValueError(f"metric {name} is already registered")
            self.registry.register(_ReadAtScrape(name, help, read))
            self._gauges.add(name)

    def has(self, name: str) -> bool:
        with self._lock:
            return name in self._gauges

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The body and content type of a scrape: the text format 0.0.4 unless the scraper's
        Accept header asks for another that prometheus-client writes (OpenMetrics, say)."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type

    def render(self) -> str:
        """The text format 0.0.4 of every family."""
        return self.exposition()[0].decode()
