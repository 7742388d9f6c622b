"""Where each test database server comes from: ``resolve_server`` in tests/support/databases.py."""

from __future__ import annotations

import pytest

from tests.support.databases import SERVER_BACKENDS, URL_VARIABLES, resolve_server

SERVERS = pytest.mark.parametrize("backend", SERVER_BACKENDS)


class DockerProbe:
    """Stands in for the Docker check and counts how often it was asked."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.answer


@SERVERS
def test_a_url_in_the_environment_is_used_without_asking_docker(backend: str) -> None:
    url = f"{backend}://somewhere.example/db"
    docker = DockerProbe(answer=True)

    choice = resolve_server(backend, {URL_VARIABLES[backend]: f"  {url} "}, docker)

    assert choice.source == "environment"
    assert choice.url == url
    assert choice.backend == backend
    assert not choice.must_fail
    assert docker.calls == 0


@SERVERS
def test_a_blank_variable_counts_as_unset(backend: str) -> None:
    choice = resolve_server(backend, {URL_VARIABLES[backend]: "   "}, DockerProbe(answer=True))

    assert choice.source == "docker"
    assert choice.url is None


@SERVERS
def test_without_a_url_a_running_docker_engine_is_used(backend: str) -> None:
    docker = DockerProbe(answer=True)

    choice = resolve_server(backend, {"CI": "true"}, docker)

    assert choice.source == "docker"
    assert choice.url is None
    assert not choice.must_fail
    assert docker.calls == 1


@SERVERS
def test_without_url_or_docker_the_tests_skip_naming_the_variable(backend: str) -> None:
    choice = resolve_server(backend, {}, DockerProbe(answer=False))

    assert choice.source is None
    assert choice.url is None
    assert URL_VARIABLES[backend] in choice.reason
    assert backend in choice.reason
    assert choice.must_fail is False


def test_the_other_backends_variable_does_not_count() -> None:
    environ = {URL_VARIABLES["mysql"]: "mysql+pymysql://root@127.0.0.1/test"}

    choice = resolve_server("postgresql", environ, DockerProbe(answer=False))

    assert choice.source is None
    assert URL_VARIABLES["postgresql"] in choice.reason


@SERVERS
@pytest.mark.parametrize("ci", ["true", "TRUE", "1", "yes"])
def test_under_ci_a_missing_server_must_fail(backend: str, ci: str) -> None:
    choice = resolve_server(backend, {"CI": ci}, DockerProbe(answer=False))

    assert choice.source is None
    assert choice.must_fail is True
    assert URL_VARIABLES[backend] in choice.reason


@SERVERS
@pytest.mark.parametrize("ci", ["false", "False", "0", "no", ""])
def test_ci_switched_off_still_skips(backend: str, ci: str) -> None:
    choice = resolve_server(backend, {"CI": ci}, DockerProbe(answer=False))

    assert choice.source is None
    assert choice.must_fail is False
