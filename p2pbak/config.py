"""This machine's settings: a TOML file (mode 0600) under the platform's config folder.

It holds the coordinator URLs (the first is the community's name for it; the others are
tried in turn when one is down), the machine's credentials, the coordinator's pinned ticket key
and the supply caps (§3.1: the software never uses more of a resource than its cap).
Also here: passphrase sources for scripts and cron, and size/rate parsing for caps.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import platformdirs
import tomli_w

from p2pbak.errors import NotInitialised, P2pbakError

ENV_CONFIG = "P2PBAK_CONFIG"
ENV_PASSWORD_FILE = "P2PBAK_PASSWORD_FILE"
ENV_PASSWORD_COMMAND = "P2PBAK_PASSWORD_COMMAND"


@dataclass
class Supply:
    """What this machine lends: space in bytes, upload and download in bytes/s. None is no
    cap; a space of 0 lends nothing (a rate of 0 is refused: a holder must serve)."""

    space: int | None = None
    upload: int | None = None
    download: int | None = None


def market_caps(space: int | None, upload: int | None, download: int | None,
                disk: int) -> tuple[int, int, int, int]:
    """(space, upload, download, disk) in the market's terms (market.caps: 0 = no cap, a
    space without cap counted as the disk): a space of zero lends a disk of zero."""
    return space or 0, upload or 0, download or 0, 0 if space == 0 else disk


# the config file's [supply] format: 2 writes no cap as "unlimited" and 0 as zero; files
# before it wrote 0 for no cap (a zero was refused then, so a 0 there always means no cap)
SUPPLY_FORMAT = 2
UNLIMITED = "unlimited"


@dataclass
class Config:
    path: Path
    coordinator: str
    user: str
    machine_id: str
    secret: str
    ticket_key: str = ""
    cache_dir: Path | None = None
    supply: Supply = field(default_factory=Supply)
    peer_url: str = ""
    coordinators: tuple[str, ...] = ()  # every URL in order, when there are several

    @property
    def coordinator_urls(self) -> list[str]:
        """The URLs to try in order: the first is `coordinator`."""
        return list(self.coordinators) or [self.coordinator]

    @property
    def cache(self) -> Path:
        """The cache folder in effect (explicit, else `cache/` beside the config file)."""
        return self.cache_dir if self.cache_dir is not None else self.path.parent / "cache"


def config_path(explicit: Path | None = None) -> Path:
    """--config beats $P2PBAK_CONFIG beats the platform's user config folder."""
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env).expanduser()

    return Path(platformdirs.user_config_dir("p2pbak")) / "config.toml"


