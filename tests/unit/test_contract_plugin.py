"""The contract plugin itself: it passes a correct storage and catches broken ones.

Each test writes a small project (a conftest.py and a test module, as a user of
tokenstore_sql.testing would) and runs pytest on it with ``pytester``.
"""

from __future__ import annotations

import re
import textwrap

import pytest

from tests.support import REPO_ROOT

pytest_plugins = ["pytester"]

# No server needed; the mark puts these tests in the SQLite tier, which CI also runs on
# globus-sdk 3.x.
pytestmark = pytest.mark.sqlite

# A correct TokenStorage over a dict shared by every storage of one factory, and broken
# variants, each wrong in one way.
STORAGES = """
try:
    from globus_sdk.token_storage import TokenStorage, TokenStorageData
except ImportError:  # globus-sdk 3.x
    from globus_sdk.tokenstorage import TokenStorage, TokenStorageData


class DictTokenStorage(TokenStorage):
    def __init__(self, store, namespace):
        super().__init__(namespace=namespace)
        self.store = store
        self.closed = False

    def _space(self):
        return self.store.setdefault(self.namespace, {})

    def store_token_data_by_resource_server(self, data):
        for resource_server, token_data in data.items():
            self._space()[resource_server] = token_data.to_dict()

    def get_token_data_by_resource_server(self):
        return {rs: TokenStorageData.from_dict(d) for rs, d in self._space().items()}

    def remove_token_data(self, resource_server):
        return self._space().pop(resource_server, None) is not None

    def iter_namespaces(self):
        return iter([name for name, space in self.store.items() if space])

    def close(self):
        self.closed = True


class RemoveAlwaysTrue(DictTokenStorage):
    def remove_token_data(self, resource_server):
        super().remove_token_data(resource_server)
        return True


class LeaksAcrossNamespaces(DictTokenStorage):
    def _space(self):
        return self.store.setdefault("one namespace for all", {})


class FoldsCase(DictTokenStorage):
    def store_token_data_by_resource_server(self, data):
        for resource_server, token_data in data.items():
            self._space()[resource_server.lower()] = token_data.to_dict()

    def get_token_data_by_resource_server(self):
        return {rs: TokenStorageData.from_dict(d) for rs, d in self._space().items()}

    def get_token_data(self, resource_server):
        found = self._space().get(resource_server.lower())
        return None if found is None else TokenStorageData.from_dict(found)

    def remove_token_data(self, resource_server):
        return self._space().pop(resource_server.lower(), None) is not None


class Int32Expiry(DictTokenStorage):
    def store_token_data_by_resource_server(self, data):
        super().store_token_data_by_resource_server(data)
        for stored in self._space().values():
            stored["expires_at_seconds"] = (stored["expires_at_seconds"] + 2**31) % 2**32 - 2**31


class CachedPerObject(DictTokenStorage):
    def __init__(self, store, namespace):
        super().__init__({}, namespace)


class ListsNamespacesPerRow(DictTokenStorage):
    def iter_namespaces(self):
        return iter([name for name, space in self.store.items() for _ in space])
"""

CONFTEST = """
import pytest

import contract_storages

pytest_plugins = ["tokenstore_sql.testing"]


@pytest.fixture
def storage_class():
    return contract_storages.DictTokenStorage


@pytest.fixture
def token_storage_factory(storage_class):
    store, made = {}, []

    def make(namespace):
        made.append(storage_class(store, namespace))
        return made[-1]

    yield make
    assert made, "the contract made no storage"
    assert all(storage.closed for storage in made), "the plugin left a storage open"
"""


def contract_module(storage_class: str, *, preserves_extra: bool = False) -> str:
    """A test module that runs the contract on one of the storages above."""
    return textwrap.dedent(
        f"""
        import pytest

        import contract_storages
        from tokenstore_sql.testing import TokenStorageContract


        class TestStorage(TokenStorageContract):
            preserves_extra = {preserves_extra}

            @pytest.fixture
            def storage_class(self):
                return contract_storages.{storage_class}
        """
    )


