"""The benchmark's smoke mode runs end to end on SQLite and writes complete results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = {"get_hit", "get_miss", "get_all", "store_1", "store_3", "remove", "construct"}
STORAGES = {
    "tokenstore-sql (sqlite)",
    "floor: sqlite3",
    "globus-sdk SQLiteTokenStorage",
    "globus-sdk JSONTokenStorage",
    "globus-sdk MemoryTokenStorage",
}
NO_CONSTRUCT = {"floor: sqlite3", "globus-sdk MemoryTokenStorage"}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    output = tmp_path_factory.mktemp("bench")
    environ = {
        key: value for key, value in os.environ.items() if not key.startswith("TOKENSTORE_SQL_")
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--smoke",
            "--backends",
            "sqlite,postgresql",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (output / "results.md").read_text(encoding="utf-8").startswith("Run of ")
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
    assert results["meta"]["backends"] == ["sqlite"]
    assert results["meta"]["skipped"] == {
        "postgresql": "TOKENSTORE_SQL_BENCH_POSTGRESQL_URL is not set"
    }
    assert all(check["met"] in (True, False, None) for check in results["targets"])
    assert any(check["met"] is not None for check in results["targets"])
