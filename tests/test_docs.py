"""docs/json.md, the man pages and contrib/ against the code they document."""

from __future__ import annotations

import ast
import configparser
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from p2pbak import manpages
from p2pbak.config import Config, Supply, save
from p2pbak.errors import ExitCode
from p2pbak.store.machinelock import parse_duration

ROOT = Path(__file__).resolve().parents[1]
JSON_MD = (ROOT / "docs" / "json.md").read_text(encoding="utf-8")
CONTRIB = ROOT / "contrib"


def documented(name: str) -> bool:
    return f"`{name}`" in JSON_MD


# -- exit codes, environment, config keys ---------------------------------------------------

def test_every_exit_code_is_in_json_md_and_the_main_man_page() -> None:
    page = (ROOT / "man" / "p2pbak.1").read_text(encoding="ascii")
    exit_section = page.split(".SH EXIT STATUS", 1)[-1].split("\n.SH ", 1)[0]
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \| {code.name} \|", JSON_MD, re.M), \
            f"exit code {int(code)} ({code.name}) is missing from the table in docs/json.md"
        assert f"\\fB{int(code)}\\fR" in exit_section, \
            f"exit code {int(code)} is missing from man/p2pbak.1: python scripts/gen_man.py"


def env_vars_in_code() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "p2pbak").rglob("*.py"):
        found |= set(re.findall(r"\bP2PBAK_[A-Z][A-Z_]*\b", path.read_text(encoding="utf-8")))
    return found


def test_every_environment_variable_is_documented() -> None:
    names = env_vars_in_code()
    assert {"P2PBAK_CONFIG", "P2PBAK_PASSWORD_FILE", "P2PBAK_DEBUG"} <= names
    common = tomllib.loads((ROOT / "man" / "sections" / "common.toml").read_text())
    for name in sorted(names):
        assert documented(name), f"{name} is read by p2pbak but not in docs/json.md"
        assert name in common["environment"], \
            f"{name} is read by p2pbak but not under [environment] in man/sections/common.toml"


def test_every_config_key_is_documented(tmp_path: Path) -> None:
    cfg = Config(path=tmp_path / "config.toml", coordinator="https://c", user="u",
                 machine_id="m", secret="s", ticket_key="t", cache_dir=tmp_path / "c",
                 supply=Supply(1, 2, 3), peer_url="http://p")
    save(cfg)
    raw = tomllib.loads(cfg.path.read_text())
    keys = [f"{k}.{sub}" if isinstance(v, dict) else k
            for k, v in raw.items() for sub in (v if isinstance(v, dict) else [None])]
    assert "supply.space" in keys and "coordinator" in keys
    for key in keys:
        assert documented(key), f"config key {key} is not in docs/json.md"


# -- message types and fields the command modules print -------------------------------------

def emitted() -> list[tuple[str, str, list[str]]]:
    """(module, message_type, literal field names) of every Reporter call in p2pbak/commands."""
    calls = []
    for path in sorted((ROOT / "p2pbak" / "commands").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            kind = node.func.attr
            fields = [k.arg for k in node.keywords if k.arg is not None]
            if kind == "emit" and node.args and isinstance(node.args[0], ast.Constant):
                calls.append((path.stem, str(node.args[0].value), fields))
            elif kind in ("status", "summary") and (node.keywords or node.args):
                calls.append((path.stem, kind, fields))
    return calls


def test_every_message_type_and_field_printed_is_documented() -> None:
    calls = emitted()
    assert ("backup", "summary", ["dry_run"]) in calls  # the scan sees the real modules
    for module, kind, fields in calls:
        assert documented(kind), f"p2pbak/commands/{module}.py prints message_type {kind!r}, " \
            "which docs/json.md does not describe"
        for field in fields:
            assert documented(field), f"p2pbak/commands/{module}.py prints {kind} field " \
                f"{field!r}, which docs/json.md does not describe"


def _keys(line: dict[str, Any]) -> set[str]:
    """A JSON line's keys, and those of nested objects (not maps keyed by name)."""
    keys = set(line)
    for key, value in line.items():
        if isinstance(value, dict) and key != "fragments_per_peer":
            keys |= _keys(value)
    return keys


def _json_lines(r: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert r.returncode == 0, r.stderr
    return [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "p2pbak", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})}, cwd=ROOT)


