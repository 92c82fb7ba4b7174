"""Fixtures every test folder shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from p2pbak.localgrid.grid import Grid, start_grid
from tests.support import postgres
from tests.support.grid import GridSpec
from tests.support.postgres import Backend, Server, bin_dir, start_server


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
         ) -> Iterator[Grid]:
    """A real grid (coordinator + peer agents on 127.0.0.1) of the module's own, as its
    `GRID` spec asks; stopped after the module's tests (tests that SIGKILL peers must not
    disturb other modules). None of its processes may have logged a traceback."""
    spec: GridSpec = getattr(request.module, "GRID", GridSpec())
    db = request.getfixturevalue("postgres_server").new_database() if spec.postgres else None
    g = start_grid(tmp_path_factory.mktemp("grid"), spec.peers, heartbeat=spec.heartbeat,
                   serve_args=spec.serve_options(), db=db, coordinators=spec.coordinators)
    try:
        yield g
    finally:
        g.stop()
    for proc in g.processes():
        if spec.clean_exit:
            assert proc.popen.returncode == 0, proc.output()
        assert "Traceback" not in proc.output(), f"{proc.name} logged a traceback"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server]:
    """One throwaway PostgreSQL server for the session (per xdist worker)."""
    binaries = bin_dir()
    if binaries is None:
        pytest.skip("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin "
                    "(apt-get install postgresql; .ci/run installs it)")
    server = start_server(binaries)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Runs the test once per database backend; `tests.support.postgres.CURRENT` (and the
    value) say which, and hand out fresh databases of it."""
    server = request.getfixturevalue("postgres_server") if request.param == "postgresql" \
        else None
    backend = Backend(request.param, server)
    postgres.CURRENT = backend
    try:
        yield backend
    finally:
        postgres.CURRENT = Backend("sqlite")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_backend(request: pytest.FixtureRequest) -> Backend:
    """`db_backend` for module-scoped fixtures (one server per module and backend)."""
    server = request.getfixturevalue("postgres_server") if request.param == "postgresql" \
        else None
    return Backend(request.param, server)
