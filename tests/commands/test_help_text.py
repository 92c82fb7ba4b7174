"""--help of every command: no `<bool>` after flags, no Python type names as placeholders."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from typer import _click as click  # typer's own click: what typer.main builds

from p2pbak.cli import command
from p2pbak.localgrid.grid import child_env

PYTHON_NAMES = re.compile(r"<bool>|<str>|<int>|<float>|<Path>|list\[|<file>|<directory>")


def every_command(cmd: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        out += every_command(sub, (*path, name))
    return out


COMMANDS = every_command(command())


def test_the_walk_sees_every_command() -> None:
    assert {("backup",), ("diff",), ("supply", "set"), ("market", "simulate")} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "p2pbak")
def test_help_has_no_bool_nor_python_type_names(path: tuple[str, ...],
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as done:
        command().main([*path, "--help"], prog_name="p2pbak")
    output = capsys.readouterr().out
    assert done.value.code in (0, None), output
    assert not PYTHON_NAMES.findall(output), output
    for line in output.splitlines():  # a flag is never followed by a placeholder
        assert not re.search(r"(--json|--quiet|--help|--dry-run)\s+"
                             r"(BOOLEAN|TEXT|INTEGER|NUMBER|PATH|FILE)\b", line), line


def test_values_keep_a_plain_placeholder() -> None:
    r = subprocess.run([sys.executable, "-m", "p2pbak", "backup", "--help"],
                       capture_output=True, text=True, env=child_env({"COLUMNS": "200"}),
                       timeout=60)
    assert re.search(r"--exclude\s+-e\s+TEXT", r.stdout), r.stdout
    assert re.search(r"--config\s+FILE", r.stdout), r.stdout
    assert "<bool>" not in r.stdout