@pytest.mark.slow
def test_json_lines_of_real_runs_are_documented(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("hello\n")
    (src / "sub" / "b.bin").write_bytes(os.urandom(50_000))
    (src / "link").symlink_to("a.txt")
    demo = _json_lines(_cli("demo", "--json", "--peers", "3", "--path", str(src), "--keep"))
    kept = demo[-1]
    pids = [int(p) for p in re.findall(r"\d+", kept["stop_command"].split("&&")[0])]
    env = {"P2PBAK_CONFIG": kept["config"], "P2PBAK_PASSWORD_FILE": kept["password_file"]}
    try:
        lines = demo
        for args in (["backup", str(src)], ["snapshots"], ["ls", "latest"],
                     ["restore", "latest", "--target", str(tmp_path / "r")], ["status"],
                     ["supply", "set", "--space", "1GB"], ["supply", "show", "--prices"],
                     ["market", "prices"], ["check"],
                     ["forget", "--keep-last", "1", "--dry-run"], ["prune", "--dry-run"],
                     ["admin", "audit", "--db", f"{kept['root']}/coordinator/coordinator.db"]):
            lines += _json_lines(_cli(*args, "--json", env=env))
    finally:
        stop_grid(pids, Path(kept["root"]))
    kinds = {ln["message_type"] for ln in lines}
    assert {"summary", "snapshot", "node", "status", "group"} <= kinds
    assert_documented(lines)


def stop_grid(pids: list[int], root: Path) -> None:
    """SIGTERM the demo's processes, wait for them to go, remove the grid's folder."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in pids:
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
    shutil.rmtree(root, ignore_errors=True)


def assert_documented(lines: list[dict[str, Any]]) -> None:
    missing = sorted({k for ln in lines for k in _keys(ln) if not documented(k)})
    assert not missing, f"fields printed with --json but not in docs/json.md: {missing}"
    kinds = sorted({ln["message_type"] for ln in lines if not documented(ln["message_type"])})
    assert not kinds, f"message types printed but not in docs/json.md: {kinds}"


# Commands that need no grid: every line they print with --json must be documented.
OFFLINE = [
    ["market", "explain"],
    ["market", "erasure", "--availability", "0.5"],
    ["market", "erasure", "--availability", "0.5", "--peers", "10"],
    ["market", "simulate", "--agents", "20", "--rounds", "5"],
    ["market", "sweep", "--trials", "1", "--factors", "2", "--agents", "10", "--rounds", "10"],
]


@pytest.mark.parametrize("args", OFFLINE, ids=" ".join)
def test_json_lines_of_offline_commands_are_documented(args: list[str]) -> None:
    r = _cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(ln) for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert lines and all("message_type" in ln for ln in lines)
    assert_documented(lines)


# -- contrib: systemd units and crontab -----------------------------------------------------

def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((CONTRIB / name).read_text(encoding="utf-8"))
    return parser


def p2pbak_argv(command_line: str) -> list[str]:
    lines = manpages.command_lines(command_line)
    assert len(lines) == 1, f"no single p2pbak command in {command_line!r}"
    return lines[0]


def check_options_exist(argv: list[str]) -> None:
    assert manpages.unknown_options(argv) == []
    path, _, rest = manpages.find_command(argv)
    shown = _cli(*path, "--help", env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert shown.returncode == 0, shown.stderr
    for word in rest:
        if word.startswith("-"):
            opt = word.split("=", 1)[0]
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", shown.stdout), \
                f"`p2pbak {' '.join(path)} --help` does not list {opt}"


def _retry_lock(argv: list[str]) -> float:
    i = argv.index("--retry-lock")
    return parse_duration(argv[i + 1])


@pytest.mark.parametrize("name", ["p2pbak-serve.service", "p2pbak-peer.service",
                                  "p2pbak-backup.service"])
def test_unit_execstart_uses_real_options(name: str) -> None:
    check_options_exist(p2pbak_argv(unit(name)["Service"]["ExecStart"]))


def test_serve_unit_is_a_hardened_system_service() -> None:
    u = unit("p2pbak-serve.service")
    svc = u["Service"]
    argv = p2pbak_argv(svc["ExecStart"])
    assert argv[0] == "serve" and "--tls-cert" in argv and "--tls-key" in argv
    assert svc["User"] not in ("", "root") and svc["StateDirectory"]
    assert "${STATE_DIRECTORY}" in svc["ExecStart"]
    assert svc["Restart"] == "on-failure"
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes")]:
        assert svc[key] == value, key
    assert u["Install"]["WantedBy"] == "multi-user.target"


def test_peer_unit_is_a_user_service() -> None:
    u = unit("p2pbak-peer.service")
    assert p2pbak_argv(u["Service"]["ExecStart"])[:2] == ["peer", "run"]
    assert "User" not in u["Service"]  # `systemctl --user` units run as their user
    assert u["Service"]["Restart"] == "on-failure"
    assert u["Install"]["WantedBy"] == "default.target"


def test_backup_timer_runs_the_backup_service_nightly() -> None:
    svc = unit("p2pbak-backup.service")["Service"]
    argv = p2pbak_argv(svc["ExecStart"])
    assert argv[0] == "backup" and "--quiet" in argv and _retry_lock(argv) >= 60
    assert svc["Type"] == "oneshot"
    assert "P2PBAK_PASSWORD_FILE=" in svc["Environment"]
    timer = unit("p2pbak-backup.timer")
    assert timer["Timer"]["Persistent"] == "true"
    assert parse_duration(timer["Timer"]["RandomizedDelaySec"]) > 0
    assert re.fullmatch(r"\*-\*-\* \d\d:\d\d:\d\d", timer["Timer"]["OnCalendar"])
    assert timer["Timer"].get("Unit", "p2pbak-backup.service") == "p2pbak-backup.service"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_crontab_example_is_a_quiet_nightly_backup() -> None:
    lines = [ln for ln in (CONTRIB / "crontab.example").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    env = dict(ln.split("=", 1) for ln in lines if re.match(r"^[A-Z][A-Z0-9_]*=", ln))
    jobs = [ln for ln in lines if not re.match(r"^[A-Z][A-Z0-9_]*=", ln)]
    assert "P2PBAK_PASSWORD_FILE" in env and "MAILTO" in env
    assert len(jobs) == 1
    fields = jobs[0].split(None, 5)
    assert fields[1].isdigit() and fields[2:5] == ["*", "*", "*"]  # once a day
    assert "%" not in fields[5]  # cron would cut the command there
    assert ">" not in fields[5], "output must reach cron mail, not be redirected"
    argv = p2pbak_argv(fields[5])
    assert argv[0] == "backup" and "--quiet" in argv and _retry_lock(argv) >= 60
    check_options_exist(argv)
    assert shlex.split(fields[5])[0].endswith("/p2pbak")  # cron's PATH is short: full path