def load(explicit: Path | None = None) -> Config:
    path = config_path(explicit)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotInitialised(
            f"no config at {path}: run `p2pbak init --coordinator URL` "
            "(or `p2pbak recover` on a new machine)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise P2pbakError(f"cannot read config {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise P2pbakError(f"config {path} is not valid TOML ({exc}): fix it or "
                          "re-run `p2pbak recover`") from None
    return _from_dict(path, raw)


def _from_dict(path: Path, raw: dict[str, Any]) -> Config:
    def text(key: str, required: bool = True) -> str:
        value = raw.get(key, None if required else "")
        if not isinstance(value, str) or (required and not value):
            raise P2pbakError(f"config {path}: `{key}` is missing or not a string; "
                              "re-run `p2pbak recover` or fix the file")
        return value

    cache = text("cache_dir", required=False)
    urls = raw.get("coordinators", [])
    if not isinstance(urls, list) or not all(isinstance(u, str) and u for u in urls):
        raise P2pbakError(f"config {path}: `coordinators` must be a list of URLs; "
                          "re-run `p2pbak recover` or fix the file")
    return Config(path=path, coordinator=text("coordinator"), user=text("user"),
                  machine_id=text("machine_id"), secret=text("secret"),
                  ticket_key=text("ticket_key", required=False),
                  cache_dir=Path(cache).expanduser() if cache else None,
                  supply=_supply(path, raw.get("supply", {})),
                  peer_url=text("peer_url", required=False),
                  coordinators=tuple(urls) if len(urls) > 1 else ())


def _supply(path: Path, raw: object) -> Supply:
    """The [supply] table: whole bytes, or "unlimited"; a pre-format-2 file's 0 is no cap."""
    table = raw if isinstance(raw, dict) else {}
    legacy = table.get("format") != SUPPLY_FORMAT
    caps: dict[str, int | None] = {}
    for key in ("space", "upload", "download"):
        value = table.get(key, UNLIMITED) if isinstance(raw, dict) else None
        if value == UNLIMITED or (legacy and value == 0):
            caps[key] = None
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            caps[key] = value
        else:
            raise P2pbakError(f"config {path}: supply.{key} must be a whole number of bytes "
                              "or \"unlimited\" (set it with `p2pbak supply set`)")
    return Supply(**caps)


def _to_dict(cfg: Config) -> dict[str, Any]:
    d: dict[str, Any] = {"coordinator": cfg.coordinator, "user": cfg.user,
                         "machine_id": cfg.machine_id, "secret": cfg.secret,
                         "ticket_key": cfg.ticket_key, "peer_url": cfg.peer_url}
    if len(cfg.coordinators) > 1:
        d["coordinators"] = list(cfg.coordinators)
    if cfg.cache_dir is not None:
        d["cache_dir"] = str(cfg.cache_dir)
    d["supply"] = {"format": SUPPLY_FORMAT} | {
        k: UNLIMITED if v is None else v for k, v in asdict(cfg.supply).items()}
    return d


def split_urls(values: str | Sequence[str]) -> list[str]:
    """Coordinator URLs given as one string or several, each possibly comma-separated
    (`--coordinator a,b --coordinator c`): in order, without repeats or trailing slashes."""
    items = [values] if isinstance(values, str) else list(values)
    urls = [u.strip().rstrip("/") for item in items for u in item.split(",")]
    return list(dict.fromkeys(u for u in urls if u))


def save(cfg: Config) -> None:
    """Write atomically (temp file, fsync, rename) with mode 0600: the file holds a secret."""
    data = tomli_w.dumps(_to_dict(cfg)).encode()
    atomic_write(cfg.path, data, mode=0o600)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace `path` with `data` so a crash leaves the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb", closefd=False) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- passphrase -------------------------------------------------------------------------

_NO_SOURCE = ("no passphrase: use --password-file, P2PBAK_PASSWORD_FILE or "
              "P2PBAK_PASSWORD_COMMAND, or run in a terminal to be asked")


def read_passphrase(*, password_file: Path | None = None, password_command: str | None = None,
                    confirm: bool = False) -> str:
    """The passphrase from the first source given; never from the command line itself."""
    if password_file is not None:
        return _check(_from_file(Path(password_file)), str(password_file))
    if password_command:
        return _check(_from_command(password_command), password_command)
    env_file = os.environ.get(ENV_PASSWORD_FILE)
    if env_file:
        return _check(_from_file(Path(env_file)), f"${ENV_PASSWORD_FILE}")
    env_cmd = os.environ.get(ENV_PASSWORD_COMMAND)
    if env_cmd:
        return _check(_from_command(env_cmd), f"${ENV_PASSWORD_COMMAND}")
    return _prompt(confirm)


def _strip_newline(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


def _check(passphrase: str, source: str) -> str:
    if not passphrase:
        raise P2pbakError(f"empty passphrase from {source}: put the passphrase there")
    return passphrase


def _from_file(path: Path) -> str:
    try:
        return _strip_newline(path.expanduser().read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise P2pbakError(f"cannot read the password file {path}: {exc}") from None


def _from_command(command: str) -> str:
    try:
        argv = shlex.split(command)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise P2pbakError(f"password command {command!r} failed: {exc}") from None
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise P2pbakError(f"password command {command!r} failed: {why[0]}")
    return _strip_newline(done.stdout)


def _prompt(confirm: bool) -> str:
    if not sys.stdin.isatty():
        raise P2pbakError(_NO_SOURCE)
    first = getpass.getpass("passphrase: ")
    if not first:
        raise P2pbakError("empty passphrase: type one, or use --password-file")
    if confirm and getpass.getpass("passphrase again: ") != first:
        raise P2pbakError("the two passphrases differ: nothing was changed, try again")
    return first


# -- sizes and rates --------------------------------------------------------------------

_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4, "p": 1000**5}
_IEC = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)


def _multiplier(unit: str) -> tuple[int, bool] | None:
    """(bytes per unit, is_bits) for a unit like kb, KiB, M, Mbit, Mbps; None if unknown."""
    u, bits = unit.lower(), False
    if u.endswith("bit"):
        u, bits = u[:-3], True
    elif u.endswith("ps") and len(unit) >= 3:  # Mbps is bits, MBps bytes
        u, bits = u[:-3], unit[-3] == "b"
    elif u.endswith("b"):
        u = u[:-1]
    iec = u.endswith("i")
    prefix = u[:-1] if iec else u
    if prefix not in _UNITS or prefix == "b" or (iec and not prefix):
        return None
    base = 1024 ** ("kmgtp".index(prefix) + 1) if iec else _UNITS[prefix]
    return base, bits


def _parse(text: str, what: str, example: str, allow_bits: bool) -> int:
    m = _NUMBER.match(text)
    unit = _multiplier(m.group(2)) if m else None
    if m is None or unit is None or (unit[1] and not allow_bits):
        raise P2pbakError(f"cannot read {what} {text!r}: write it like {example}")
    try:
        value = Decimal(m.group(1)) * unit[0]
    except InvalidOperation:
        raise P2pbakError(f"cannot read {what} {text!r}: write it like {example}") from None
    return int(value / 8) if unit[1] else int(value)


def parse_size(text: str) -> int:
    """'50GB', '1.5 GiB', '512MB', '0' → bytes (SI units are powers of 1000, IEC of 1024)."""
    return _parse(text, "size", "50GB, 1.5GiB or 512MB", allow_bits=False)


def parse_rate(text: str) -> int:
    """'1MB/s', '800KB/s', '10Mbit/s' → bytes/s ('/s' optional; 'bit'/'bps' are bits)."""
    body = text.strip()
    if body.lower().endswith("/s"):
        body = body[:-2]
    return _parse(body, "rate", "1MB/s, 800KiB/s or 10Mbit/s", allow_bits=True)


# how no cap is spelled (0 is a cap of zero)
NO_CAP = (UNLIMITED, "none", "no-cap")


def read_cap(text: str, parse: Callable[[str], int], option: str,
             zero: bool = False) -> int | None:
    """A cap in bytes (or bytes/s); None for `unlimited`. Zero only where `zero` allows
    it (space: lend nothing); a rate of zero would leave held fragments unreachable."""
    if text.strip().lower() in NO_CAP:
        return None
    value = parse(text)
    if value <= 0 and not zero:
        raise P2pbakError(f"{option} {text!r} would leave the fragments this peer holds "
                          f"unreachable: to stop lending run `p2pbak supply set --space 0` "
                          f"or `p2pbak supply leave`; for no cap write {option} unlimited")
    return value


def parse_caps(supply: Supply, space: str | None, upload: str | None,
               download: str | None) -> Supply:
    """`supply` with the caps given (text as users type it, e.g. 50GB, 5KB/s, 10Mbit/s;
    None: keep) replaced: what `supply set` and the settings page both save."""
    if space is None and upload is None and download is None:
        raise P2pbakError("nothing to set: give --space, --upload and/or --download "
                          "(see `p2pbak supply show` for the current caps)")
    return Supply(
        space=supply.space if space is None else read_cap(space, parse_size, "--space", True),
        upload=supply.upload if upload is None else read_cap(upload, parse_rate, "--upload"),
        download=supply.download if download is None else read_cap(download, parse_rate,
                                                                    "--download"))


def format_size(n: int) -> str:
    """Bytes in IEC units with up to 3 decimals: 1536 → '1.5 KiB'."""
    if n < 1024:
        return f"{n} B"
    power = 1
    while power < len(_IEC) - 1 and n >= 1024 ** (power + 1):
        power += 1
    value = Decimal(n) / 1024**power
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return f"{text} {_IEC[power]}"


def format_rate(n: int) -> str:
    return f"{format_size(n)}/s"
