"""The machine lock, exercised by real competing processes."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from p2pbak.errors import ExitCode, Locked, P2pbakError
from p2pbak.store import machinelock as lock
from p2pbak.store.machinelock import LOCK_NAME, machine_lock, parse_duration, read_holder

ROOT = Path(__file__).resolve().parents[1]

# A process that takes the lock, says so, and holds it until its stdin closes.
HOLDER = """
import sys
from pathlib import Path
from p2pbak.errors import P2pbakError
from p2pbak.store.machinelock import machine_lock, parse_duration
print("trying", flush=True)
try:
    with machine_lock(Path(sys.argv[1]), retry=parse_duration(sys.argv[2])):
        print("locked", flush=True)
        sys.stdin.read()
except P2pbakError as exc:
    print(exc, file=sys.stderr)
    sys.exit(int(exc.exit_code))
"""


def holder(lock_dir: Path, retry: str = "0") -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_dir), retry], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def expect_line(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != text:
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"expected {text!r}, got {line!r}; stderr: {err}")


def locked_holder(lock_dir: Path) -> subprocess.Popen[str]:
    proc = holder(lock_dir)
    expect_line(proc, "trying")
    expect_line(proc, "locked")
    return proc


def release(proc: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = proc.communicate(input="", timeout=60)
    return proc.returncode, err


def test_second_process_fails_at_once_with_lock_code(tmp_path: Path) -> None:
    first = locked_holder(tmp_path)
    try:
        second = holder(tmp_path)
        code, err = release(second)
        assert code == ExitCode.LOCKED == 11
        assert f"pid {first.pid} on {socket.gethostname()} since " in err
        assert "another backup is running" in err and "--retry-lock" in err
    finally:
        assert release(first)[0] == 0
    assert not (tmp_path / LOCK_NAME).exists()
    third = locked_holder(tmp_path)  # free again once the first is done
    assert release(third)[0] == 0


def test_retry_waits_for_the_holder_then_runs(tmp_path: Path) -> None:
    first = locked_holder(tmp_path)
    second = holder(tmp_path, retry="5s")
    expect_line(second, "trying")
    time.sleep(0.5)
    assert second.poll() is None, "the waiting process gave up or ran while the lock was held"
    assert release(first)[0] == 0
    expect_line(second, "locked")
    assert release(second)[0] == 0


def test_retry_gives_up_with_lock_code(tmp_path: Path) -> None:
    first = locked_holder(tmp_path)
    try:
        code, err = release(holder(tmp_path, retry="1s"))
        assert code == ExitCode.LOCKED
        assert f"pid {first.pid}" in err
    finally:
        release(first)


def test_lock_of_killed_process_is_stale_and_taken(tmp_path: Path) -> None:
    first = locked_holder(tmp_path)
    first.kill()
    first.communicate(timeout=30)
    left = read_holder(tmp_path / LOCK_NAME)
    assert left is not None and left.pid == first.pid  # the file outlived its process
    second = locked_holder(tmp_path)
    try:
        now = read_holder(tmp_path / LOCK_NAME)
        assert now is not None and now.pid == second.pid
    finally:
        assert release(second)[0] == 0


def test_same_process_cannot_take_it_twice(tmp_path: Path) -> None:
    with machine_lock(tmp_path, command="backup"):
        info = json.loads((tmp_path / LOCK_NAME).read_text())
        assert info["pid"] == os.getpid() and info["command"] == "backup"
        with pytest.raises(Locked) as caught, machine_lock(tmp_path):
            pass
        assert caught.value.exit_code == ExitCode.LOCKED
    with machine_lock(tmp_path):
        pass


def test_message_names_the_holders_command_and_the_hint(tmp_path: Path) -> None:
    with (machine_lock(tmp_path, command="prune"), pytest.raises(Locked) as caught,
          machine_lock(tmp_path, hint="try later")):
        pass
    text = str(caught.value)
    assert text.startswith(f"another prune is running (pid {os.getpid()} on ")
    assert text.endswith("; try later")


def test_empty_lock_file_of_a_live_creator_is_respected(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("")  # a creator between O_EXCL and writing its record
    with pytest.raises(Locked), machine_lock(tmp_path):
        pass
    old = time.time() - 3600
    os.utime(tmp_path / LOCK_NAME, (old, old))  # ... or one that died there long ago
    with machine_lock(tmp_path):
        pass


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_record(lock_dir: Path, pid: int, host: str) -> None:
    record = {"pid": pid, "host": host, "started": time.time() - 60, "command": "backup"}
    (lock_dir / LOCK_NAME).write_text(json.dumps(record))


@pytest.fixture
def no_flock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A filesystem without flock (some network mounts): the record decides."""
    def refuse(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock.fcntl, "flock", refuse)


@pytest.mark.usefixtures("no_flock")
def test_without_flock_dead_pid_on_this_host_is_stale(tmp_path: Path) -> None:
    _write_record(tmp_path, _dead_pid(), socket.gethostname())
    with machine_lock(tmp_path):
        held = read_holder(tmp_path / LOCK_NAME)
        assert held is not None and held.pid == os.getpid()


@pytest.mark.usefixtures("no_flock")
@pytest.mark.parametrize("where", ["live pid here", "other host"])
def test_without_flock_live_or_remote_holder_is_respected(tmp_path: Path, where: str) -> None:
    if where == "live pid here":
        _write_record(tmp_path, os.getppid(), socket.gethostname())
    else:
        _write_record(tmp_path, _dead_pid(), "elsewhere.example")
    match = "elsewhere.example" if where == "other host" else f"pid {os.getppid()}"
    with pytest.raises(Locked, match=match), machine_lock(tmp_path):
        pass
    assert (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize(("text", "seconds"), [
    ("5s", 5), ("10m", 600), ("1h", 3600), ("90", 90), ("1h30m", 5400), ("250ms", 0.25),
    ("2d", 172800), (" 30M ", 1800), ("0", 0), ("1.5h", 5400),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "m", "5x", "-5s", "5 m", "1h30", "s5", "5s5s5x", "1e3"])
def test_parse_duration_rejects_with_usage_error(text: str) -> None:
    with pytest.raises(P2pbakError) as caught:
        parse_duration(text)
    assert caught.value.exit_code == ExitCode.USAGE
    assert "30s, 5m, 1h" in str(caught.value)
