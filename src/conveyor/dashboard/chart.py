"""Throughput charts drawn as inline SVG on the server: no script, no chart library."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from conveyor.metrics import MinuteStats

WIDTH = 480
HEIGHT = 96
_TOP = 14  # room for the scale label
_BOTTOM = 14  # room for the time labels


def _points(values: Sequence[int], peak: int) -> list[tuple[float, float]]:
    span = max(1, len(values) - 1)
    plot = HEIGHT - _TOP - _BOTTOM
    return [
        (round(i * WIDTH / span, 1), round(_TOP + plot - (v / peak) * plot, 1))
        for i, v in enumerate(values)
    ]


def _line(points: list[tuple[float, float]]) -> str:
    return " ".join(f"{x},{y}" for x, y in points)


def throughput_svg(minutes: Sequence[MinuteStats], label: str = "") -> Markup:
    """Completed and failed attempts per minute, oldest left, as an ``<svg>`` element."""
    completed = [m.completed for m in minutes] or [0]
    failed = [m.failed for m in minutes] or [0]
    peak = max(1, *completed, *failed)
    base = HEIGHT - _BOTTOM
    done = _points(completed, peak)
    area = f"0,{base} {_line(done)} {WIDTH},{base}"
    hours = len(minutes) / 60
    span = f"{hours:g}h ago" if hours >= 1 else f"{len(minutes)}m ago"
    title = escape(label or "throughput")
    total = sum(completed)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}"'
        f' role="img" aria-label="{title}: {total} completed">'
        f"<title>{title}: completed (filled) and failed (red) per minute</title>"
        f'<line class="axis" x1="0" y1="{base}" x2="{WIDTH}" y2="{base}"/>'
        f'<line class="grid" x1="0" y1="{_TOP}" x2="{WIDTH}" y2="{_TOP}"/>'
        f'<polygon class="completed" points="{area}"/>'
        f'<polyline class="failed" points="{_line(_points(failed, peak))}"/>'
        f'<text class="label" x="2" y="10">{peak}/min</text>'
        f'<text class="label" x="2" y="{HEIGHT - 2}">{span}</text>'
        f'<text class="label" x="{WIDTH - 2}" y="{HEIGHT - 2}" text-anchor="end">now</text>'
        "</svg>"
    )
