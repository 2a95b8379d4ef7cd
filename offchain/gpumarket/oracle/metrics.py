"""The oracle's Prometheus metrics: labelled counters, gauges read at scrape time, text format.

A tiny, thread-safe registry (the HTTP server's threads increment it) that renders the
Prometheus text exposition format 0.0.4: ``# HELP`` and ``# TYPE`` per family, then one
``name{label="value",...} number`` line per series. No client library is needed for this.

:class:`OracleMetrics` declares the oracle's families; every part of the oracle takes one
instance (the signer counts decisions, the API requests and signatures, peers gathering,
the settlement loop submissions).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["CONTENT_TYPE", "Counter", "GaugeFamily", "OracleMetrics", "Registry"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[dict[str, str], float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items())) + "}"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass
class Counter:
    """A counter family: monotonically increasing values per label set."""

    name: str
    help: str
    labelnames: tuple[str, ...]
    _values: dict[tuple[str, ...], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {sorted(self.labelnames)}")
        if amount < 0:
            raise ValueError(f"{self.name}: a counter only goes up")
        key = tuple(str(labels[n]) for n in self.labelnames)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: object) -> float:
        key = tuple(str(labels[n]) for n in self.labelnames)
        with self._lock:
            return self._values.get(key, 0.0)

    def samples(self) -> list[Sample]:
        with self._lock:
            items = sorted(self._values.items())
        return [(dict(zip(self.labelnames, key, strict=True)), value) for key, value in items]


@dataclass
class GaugeFamily:
    """A gauge family whose samples a callback reads at scrape time (e.g. counts from the store)."""

    name: str
    help: str
    read: Callable[[], Iterable[Sample]]

    def samples(self) -> list[Sample]:
        return list(self.read())


class Registry:
    """Holds metric families in registration order and renders them."""

    def __init__(self) -> None:
        self._families: list[tuple[str, Counter | GaugeFamily]] = []
        self._lock = threading.Lock()

    def counter(self, name: str, help: str, labelnames: Iterable[str] = ()) -> Counter:
        family = Counter(name, help, tuple(labelnames))
        self._register("counter", family)
        return family

    def gauge(self, name: str, help: str, read: Callable[[], Iterable[Sample]]) -> GaugeFamily:
        family = GaugeFamily(name, help, read)
        self._register("gauge", family)
        return family

    def has(self, name: str) -> bool:
        with self._lock:
            return any(f.name == name for _, f in self._families)

    def _register(self, kind: str, family: Counter | GaugeFamily) -> None:
        with self._lock:
            if any(f.name == family.name for _, f in self._families):
                raise ValueError(f"metric {family.name} is already registered")
            self._families.append((kind, family))

    def render(self) -> str:
        """The Prometheus text format of every family."""
        with self._lock:
            families = list(self._families)
        lines: list[str] = []
        for kind, family in families:
            lines.append(f"# HELP {family.name} {_escape(family.help)}")
            lines.append(f"# TYPE {family.name} {kind}")
            for labels, value in family.samples():
                lines.append(f"{family.name}{_labels(labels)} {_number(value)}")
        return "\n".join(lines) + "\n"


class OracleMetrics(Registry):
    """The oracle's metric families (store-backed gauges are added by the API)."""

    def __init__(self) -> None:
        super().__init__()
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
