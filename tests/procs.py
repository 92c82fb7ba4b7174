"""Start real p2pbak processes on 127.0.0.1 for tests: free ports, readiness, teardown."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    """A running p2pbak process and where its output goes."""

    popen: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        with contextlib.suppress(ProcessLookupError):
            self.popen.kill()
        self.popen.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not go."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run one p2pbak command to completion, as a user would."""
    return subprocess.run([sys.executable, "-m", "p2pbak", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          input=input)


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> Proc:
    """Start a long-running p2pbak process (serve, peer run) with output to `log`."""
    fh = log.open("wb")
    popen = subprocess.Popen([sys.executable, "-m", "p2pbak", *args], stdout=fh,
                             stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    fh.close()
    return Proc(popen=popen, log=log)


def wait_http(url: str, proc: Proc | None = None, timeout: float = 30) -> None:
    """Poll `url` until it answers 200; fail with the process log if it dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"process exited early:\n{proc.output()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    detail = f":\n{proc.output()}" if proc else ""
    raise RuntimeError(f"{url} not ready after {timeout}s{detail}")
