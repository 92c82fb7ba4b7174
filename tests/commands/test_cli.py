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


def test_init_tries_every_coordinator_given_repeated_or_comma_separated(tmp_path) -> None:
    from p2pbak.localgrid.grid import free_port

    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
    secret = tmp_path / "pass"
    secret.write_text("correct horse battery\n")
    r = run("init", "--coordinator", dead[0], "--coordinator", f"{dead[1]},{dead[2]}",
            "--user", "alice", "--config", str(tmp_path / "c.toml"),
            "--password-file", str(secret))
    errors = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 14 and len(errors) == 1, r.stderr
    assert "any of the 3 coordinators" in errors[0]
    assert all(url in errors[0] for url in dead)
    assert not (tmp_path / "c.toml").exists()
