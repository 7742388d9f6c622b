"""The benchmark's SVG charts: well-formed, true to their figures, and clear without data."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from benchmarks import charts, report, summary
from benchmarks.subjects import OPERATION_LABELS, SDK_JSON, SDK_SQLITE
from benchmarks.svg import NoDataError, bar_chart, bar_panels, line_chart, nice_ticks
from tests.support import REPO_ROOT

ROOT = REPO_ROOT
SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def texts(root: ET.Element) -> list[str]:
    return [element.text or "" for element in root.iter(f"{SVG}text")]


def bars(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]


def points(root: ET.Element) -> list[ET.Element]:
    return [c for c in root.iter(f"{SVG}circle") if c.get("class") == "point"]


VALUES: dict[str, dict[str, float | None]] = {
    "ours": {"get": 40.0, "store": 420.0},
    "floor <driver> & co": {"get": 5.0, "store": 270.0},
    "theirs": {"get": 800.0, "store": None},
}


def test_a_bar_chart_is_valid_svg_with_every_label() -> None:
    root = parse(bar_chart("Latency <sqlite>", ["get", "store"], VALUES, "µs"))

    shown = texts(root)
    assert "Latency <sqlite>" in shown  # escaped in the file, intact once parsed
    assert {"get", "store", "ours", "floor <driver> & co", "theirs", "µs"} <= set(shown)
    assert "800" in shown  # each bar's figure is printed at its end
    assert "5" in shown


def test_bars_are_proportional_to_their_values_and_none_is_left_out() -> None:
    root = parse(bar_chart("t", ["get", "store"], VALUES, "µs"))

    drawn = {(b.get("data-series"), b.get("data-group")): b for b in bars(root)}
    assert set(drawn) == {
        (series, group) for series, by in VALUES.items() for group, v in by.items() if v
    }
    per_unit = {float(b.get("width", "")) / float(b.get("data-value", "")) for b in drawn.values()}
    assert max(per_unit) / min(per_unit) < 1.001  # one scale for every bar
    widest = max(float(b.get("width", "")) for b in drawn.values())
    assert widest == pytest.approx(800 * min(per_unit), rel=1e-3)
    assert widest < float(root.get("width", ""))


def test_each_panel_has_its_own_axis_and_its_bars_one_scale() -> None:
    values = {"ours": {"get": 40.0, "miss": 30.0, "store": 4000.0}, "theirs": {"store": 9000.0}}
    root = parse(bar_panels("t", {"Reads": ["get", "miss"], "Writes": ["store"]}, values, "µs"))

    per_unit: dict[str, set[float]] = {}
    for bar in bars(root):
        ratio = float(bar.get("width", "")) / float(bar.get("data-value", ""))
        per_unit.setdefault(bar.get("data-panel", ""), set()).add(ratio)
    assert sorted(per_unit) == ["Reads", "Writes"]
    for ratios in per_unit.values():
        assert max(ratios) / min(ratios) < 1.001
    # a microsecond of reading is drawn over 100 times as long as one of writing
    assert min(per_unit["Reads"]) > 100 * max(per_unit["Writes"])
    assert {"Reads", "Writes", "get", "store"} <= set(texts(root))


def test_series_keep_the_colours_asked_for() -> None:
    root = parse(
        bar_chart("t", ["get"], {"a": {"get": 1.0}, "b": {"get": 2.0}}, "µs", {"b": "#123"})
    )

    fills = {b.get("data-series"): b.get("fill") for b in bars(root)}
    assert fills["b"] == "#123"
    assert fills["a"] not in ("#123", None)


@pytest.mark.parametrize(
    ("groups", "values"),
    [([], VALUES), (["get"], {}), (["get"], {"ours": {"get": None}})],
)
def test_a_chart_without_data_says_so(groups: list[str], values: dict[str, Any]) -> None:
    with pytest.raises(NoDataError, match="no data for the chart 'empty'"):
        bar_chart("empty", groups, values, "µs")
    with pytest.raises(NoDataError, match="no data for the chart 'empty'"):
        line_chart("empty", [1, 10] if groups else [], values, "n", "µs")


def test_a_line_chart_places_x_on_a_log_axis_and_higher_values_higher() -> None:
    values = {"ours": {"1": 30.0, "10": 32.0, "100": 35.0}, "theirs": {"1": 800.0, "100": 3000.0}}
    root = parse(line_chart("scale", [1, 10, 100], values, "namespaces", "µs"))

    placed = {(p.get("data-series"), p.get("data-x")): p for p in points(root)}
    assert len(placed) == 5
    xs = [float(placed[("ours", x)].get("cx", "")) for x in ("1", "10", "100")]
    assert xs[1] - xs[0] == pytest.approx(xs[2] - xs[1], abs=0.2)  # 10 is halfway on log
    heights = sorted(placed.values(), key=lambda p: float(p.get("data-value", "")))
    ys = [float(p.get("cy", "")) for p in heights]
    assert ys == sorted(ys, reverse=True)  # SVG's y grows downwards
    assert {"1", "10", "100", "namespaces", "ours", "theirs"} <= set(texts(root))
    assert len(list(root.iter(f"{SVG}polyline"))) == 2


def test_a_log_value_axis_spaces_equal_ratios_equally() -> None:
    values = {"a": {"1": 20.0, "10": 200.0, "100": 2000.0}}
    root = parse(line_chart("t", [1, 10, 100], values, "n", "µs", log_y=True))

    ys = [float(p.get("cy", "")) for p in points(root)]
    assert ys[0] - ys[1] == pytest.approx(ys[1] - ys[2], abs=0.2)
    assert ys[0] > ys[1]
    assert {"10", "100", "1,000", "10,000"} <= set(texts(root))  # ticks at powers of ten


def test_a_log_axis_refuses_zero() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        line_chart("t", [0, 10], {"a": {"10": 1.0}}, "n", "µs")
    with pytest.raises(ValueError, match="above 0"):
        line_chart("t", [1, 10], {"a": {"10": 0.0}}, "n", "µs", log_y=True)


@pytest.mark.parametrize("largest", [0.7, 5.0, 46.0, 999.0, 1730.0, 123456.0])
def test_ticks_are_round_and_reach_past_the_largest_value(largest: float) -> None:
    ticks = nice_ticks(largest)
    step = ticks[1] - ticks[0]
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 6) in (1.0, 2.0, 5.0)
    assert ticks[0] == 0
    assert ticks[-1] >= largest > ticks[-2]


def _results(backends: list[str], scales: list[int]) -> dict[str, Any]:
    """Results as benchmarks.run writes them, with made-up medians that grow with scale."""
    rows = []
    floors = {"sqlite": "floor: sqlite3", "postgresql": "floor: psycopg"}
    for backend in backends:
        for label in (f"tokenstore-sql ({backend})", floors[backend]):
            for scale in scales:
                for n, operation in enumerate(charts.LATENCY_OPERATIONS):
                    median = (10 + n) * (1 + len(label) % 3) * (1 + scale / 1000)
                    rows.append(
                        {"label": label, "floor": floors[backend], "scale": scale}
                        | {"operation": operation, "median_us": median}
                    )
    for label in (SDK_SQLITE, SDK_JSON):
        for scale in scales:
            for operation in charts.LATENCY_OPERATIONS:
                rows.append(
                    {"label": label, "floor": "floor: sqlite3", "scale": scale}
                    | {"operation": operation, "median_us": 800.0 + scale}
                )
    return {"meta": {"backends": backends, "scales": scales}, "latency": rows}


def test_draw_writes_a_latency_chart_per_database_and_the_scale_charts(tmp_path: Path) -> None:
    results = _results(["sqlite", "postgresql"], [1, 1000])

    written = charts.draw(results, tmp_path / "charts")

    assert sorted(p.name for p in written) == [
        "latency-postgresql.svg",
        "latency-sqlite.svg",
        "scale-get_hit.svg",
        "scale-store_1.svg",
    ]
    root = parse((tmp_path / "charts" / "latency-postgresql.svg").read_text(encoding="utf-8"))
    medians: dict[tuple[str | None, str | None], float] = {
        (r["label"], OPERATION_LABELS[r["operation"]]): r["median_us"]
        for r in results["latency"]
        if r["scale"] == 1
    }
    drawn = {(b.get("data-series"), b.get("data-group")): b.get("data-value") for b in bars(root)}
    assert {s for s, _ in drawn} == {
        "tokenstore-sql (postgresql)",
        "floor: psycopg",
        SDK_SQLITE,
        SDK_JSON,
    }
    assert all(float(v or "") == medians[key] for key, v in drawn.items())
    scale = parse((tmp_path / "charts" / "scale-get_hit.svg").read_text(encoding="utf-8"))
    assert {(p.get("data-series"), p.get("data-x")) for p in points(scale)} == {
        (label, x)
        for label in (
            "tokenstore-sql (sqlite)",
            "tokenstore-sql (postgresql)",
            SDK_SQLITE,
            SDK_JSON,
        )
        for x in ("1", "1000")
    }


def test_one_scale_draws_no_scale_chart(tmp_path: Path) -> None:
    written = charts.draw(_results(["sqlite"], [1]), tmp_path)
    assert [p.name for p in written] == ["latency-sqlite.svg"]


def test_the_command_refuses_results_without_figures(tmp_path: Path) -> None:
    empty = tmp_path / "results.json"
    empty.write_text(json.dumps({"meta": {"backends": ["sqlite"], "scales": [1]}, "latency": []}))

    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.charts", str(empty), str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 1
    assert completed.stderr.strip() == "error: the results hold no latency rows: nothing to chart"
    assert not (tmp_path / "out").exists()


def test_the_summary_quotes_the_ratios_of_the_charted_figures() -> None:
    results = _results(["sqlite", "postgresql"], [1, 1000])
    results["scale"] = report.growth(results["latency"])
    results["meta"] |= {"date": "today", "machine": "m", "versions": "v"}
    results["meta"] |= {"load_at_start": 0.5, "load_at_end": 1.25}
    medians = {(r["label"], r["operation"], r["scale"]): r["median_us"] for r in results["latency"]}

    latency = summary.latency_table(results).splitlines()
    scale = summary.scale_table(results).splitlines()

    assert len(latency) == 2 + 2 * len(charts.LATENCY_OPERATIONS)
    ours = medians[("tokenstore-sql (postgresql)", "store_1", 1)]
    floor = medians[("floor: psycopg", "store_1", 1)]
    sdk, json_file = medians[(SDK_SQLITE, "store_1", 1)], medians[(SDK_JSON, "store_1", 1)]
    row = next(line for line in latency if line.startswith("| postgresql | store 1 |"))
    cells = [cell.strip() for cell in row.strip("| ").split("|")]
    assert cells[3:] == [f"{ours / floor:.2f}x", f"{ours / sdk:.2f}x", f"{ours / json_file:.2f}x"]
    small, large = medians[(SDK_JSON, "get_hit", 1)], medians[(SDK_JSON, "get_hit", 1000)]
    expected = f"| get (hit) | {SDK_JSON} | {small:,.0f} | {large:,.0f} | {large / small:.2f}x |"
    assert expected in scale
    assert summary.run_line(results).endswith("load average 0.5 at the start and 1.25 at the end.")


def test_the_committed_results_give_every_picture_and_table_the_performance_page_shows(
    tmp_path: Path,
) -> None:
    results = json.loads((ROOT / "docs" / "performance" / "results.json").read_text("utf-8"))
    page = (ROOT / "docs" / "performance" / "charts.md").read_text(encoding="utf-8")
    shown = set(re.findall(r"/_generated/charts/([\w.-]+)", page))

    drawn = {path.name for path in charts.draw(results, tmp_path)}
    tables = {"run.md", "latency.md", "scale.md"}

    assert shown == drawn | tables
    assert results["meta"]["backends"] == ["sqlite", "postgresql", "mysql"]
    assert not results["meta"]["smoke"]
    assert summary.run_line(results).startswith(f"Run of {results['meta']['date']} on ")
