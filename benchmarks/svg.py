"""A small SVG chart writer: grouped horizontal bars, and lines over a log axis.

Plain text out, nothing to install: each chart is one ``<svg>`` element whose bars and
points carry their value in a ``data-value`` attribute and a ``<title>`` (a tooltip in a
browser), so a test, or a reader of the file, can check a picture against its figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from xml.sax.saxutils import escape, quoteattr

# Colour-blind-safe (Okabe and Ito), in the order series are given.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442")
WIDTH = 760
FONT = 'font-family="sans-serif" font-size="12"'
BAR, BAR_GAP, GROUP_GAP = 13, 2, 12
LEFT, RIGHT, TOP, AXIS = 110, 70, 30, 34

Values = Mapping[str, Mapping[str, float | None]]  # series -> group (or x) -> value


class NoDataError(ValueError):
    """A chart was asked for with nothing to draw."""


def nice_ticks(largest: float, count: int = 5) -> list[float]:
    """Round tick values from 0 past ``largest``: steps of 1, 2 or 5 times a power of ten."""
    if largest <= 0:
        return [0.0, 1.0]
    rough = largest / count
    power = 10 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
    ticks = [0.0]
    while ticks[-1] < largest:
        ticks.append(ticks[-1] + step)
    return ticks


def decade_ticks(smallest: float, largest: float) -> list[float]:
    """Powers of ten from at or below ``smallest`` to at or above ``largest`` (both > 0)."""
    low, high = math.floor(math.log10(smallest)), math.ceil(math.log10(largest))
    return [10.0**power for power in range(low, max(high, low + 1) + 1)]


def number(value: float) -> str:
    """Format a figure for a label: thousands separated, one decimal below 100."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}".removesuffix(".0")


def _text(x: float, y: float, content: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{escape(content)}</text>'


def colours_of(series: Sequence[str], chosen: Mapping[str, str] | None) -> dict[str, str]:
    """Give each series its chosen colour, else the palette's next one."""
    return {
        name: (chosen or {}).get(name, PALETTE[index % len(PALETTE)])
        for index, name in enumerate(series)
    }


def _legend(colours: Mapping[str, str], y: float) -> list[str]:
    """One row of coloured squares and names, wrapping onto further rows when long."""
    out, x = [], float(LEFT)
    for name, colour in colours.items():
        width = 24 + 7 * len(name)
        if x + width > WIDTH - 10 and x > LEFT:
            x, y = float(LEFT), y + 18
        out.append(f'<rect x="{x:.1f}" y="{y - 10:.1f}" width="12" height="12" fill="{colour}"/>')
        out.append(_text(x + 17, y, name, extra=' class="legend"'))
        x += width
    return out


def _legend_height(series: Sequence[str]) -> float:
    rows, x = 1, float(LEFT)
    for name in series:
        width = 24 + 7 * len(name)
        if x + width > WIDTH - 10 and x > LEFT:
            rows, x = rows + 1, float(LEFT)
        x += width
    return 18.0 * rows


def _document(height: float, title: str, body: list[str]) -> str:
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
            f'viewBox="0 0 {WIDTH} {height:.0f}" {FONT} role="img">',
            f"<title>{escape(title)}</title>",
            f'<rect width="{WIDTH}" height="{height:.0f}" fill="white"/>',
            _text(WIDTH / 2, 18, title, "middle", ' font-size="14" font-weight="bold"'),
            *body,
            "</svg>",
            "",
        ]
    )


def _present(values: Values) -> list[float]:
    return [v for by_key in values.values() for v in by_key.values() if v is not None]


def bar_chart(
    title: str,
    groups: Sequence[str],
    values: Values,
    unit: str,
    colours: Mapping[str, str] | None = None,
) -> str:
    """Draw one bar per series in each group, all on one linear axis from zero.

    :param groups: the groups top to bottom (e.g. operations)
    :param values: per series (in legend order), per group, the value; None or absent
        leaves that bar out
    :param colours: a colour per series, where one is wanted across charts
    :raises NoDataError: when there is no value to draw
    """
    return bar_panels(title, {"": groups}, values, unit, colours)


def bar_panels(
    title: str,
    panels: Mapping[str, Sequence[str]],
    values: Values,
    unit: str,
    colours: Mapping[str, str] | None = None,
) -> str:
    """Draw bar charts stacked under one title and legend, each panel on its own axis.

    Panels keep figures of different sizes apart (reads in microseconds, durable
    writes in milliseconds), which one shared axis would flatten.

    :param panels: per panel name (shown above it; may be empty), its groups
    :raises NoDataError: when there is no value to draw
    """
    if not _present(values) or not any(panels.values()):
        raise NoDataError(f"no data for the chart {title!r}")
    series = list(values)
    colour_of = colours_of(series, colours)
    legend_top = TOP + 6
    body = _legend(colour_of, legend_top + 10)
    top = legend_top + _legend_height(series) + 4
    for name, groups in panels.items():
        in_panel = {s: {g: values[s].get(g) for g in groups} for s in series}
        if not _present(in_panel):
            continue
        if name:
            top += 16
            body.append(_text(LEFT, top, name, extra=' font-weight="bold"'))
            top += 6
        lines, top = _bar_panel(name, groups, in_panel, unit, colour_of, top)
        body += lines
    return _document(top + 6, title, body)


