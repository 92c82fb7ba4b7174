"""Fixtures every test folder shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from p2pbak.localgrid.grid import Grid, start_grid
from tests.support.grid import GridSpec


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
         ) -> Iterator[Grid]:
    """A real grid (coordinator + peer agents on 127.0.0.1) of the module's own, as its
    `GRID` spec asks; stopped after the module's tests (tests that SIGKILL peers must not
    disturb other modules). None of its processes may have logged a traceback."""
    spec: GridSpec = getattr(request.module, "GRID", GridSpec())
    g = start_grid(tmp_path_factory.mktemp("grid"), spec.peers, heartbeat=spec.heartbeat,
                   serve_args=spec.serve_args)
    try:
        yield g
    finally:
        g.stop()
    for proc in g.processes():
        if spec.clean_exit:
            assert proc.popen.returncode == 0, proc.output()
        assert "Traceback" not in proc.output(), f"{proc.name} logged a traceback"
