"""A provider's measured throughput per hardware report against its class floor, as inline SVG
drawn on the server (no JavaScript, nothing fetched).

    throughput_chart([ThroughputPoint(...), ...])    -> Markup("<svg ...>...</svg>")

One bar per report, oldest on the left: its height is the throughput the committee signed per
GPU (measured / gpu_count), green when the report verified the claim, red when it rejected it; a
line across each bar marks the floor per GPU of the class that report measured (a class can
change between reports). Each bar's tooltip (``<title>``) gives the exact numbers. The SVG
scales to its container's width; colours come from the stylesheet's classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from gpumarket.dashboard import units

__all__ = ["MAX_BARS", "ThroughputPoint", "throughput_chart"]

MAX_BARS = 40  # the newest reports shown; older ones are in the table below the chart
# The drawing's own units (the SVG scales to its container): a fixed width, so one bar or forty
# are drawn at the same scale, and a slot per bar of at most _MAX_SLOT.
_WIDTH = 600
_HEIGHT = 200
_TOP = 20
_BOTTOM = 24
_LEFT = 10
_MAX_SLOT = 60


@dataclass(frozen=True)
class ThroughputPoint:
    """One hardware report: what it measured for how many GPUs, and its class's floor per GPU."""

    block: int
    timestamp: int
    measured_gops: int
    gpu_count: int
    floor_per_gpu: int
    verified: bool


def throughput_chart(points: Sequence[ThroughputPoint]) -> Markup:
    """The chart of the newest ``MAX_BARS`` points; a short note when there are none."""
    if not points:
        return Markup('<p class="empty">No hardware report yet.</p>')
    shown = list(points)[-MAX_BARS:]
    per_gpu = [point.measured_gops / max(point.gpu_count, 1) for point in shown]
    top = max([*per_gpu, *(point.floor_per_gpu for point in shown)]) * 1.15 or 1.0
    plot = _HEIGHT - _TOP - _BOTTOM
    slot = min(_MAX_SLOT, (_WIDTH - 2 * _LEFT) / len(shown))
    bar = slot * 0.6

    def y(value: float) -> float:
        return _TOP + plot * (1 - value / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="measured throughput per GPU of {len(shown)} hardware reports against the class floor">',
        f'<line class="axis" x1="{_LEFT}" y1="{y(0):.1f}" x2="{_WIDTH - _LEFT}" y2="{y(0):.1f}"/>',
    ]
    for i, (point, value) in enumerate(zip(shown, per_gpu, strict=True)):
        x = _LEFT + i * slot + (slot - bar) / 2
        verdict = "verified" if point.verified else "rejected"
        title = escape(
            f"block {point.block}, {units.utc(point.timestamp)}: {verdict}; measured "
            f"{units.gops(point.measured_gops)} for {point.gpu_count} GPU(s), "
            f"floor {units.gops(point.floor_per_gpu)} per GPU"
        )
        parts.append(
            f'<g class="report {verdict}"><title>{title}</title>'
            f'<rect x="{x:.1f}" y="{y(value):.1f}" width="{bar:.1f}" height="{y(0) - y(value):.1f}"/>'
            f'<line class="floor" x1="{x - 3:.1f}" y1="{y(point.floor_per_gpu):.1f}" '
            f'x2="{x + bar + 3:.1f}" y2="{y(point.floor_per_gpu):.1f}"/></g>'
        )
    parts.append(
        f'<text class="label" x="{_LEFT}" y="{_TOP - 4}">GOPS per GPU; dashed: the class floor</text>'
        f'<text class="label" x="{_LEFT}" y="{_HEIGHT - 6}">older → newer (hover a bar for its numbers)</text>'
        "</svg>"
    )
    return Markup("".join(parts))
