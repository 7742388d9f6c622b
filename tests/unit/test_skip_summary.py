"""A run without database servers says in one line what it skipped and why."""

from __future__ import annotations

import pytest

from tests.support import REPO_ROOT

pytest_plugins = ["pytester"]

PROJECT = """
import pytest

from tests.support.databases import no_server_reason


@pytest.mark.parametrize("backend", ["postgresql", "mysql", "postgresql"])
@pytest.mark.parametrize("n", range(4))
def test_needs_a_server(backend, n):
    pytest.skip(no_server_reason(backend))


def test_skips_for_its_own_reason():
    pytest.skip("a reason of its own")


def test_runs():
    assert True
"""


@pytest.mark.parametrize("workers", ["0", "2"])
def test_no_server_skips_are_one_line_and_other_skips_stay_listed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: str
) -> None:
    pytester.makeconftest('pytest_plugins = ["tests.support.skips"]')
    pytester.makepyfile(test_project=PROJECT)
    if workers == "0":
        result = pytester.runpytest_inprocess("-ra", "-p", "no:xdist", "-p", "no:cacheprovider")
    else:  # the reports come back from the workers serialized
        monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
        result = pytester.runpytest_subprocess("-ra", "-n", workers, "-p", "no:cacheprovider")

    result.assert_outcomes(passed=1, skipped=13)
    lines = result.outlines
    assert [line for line in lines if "server" in line and "SKIPPED" in line] == [
        "SKIPPED [12] no database server (mysql 4, postgresql 8): set "
        "TOKENSTORE_SQL_TEST_MYSQL_URL and TOKENSTORE_SQL_TEST_POSTGRESQL_URL, "
        "or start a Docker engine for testcontainers"
    ]
    assert any(line.endswith("a reason of its own") for line in lines)
    assert "1 passed, 13 skipped" in lines[-1]  # still counted as skipped
