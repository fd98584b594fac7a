"""Small inline SVG charts, drawn on the server: no chart library, no script, styled by console.css."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

__all__ = ["sparkline"]

_WIDTH = 180
_HEIGHT = 36


def sparkline(label: str, *lines: tuple[Sequence[float | None], str], top: float | None = None) -> Markup:
    """One small chart of one or more series (values, CSS class) sharing the y scale from 0 to `top` (or their max).

    The x axis is the series' length; None marks a time with no data (not drawn).
    """
    peak = top if top is not None else max((v for values, _ in lines for v in values if v is not None), default=0.0)
    peak = peak or 1.0
    paths = []
    for values, css in lines:
        if len(values) < 2:
            continue
        dx = _WIDTH / (len(values) - 1)
        points = " ".join(
            f"{i * dx:.1f},{_HEIGHT - 1 - min(v, peak) / peak * (_HEIGHT - 2):.1f}"
            for i, v in enumerate(values)
            if v is not None
        )
        if points.count(" ") >= 1:
            paths.append(f'<polyline class="{escape(css)}" points="{points}"/>')
    return Markup(
        f'<svg class="spark" viewBox="0 0 {_WIDTH} {_HEIGHT}" width="{_WIDTH}" height="{_HEIGHT}" '
        f'role="img" aria-label="{escape(label)}"><line class="axis" x1="0" y1="{_HEIGHT - 0.5}" '
        f'x2="{_WIDTH}" y2="{_HEIGHT - 0.5}"/>{"".join(paths)}</svg>'
    )
