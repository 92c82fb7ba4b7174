import subprocess
import sys

from p2pbak import __version__


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "p2pbak", *args], capture_output=True,
                          text=True, timeout=60)


def test_version_prints_package_version() -> None:
    r = run("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"p2pbak {__version__}"


def test_help_lists_usage() -> None:
    r = run("--help")
    assert r.returncode == 0
    assert "Usage" in r.stdout


def test_unknown_command_is_usage_error_without_traceback() -> None:
    r = run("no-such-command")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr


def test_long_error_stays_on_one_line() -> None:
    r = run("restore", "latest", "--target", "/tmp/x", "--config", "/nonexistent/" + "d" * 120)
    errors = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 10
    assert len(errors) == 1 and errors[0].startswith("p2pbak: error: ")