def failed_tests(pytester: pytest.Pytester, storage_class: str, **options: bool) -> set[str]:
    """Run the contract on a storage class; return the names of the failed tests."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        contract_storages=STORAGES, test_storage=contract_module(storage_class, **options)
    )
    pytester.syspathinsert()
    recorder = pytester.inline_run("-p", "no:cacheprovider")
    passed, _, failed = recorder.listoutcomes()
    assert passed, "a broken storage should still pass the tests it does not break"
    assert not [report for report in recorder.getreports("pytest_collectreport") if report.failed]
    return {report.nodeid.partition("::TestStorage::")[2] for report in failed}


def test_a_correct_storage_passes_every_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        contract_storages=STORAGES, test_storage=contract_module("DictTokenStorage")
    )
    pytester.syspathinsert()

    recorder = pytester.inline_run("-p", "no:cacheprovider")

    passed, skipped, failed = recorder.listoutcomes()
    assert failed == []
    assert len(passed) > 50
    assert [r.nodeid.rpartition("::")[2] for r in skipped] == ["test_extra_round_trips"]
    assert recorder.getreports("pytest_runtest_logreport")  # teardown asserts ran too
    assert not [r for r in recorder.getreports("pytest_runtest_logreport") if r.failed]


@pytest.mark.parametrize(
    ("storage_class", "caught", "spared"),
    [
        (
            "RemoveAlwaysTrue",
            {
                "test_remove_returns_false_when_nothing_was_stored",
                "test_remove_returns_true_then_false",
                "test_namespaces_are_isolated",
                "test_resource_servers_that_differ_in_any_way_are_different[case]",
            },
            "test_get_returns_what_was_stored",
        ),
        (
            "LeaksAcrossNamespaces",
            {
                "test_namespaces_are_isolated",
                "test_namespaces_that_differ_in_any_way_are_different[case]",
                "test_odd_namespaces_work[url]",
            },
            "test_get_returns_what_was_stored",
        ),
    ],
    ids=["remove-always-true", "leaks-across-namespaces"],
)
def test_a_broken_storage_fails_the_tests_about_what_it_breaks(
    pytester: pytest.Pytester, storage_class: str, caught: set[str], spared: str
) -> None:
    failed = failed_tests(pytester, storage_class)

    assert caught <= failed
    assert spared not in failed


def test_a_storage_that_folds_case_fails(pytester: pytest.Pytester) -> None:
    failed = failed_tests(pytester, "FoldsCase")

    assert "test_resource_servers_that_differ_in_any_way_are_different[case]" in failed
    assert "test_odd_resource_servers_round_trip[quotes-and-sql]" in failed  # "DROP TABLE"
    assert (
        "test_resource_servers_that_differ_in_any_way_are_different[trailing-space]" not in failed
    )


def test_a_storage_that_cuts_expiry_to_32_bits_fails_after_2038(pytester: pytest.Pytester) -> None:
    failed = failed_tests(pytester, "Int32Expiry")

    assert {"test_every_field_round_trips[y2038]", "test_every_field_round_trips[far]"} <= failed
    assert "test_every_field_round_trips[y2038-1]" not in failed


def test_a_storage_that_keeps_data_per_object_fails(pytester: pytest.Pytester) -> None:
    failed = failed_tests(pytester, "CachedPerObject")

    assert failed == {
        "test_storages_on_one_namespace_share_their_data",
        "test_iter_namespaces_lists_each_namespace_once",
    }


def test_iter_namespaces_is_checked_where_present(pytester: pytest.Pytester) -> None:
    assert failed_tests(pytester, "ListsNamespacesPerRow") == {
        "test_iter_namespaces_lists_each_namespace_once"
    }


def test_a_storage_claiming_to_preserve_extra_is_held_to_it(pytester: pytest.Pytester) -> None:
    # DictTokenStorage stores to_dict() without extra, as globus-sdk's storages do
    assert failed_tests(pytester, "DictTokenStorage", preserves_extra=True) == {
        "test_extra_round_trips"
    }


def test_a_failure_shows_what_differed(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        contract_storages=STORAGES, test_storage=contract_module("RemoveAlwaysTrue")
    )
    pytester.syspathinsert()

    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "nothing_was_stored and remove")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*assert True is False*", "*where True = *remove_token_data*"])


def test_without_a_factory_the_tests_say_what_to_define(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["tokenstore_sql.testing"]')
    pytester.makepyfile(
        test_storage="""
        from tokenstore_sql.testing import TokenStorageContract

        class TestStorage(TokenStorageContract):
            pass
        """
    )

    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "get_returns_what_was_stored")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*define a fixture named token_storage_factory*"])


def test_only_a_module_that_subclasses_the_contract_runs_it(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        contract_storages=STORAGES,
        test_storage=contract_module("DictTokenStorage"),
        test_other="""
        from tokenstore_sql.testing import TokenStorageContract  # imported, not subclassed

        def test_something_else():
            pass
        """,
    )
    pytester.syspathinsert()

    items, _ = pytester.inline_genitems("-p", "no:cacheprovider")

    by_module: dict[str, list[str]] = {}
    for item in items:
        module, _, name = item.nodeid.partition("::")
        by_module.setdefault(module, []).append(name)
    assert by_module.keys() == {"test_other.py", "test_storage.py"}
    assert by_module["test_other.py"] == ["test_something_else"]
    assert all(name.startswith("TestStorage::") for name in by_module["test_storage.py"])


def _readme_snippets() -> list[str]:
    guide = REPO_ROOT / "docs" / "guides" / "testing-your-storage.md"
    return re.findall(r"```python\n(.*?)```", guide.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_readme_setup_runs_in_a_fresh_process(pytester: pytest.Pytester) -> None:
    """The guide's conftest.py and test module, on globus-sdk's SQLite storage."""
    conftest, module = _readme_snippets()
    pytester.makeconftest(
        "try:\n"
        "    from globus_sdk.token_storage import SQLiteTokenStorage as MyTokenStorage\n"
        "except ImportError:  # globus-sdk 3.x\n"
        "    from globus_sdk.tokenstorage import SQLiteTokenStorage as MyTokenStorage\n" + conftest
    )
    pytester.makepyfile(test_mine=module)

    # -W error: a warning (that the contract's asserts cannot be rewritten, say) fails it
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")

    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == outcomes.get("errors", 0) == 0
    assert outcomes["passed"] > 50
    assert outcomes["skipped"] == 1  # test_extra_round_trips: preserves_extra = False