def _bar_panel(
    panel: str,
    groups: Sequence[str],
    values: Values,
    unit: str,
    colour_of: Mapping[str, str],
    plot_top: float,
) -> tuple[list[str], float]:
    """Draw one panel of bars from ``plot_top`` down; return it and where it ends."""
    series = list(values)
    group_height = len(series) * (BAR + BAR_GAP) + GROUP_GAP
    axis_y = plot_top + len(groups) * group_height
    ticks = nice_ticks(max(_present(values)))
    span = WIDTH - LEFT - RIGHT
    scale = span / ticks[-1]
    body = []
    for tick in ticks:
        x = LEFT + tick * scale
        body.append(
            f'<line x1="{x:.1f}" y1="{plot_top:.1f}" x2="{x:.1f}" y2="{axis_y:.1f}" stroke="#ddd"/>'
        )
        body.append(_text(x, axis_y + 14, number(tick), "middle"))
    body.append(_text(LEFT + span / 2, axis_y + 30, unit, "middle"))
    for g, group in enumerate(groups):
        top = plot_top + g * group_height + GROUP_GAP / 2
        middle = top + len(series) * (BAR + BAR_GAP) / 2
        body.append(_text(LEFT - 8, middle + 4, group, "end", ' class="group"'))
        for s, name in enumerate(series):
            value = values[name].get(group)
            if value is None:
                continue
            y, width = top + s * (BAR + BAR_GAP), value * scale
            tip = escape(f"{name}, {group}: {number(value)} {unit}")
            body.append(
                f'<rect class="bar" x="{LEFT}" y="{y:.1f}" width="{width:.3f}" '
                f'height="{BAR}" fill="{colour_of[name]}" data-panel={quoteattr(panel)} '
                f"data-series={quoteattr(name)} data-group={quoteattr(group)} "
                f'data-value="{value!r}"><title>{tip}</title></rect>'
            )
            label = number(value)
            body.append(_text(LEFT + width + 4, y + BAR - 2, label, extra=' font-size="10"'))
    body.append(
        f'<line x1="{LEFT}" y1="{plot_top:.1f}" x2="{LEFT}" y2="{axis_y:.1f}" stroke="#333"/>'
    )
    return body, axis_y + AXIS


def line_chart(
    title: str,
    xs: Sequence[int],
    values: Values,
    x_label: str,
    unit: str,
    colours: Mapping[str, str] | None = None,
    log_y: bool = False,
    height: int = 340,
) -> str:
    """Draw one line per series over ``xs`` placed on a log axis (each x at least 1).

    :param values: per series (in legend order), per x (as a string), the value; None
        or absent leaves that point out
    :param colours: a colour per series, where one is wanted across charts
    :param log_y: a log value axis too, when the values span several powers of ten
    :raises NoDataError: when there is no value to draw, or no x
    """
    present = _present(values)
    if not xs or not present:
        raise NoDataError(f"no data for the chart {title!r}")
    if min(xs) < 1:
        raise ValueError("a log axis needs every x to be at least 1")
    if log_y and min(present) <= 0:
        raise ValueError("a log axis needs every value to be above 0")
    series = list(values)
    colour_of = colours_of(series, colours)
    legend_top = TOP + 6
    plot_top = legend_top + _legend_height(series) + 10
    axis_y = height - AXIS - 6
    ticks = decade_ticks(min(present), max(present)) if log_y else nice_ticks(max(present))
    low, high = math.log10(min(xs)), math.log10(max(xs))
    span = WIDTH - LEFT - RIGHT

    def at_x(x: int) -> float:
        return LEFT + (span / 2 if high == low else (math.log10(x) - low) / (high - low) * span)

    def at_y(value: float) -> float:
        if log_y:
            bottom, top = math.log10(ticks[0]), math.log10(ticks[-1])
            share = (math.log10(value) - bottom) / (top - bottom)
        else:
            share = value / ticks[-1]
        return axis_y - share * (axis_y - plot_top)

    body = _legend(colour_of, legend_top + 10)
    for tick in ticks:
        y = at_y(tick)
        grid = f'x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + span}" y2="{y:.1f}"'
        body.append(f'<line {grid} stroke="#ddd"/>')
        body.append(_text(LEFT - 6, y + 4, number(tick), "end"))
    for x in xs:
        body.append(_text(at_x(x), axis_y + 14, f"{x:,}", "middle"))
    body.append(_text(LEFT + span / 2, axis_y + 30, x_label, "middle"))
    middle = (plot_top + axis_y) / 2
    body.append(_text(20, middle, unit, "middle", f' transform="rotate(-90 20 {middle:.1f})"'))
    for name in series:
        colour = colour_of[name]
        points = [(x, values[name].get(str(x))) for x in xs]
        drawn = [(at_x(x), at_y(v), x, v) for x, v in points if v is not None]
        if len(drawn) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in drawn)
            stroke = f'stroke="{colour}" stroke-width="2"'
            body.append(f'<polyline points="{path}" fill="none" {stroke}/>')
        for px, py, x, v in drawn:
            tip = escape(f"{name}, {x:,}: {number(v)} {unit}")
            body.append(
                f'<circle class="point" cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{colour}" '
                f'data-series={quoteattr(name)} data-x="{x}" data-value="{v!r}">'
                f"<title>{tip}</title></circle>"
            )
    body.append(
        f'<line x1="{LEFT}" y1="{axis_y:.1f}" x2="{LEFT + span}" y2="{axis_y:.1f}" stroke="#333"/>'
    )
    return _document(height, title, body)
