"""The benchmark's smoke mode runs end to end on SQLite and writes complete results.

The async rows and the refresh storm also run on their own, briefly, on every backend:
their errors are counted rather than raised, so only a test sees them.
"""

from __future__ import annotations

import asyncio
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from sqlalchemy import URL

from benchmarks import async_floor, async_rows, prepared, refresh_storm, subjects
from benchmarks.databases import Database
from benchmarks.timing import measure
from tests.support import REPO_ROOT
from tests.support.databases import SERVER_PARAMS
from tests.support.processes import run_python

# One worker runs the whole module, so that the benchmark itself (a module fixture) runs once.
pytestmark = pytest.mark.xdist_group("benchmarks")

OPERATIONS = {"get_hit", "get_miss", "get_all", "store_1", "store_3", "remove", "construct"}
STORAGES = {
    "tokenstore-sql (sqlite)",
    "floor: sqlite3",
    "globus-sdk SQLiteTokenStorage",
    "globus-sdk JSONTokenStorage",
    "globus-sdk MemoryTokenStorage",
}
NO_CONSTRUCT = {"floor: sqlite3", "globus-sdk MemoryTokenStorage"}
ASYNC_LABEL = "tokenstore-sql async (sqlite)"
ASYNC_FLOOR_LABEL = "async floor: aiosqlite"
ASYNC_OPERATIONS = {"get_hit", "get_all", "store_1", "store_3", "remove"}
STORM_CLEAN = ("invalid_grant", "errors", "held_during_auth_max", "held_during_auth_sum")
STORM_AFTER = ("missing", "logged_out", "expired_after", "leases_left")


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("bench")
    environ = {
        key: value for key, value in os.environ.items() if not key.startswith("TOKENSTORE_SQL_")
    }
    completed = run_python(
        "-m",
        "benchmarks.run",
        "--smoke",
        "--backends",
        "sqlite,postgresql",
        "--output",
        str(output),
        cwd=REPO_ROOT,
        env=environ,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (output / "results.md").read_text(encoding="utf-8").startswith("Run of ")
    return output


@pytest.fixture(scope="module")
def results(output: Path) -> dict:
    return json.loads((output / "results.json").read_text(encoding="utf-8"))


def test_every_storage_and_operation_is_measured_at_every_scale(results: dict) -> None:
    scales = results["meta"]["scales"]
    assert len(scales) >= 2
    first = {
        (row["label"], row["operation"]) for row in results["latency"] if row["scale"] == scales[0]
    }
    expected = {
        (label, operation)
        for label in STORAGES
        for operation in OPERATIONS
        if not (operation == "construct" and label in NO_CONSTRUCT)
    }
    assert first == expected
    largest = {row["label"] for row in results["latency"] if row["scale"] == scales[-1]}
    assert {"tokenstore-sql (sqlite)", "floor: sqlite3", "globus-sdk SQLiteTokenStorage"} <= largest


def test_the_run_draws_its_charts_from_its_own_figures(results: dict, output: Path) -> None:
    assert sorted(p.name for p in output.glob("*.svg")) == [
        "latency-sqlite.svg",
        "scale-get_hit.svg",
        "scale-store_1.svg",
    ]
    root = ET.fromstring((output / "latency-sqlite.svg").read_text(encoding="utf-8"))
    drawn = {
        (bar.get("data-series"), bar.get("data-group")): float(bar.get("data-value") or "nan")
        for bar in root.iter("{http://www.w3.org/2000/svg}rect")
        if bar.get("class") == "bar"
    }
    first = results["meta"]["scales"][0]
    assert drawn == {
        (row["label"], subjects.OPERATION_LABELS[row["operation"]]): row["median_us"]
        for row in results["latency"]
        if row["scale"] == first
        and row["operation"] != "construct"
        and row["label"] != "globus-sdk MemoryTokenStorage"
    }


def test_figures_are_positive_and_ratios_computed(results: dict) -> None:
    for row in results["latency"]:
        assert 0 < row["median_us"] <= row["p95_us"], row
        assert row["samples"] >= 3, row
        assert (row["vs_sdk_sqlite"] or 0) > 0, row
        if row["operation"] != "construct":
            assert (row["vs_floor"] or 0) > 0, row
    for entry in results["scale"]:
        if entry["label"] != "globus-sdk MemoryTokenStorage":
            assert (entry["growth"] or 0) > 0, entry


def test_concurrency_covers_every_mode_and_counts_errors(results: dict) -> None:
    modes = {
        (row["label"], row["mode"], row["workers"], row["sharing"])
        for row in results["concurrency"]
    }
    for label in ("tokenstore-sql (sqlite)", "globus-sdk SQLiteTokenStorage"):
        for mode, workers in (("threads", 1), ("threads", 4), ("threads", 16), ("processes", 4)):
            for sharing in ("separate", "one"):
                assert (label, mode, workers, sharing) in modes
    for row in results["concurrency"]:
        assert row["ops"] > 0, row
        assert row["ops_per_second"] > 0, row
        assert row["errors"] == sum(row["error_kinds"].values()), row
        assert row["vs_sdk_sqlite"] is not None, row


def test_import_targets_and_durability_are_reported(results: dict) -> None:
    assert results["import"]["sqlite"]["status"] in (
        "measured",
        "not measured: import not available",
    )
    if results["import"]["sqlite"]["status"] == "measured":
        assert results["import"]["sqlite"]["tokens_per_second"] > 0
    assert results["meta"]["durability"]["tokenstore-sql (sqlite)"]["synchronous"] == 2
    assert results["meta"]["construct_statements"] == {"sqlite": 0}
    # how busy the machine was, which the figures depend on (Linux has a load average)
    assert isinstance(results["meta"]["load_at_start"], float)
    assert isinstance(results["meta"]["load_at_end"], float)
    assert results["meta"]["backends"] == ["sqlite"]
    assert results["meta"]["skipped"] == {
        "postgresql": "TOKENSTORE_SQL_BENCH_POSTGRESQL_URL is not set"
    }
    assert all(check["met"] in (True, False, None) for check in results["targets"])
    assert any(check["met"] is not None for check in results["targets"])


def test_without_postgresql_the_prepared_statements_section_says_so(
    results: dict, output: Path
) -> None:
    assert results["prepared"] == {"cells": [], "get": None}
    labels = {row["label"] for row in results["latency"]}
    assert subjects.PREPARED not in labels
    markdown = (output / "results.md").read_text(encoding="utf-8")
    assert "### PostgreSQL without prepared statements" in markdown
    assert "Not measured (PostgreSQL was not part of the run)." in markdown


@pytest.mark.parametrize("backend", SERVER_PARAMS[:1])
def test_gets_with_and_without_prepared_statements_are_timed_side_by_side(
    backend: str, database_url: URL
) -> None:
    database = Database(backend, database_url)
    default, preparing = subjects.tokenstore(database), subjects.tokenstore_prepared(database)
    try:
        row = prepared.measure_get(default, preparing, calls=40, rounds=4)
        held = {}
        for subject in (default, preparing):
            with subject.extra["engine"].connect() as connection:  # the one pooled connection
                held[subject.label] = (
                    connection.exec_driver_sql("SELECT name FROM pg_prepared_statements")
                    .scalars()
                    .all()
                )
    finally:
        default.close()
        preparing.close()
    assert (row["calls"], row["rounds"], row["prepare_threshold"]) == (40, 4, 5)
    assert row["default_us"] > 0
    assert row["prepared_us"] > 0
    assert row["default_over_prepared"] == row["default_us"] / row["prepared_us"]
    # the package's engine prepares its reads by name only (tokenstore_sql.named_reads),
    # never under psycopg's numbered names; the other one lets psycopg prepare too
    assert held[default.label]
    assert all(name.startswith("tokenstore_sql_") for name in held[default.label])
    assert held[subjects.PREPARED]


def test_async_rows_sit_beside_the_sync_figures(results: dict, output: Path) -> None:
    rows = results["async"]
    assert results["meta"]["async_skipped"] == {}
    measured = {(row["label"], row["operation"]) for row in rows["latency"]}
    assert measured == {
        (label, operation)
        for label in (ASYNC_LABEL, ASYNC_FLOOR_LABEL)
        for operation in ASYNC_OPERATIONS
    }
    for row in rows["latency"]:
        assert row["scale"] == results["meta"]["scales"][0], row
        assert 0 < row["median_us"] <= row["p95_us"], row
        assert row["samples"] >= 3, row
        assert (row["vs_sync"] or 0) > 0, row
        assert (row["vs_sdk_sqlite"] or 0) > 0, row
        assert (row["vs_floor"] or 0) > 0, row
        assert (row["vs_async_floor"] or 0) > 0, row
    assert [(row["label"], row["tasks"]) for row in rows["throughput"]] == [
        (ASYNC_LABEL, 1),
        (ASYNC_LABEL, 16),
        (ASYNC_LABEL, 64),
        (ASYNC_LABEL, 256),
    ]
    for row in rows["throughput"]:
        assert row["ops"] > 0, row
        assert row["ops_per_second"] > 0, row
        assert row["errors"] == 0, row
        assert row["error_kinds"] == {}, row
        # 1 and 16 tasks have sync threads to compare with; 64 and 256 have none
        assert (row["vs_sync_threads"] is None) == (row["tasks"] > 16), row
        assert (row["vs_16_threads"] or 0) > 0, row
    checks = {check["target"]: check["met"] for check in results["targets"]}
    assert checks["sqlite async: zero errors with 1, 16, 64, 256 tasks"] is True
    assert checks["sqlite async get (hit) ≤ 1.5x async floor"] in (True, False)
    markdown = (output / "results.md").read_text(encoding="utf-8")
    assert "### Async storage (asyncio, one engine)" in markdown
    assert f"| {ASYNC_LABEL} | 256 |" in markdown


def test_async_rows_run_without_errors_on_every_backend(backend: str, database_url: URL) -> None:
    loop = asyncio.new_event_loop()
    subject = async_rows.subject(Database(backend, database_url), loop)
    floor = async_floor.subject(Database(backend, database_url), loop)
    try:
        cells = [
            async_rows.AsyncCell(item, operation)
            for item in (subject, floor)
            for operation in async_rows.OPERATIONS
        ]
        measure(cells, seconds=0.05, min_samples=2)
        # long enough for 256 tasks to get connections from a fresh pool on a busy machine
        throughput = async_rows.run_throughput([subject], seconds=1.0)
    finally:
        floor.close()
        subject.close()
        loop.close()
    assert all(0 < cell.median() <= cell.p95() for cell in cells)
    assert [row["tasks"] for row in throughput] == list(async_rows.TASKS)
    for row in throughput:
        assert row["ops"] > 0, row
        assert row["errors"] == 0, row


def _assert_clean_storm(row: dict, backend: str, users: int, processes: int) -> None:
    """One Auth call per user, nothing refused, no error, no connection held during one."""
    assert row["label"] == "refresh storm", row
    assert (row["backend"], row["users"], row["processes"]) == (backend, users, processes)
    assert row["calls"] == users * processes, row
    assert row["auth_calls"] == users, row
    assert {name: row[name] for name in STORM_CLEAN} == dict.fromkeys(STORM_CLEAN, 0), row
    assert row["error_kinds"] == {}, row
    assert row["worker_failures"] == [], row
    # exactly one caller per user called Auth, every Auth call was seen by the probe
    assert row["refreshed_calls"] == row["auth_calls_seen"] == users, row
    assert row["waited_calls"] == users * (processes - 1), row
    assert {name: row[name] for name in STORM_AFTER} == dict.fromkeys(STORM_AFTER, 0), row
    assert 0 < row["waited_p50_ms"] <= row["waited_p99_ms"], row
    assert 0 < row["refreshed_p50_ms"] <= row["refreshed_p99_ms"], row
    # a refresher waits for Auth's answer, so it takes at least Auth's delay
    assert row["refreshed_p50_ms"] >= row["auth_delay_ms"], row
    assert row["wall_seconds"] > 0, row


def test_refresh_storm_refreshes_each_user_once(results: dict, output: Path) -> None:
    (row,) = results["refresh_storm"]
    _assert_clean_storm(row, "sqlite", refresh_storm.SMOKE_USERS, refresh_storm.SMOKE_PROCESSES)
    storm_checks = [c for c in results["targets"] if "refresh storm" in c["target"]]
    assert len(storm_checks) == 4
    assert all(check["met"] is True for check in storm_checks), storm_checks
    markdown = (output / "results.md").read_text(encoding="utf-8")
    assert "### Refresh storm: every user's access token expired at once" in markdown
    assert f"| sqlite | {refresh_storm.SMOKE_USERS} | " in markdown


def test_refresh_storm_runs_without_errors_on_every_backend(
    backend: str, database_url: URL
) -> None:
    users, processes = 20, 2
    with refresh_storm.Storm(processes) as storm:
        row = storm.run(Database(backend, database_url), users)
    _assert_clean_storm(row, backend, users, processes)


def test_the_async_latency_script_prints_each_round_and_the_median(tmp_path: Path) -> None:
    # SQLite needs no server: a scratch file in the script's own temporary directory.
    completed = run_python(
        "-m",
        "benchmarks.async_latency",
        "--backend",
        "sqlite",
        "--rounds",
        "2",
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.strip().splitlines()
    rounds = [line for line in lines if line.startswith("get ")]
    assert len(rounds) == 2
    for line in rounds:
        mine, bare = (float(part.split()[0]) for part in line[4:].split("floor"))
        assert mine > 0
        assert bare > 0
    assert lines[-1].startswith("sqlite: async get / async floor, median of 2 rounds: ")
    assert lines[-1].endswith("x")
