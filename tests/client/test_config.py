import os
import stat
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pbak import config
from p2pbak.config import Config, Supply
from p2pbak.errors import ExitCode, NotInitialised, P2pbakError


def make(path: Path, **kw: object) -> Config:
    base: dict[str, object] = dict(path=path, coordinator="http://127.0.0.1:8420", user="alice",
                                   machine_id="m" * 32, secret="s3cr3t")
    base.update(kw)
    return Config(**base)  # type: ignore[arg-type]


def test_save_load_round_trip_is_private(tmp_path: Path) -> None:
    cfg = make(tmp_path / "sub" / "config.toml", ticket_key="ab" * 32,
               cache_dir=tmp_path / "cache", supply=Supply(10**9, 125_000, 250_000),
               peer_url="http://127.0.0.1:8421")
    config.save(cfg)
    mode = stat.S_IMODE(os.stat(cfg.path).st_mode)
    assert mode == 0o600
    assert config.load(cfg.path) == cfg
    assert not [p for p in cfg.path.parent.iterdir() if p.name != "config.toml"]


def test_save_replaces_existing_and_tightens_mode(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("garbage")
    path.chmod(0o644)
    config.save(make(path, user="bob"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert config.load(path).user == "bob"


def test_defaults_cache_beside_config(tmp_path: Path) -> None:
    cfg = make(tmp_path / "c.toml")
    config.save(cfg)
    loaded = config.load(cfg.path)
    assert loaded.cache_dir is None
    assert loaded.cache == tmp_path / "cache"
    assert loaded.supply == Supply(None, None, None)
    assert loaded.ticket_key == "" and loaded.peer_url == ""


def test_missing_config_says_run_init(tmp_path: Path) -> None:
    with pytest.raises(NotInitialised) as e:
        config.load(tmp_path / "nope.toml")
    assert "p2pbak init" in str(e.value)
    assert e.value.exit_code == ExitCode.NOT_INITIALISED


@pytest.mark.parametrize("text", ["user = [", 'coordinator = "x"\n',
                                  'coordinator="u"\nuser="a"\nmachine_id="m"\nsecret=3\n',
                                  'coordinator="u"\nuser="a"\nmachine_id="m"\nsecret="s"\n'
                                  '[supply]\nspace=-1\n'])
def test_bad_config_is_one_line_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(P2pbakError) as e:
        config.load(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_config_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("P2PBAK_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    default = config.config_path()
    assert default.name == "config.toml" and "p2pbak" in default.parts
    if sys.platform.startswith("linux"):
        assert default == tmp_path / "xdg" / "p2pbak" / "config.toml"
    monkeypatch.setenv("P2PBAK_CONFIG", str(tmp_path / "env.toml"))
    assert config.config_path() == tmp_path / "env.toml"
    assert config.config_path(tmp_path / "flag.toml") == tmp_path / "flag.toml"


# -- passphrase ---------------------------------------------------------------------------

@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("P2PBAK_PASSWORD_FILE", raising=False)
    monkeypatch.delenv("P2PBAK_PASSWORD_COMMAND", raising=False)
    return monkeypatch


def test_passphrase_sources_in_order(tmp_path: Path, no_env: pytest.MonkeyPatch) -> None:
    flag_file = tmp_path / "flag"
    flag_file.write_text("from flag file\n")
    env_file = tmp_path / "env"
    env_file.write_text("from env file\r\n")
    cmd = f"{sys.executable} -c \"print('from command')\""
    env_cmd = f"{sys.executable} -c \"print('from env command')\""
    no_env.setenv("P2PBAK_PASSWORD_FILE", str(env_file))
    no_env.setenv("P2PBAK_PASSWORD_COMMAND", env_cmd)
    assert config.read_passphrase(password_file=flag_file, password_command=cmd) \
        == "from flag file"
    assert config.read_passphrase(password_command=cmd) == "from command"
    assert config.read_passphrase() == "from env file"
    no_env.delenv("P2PBAK_PASSWORD_FILE")
    assert config.read_passphrase() == "from env command"


def test_passphrase_keeps_inner_whitespace(tmp_path: Path, no_env: pytest.MonkeyPatch) -> None:
    f = tmp_path / "pw"
    f.write_text(" two words \n\n")
    assert config.read_passphrase(password_file=f) == " two words \n"


def test_no_source_and_no_tty_is_clear_error(no_env: pytest.MonkeyPatch) -> None:
    no_env.setattr(sys, "stdin", open(os.devnull))  # noqa: SIM115
    with pytest.raises(P2pbakError) as e:
        config.read_passphrase()
    assert "--password-file" in str(e.value) and "P2PBAK_PASSWORD_FILE" in str(e.value)


def test_prompt_confirmation_mismatch(no_env: pytest.MonkeyPatch) -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    answers = iter(["one", "two", "same", "same"])
    no_env.setattr(sys, "stdin", Tty())
    no_env.setattr(config.getpass, "getpass", lambda prompt: next(answers))
    with pytest.raises(P2pbakError, match="differ"):
        config.read_passphrase(confirm=True)
    assert config.read_passphrase(confirm=True) == "same"


def test_bad_sources_fail_clearly(tmp_path: Path, no_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(P2pbakError, match="cannot read the password file"):
        config.read_passphrase(password_file=tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(P2pbakError, match="empty passphrase"):
        config.read_passphrase(password_file=empty)
    failing = f"{sys.executable} -c \"import sys; sys.exit('vault locked')\""
    with pytest.raises(P2pbakError, match="vault locked"):
        config.read_passphrase(password_command=failing)
    with pytest.raises(P2pbakError, match="password command"):
        config.read_passphrase(password_command="/no/such/binary")


# -- sizes and rates ----------------------------------------------------------------------

@pytest.mark.parametrize(("text", "n"), [
    ("0", 0), ("7", 7), ("2 B", 2), ("512MB", 512 * 10**6), ("50GB", 50 * 10**9),
    ("1.5 GiB", 3 * 2**29), ("1.5kb", 1500), ("1k", 1000), ("4KiB", 4096), ("1 TiB", 2**40),
    ("  3 mib ", 3 * 2**20), (".5K", 500),
])
def test_parse_size(text: str, n: int) -> None:
    assert config.parse_size(text) == n


@pytest.mark.parametrize(("text", "n"), [
    ("1MB/s", 10**6), ("800KB/s", 800_000), ("10Mbit/s", 1_250_000), ("10Mbps", 1_250_000),
    ("10MBps", 10**7), ("5 KiB/s", 5120), ("8bit/s", 1), ("0", 0), ("2MB", 2 * 10**6),
])
def test_parse_rate(text: str, n: int) -> None:
    assert config.parse_rate(text) == n


@pytest.mark.parametrize("text", ["", "x", "-1", "1..5", "5q", "1 ib", "KiB", "5 Mbit", "1e9"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(P2pbakError, match="cannot read size"):
        config.parse_size(text)


def test_parse_rate_rejects() -> None:
    with pytest.raises(P2pbakError, match="cannot read rate"):
        config.parse_rate("fast/s")


def test_format_size_examples() -> None:
    assert config.format_size(0) == "0 B"
    assert config.format_size(1023) == "1023 B"
    assert config.format_size(1536) == "1.5 KiB"
    assert config.format_size(5 * 2**30) == "5 GiB"
    assert config.format_rate(2**20) == "1 MiB/s"


@given(st.integers(min_value=0, max_value=2**62))
def test_format_then_parse_is_close(n: int) -> None:
    back = config.parse_size(config.format_size(n))
    assert abs(back - n) <= n * 0.0005 + 1  # 3 decimals of the leading unit


@given(st.integers(min_value=0, max_value=1023), st.sampled_from([1, 2**10, 2**20, 2**30]))
def test_whole_units_round_trip_exactly(count: int, unit: int) -> None:
    n = count * unit
    assert config.parse_size(config.format_size(n)) == n
    assert config.parse_rate(config.format_rate(n)) == n


@given(st.integers(min_value=0, max_value=10**15))
def test_plain_numbers_and_units_agree(n: int) -> None:
    assert config.parse_size(str(n)) == n
    assert config.parse_size(f"{n}KB") == n * 1000
    assert config.parse_size(f"{n} KiB") == n * 1024
    assert config.parse_rate(f"{n * 8}bit/s") == n


def test_caps_round_trip_zero_and_unlimited_apart(tmp_path: Path) -> None:
    cfg = make(tmp_path / "c.toml", supply=Supply(0, None, 5000))
    config.save(cfg)
    text = cfg.path.read_text()
    assert "space = 0" in text and 'upload = "unlimited"' in text and "format = 2" in text
    assert config.load(cfg.path).supply == Supply(0, None, 5000)


def test_a_config_from_before_format_2_reads_its_zeros_as_no_cap(tmp_path: Path) -> None:
    path = tmp_path / "old.toml"
    path.write_text('coordinator = "http://c"\nuser = "a"\nmachine_id = "m"\nsecret = "s"\n'
                    "[supply]\nspace = 0\nupload = 0\ndownload = 7\n")
    assert config.load(path).supply == Supply(None, None, 7)


@pytest.mark.parametrize("text", ["0", "0GB", "0 B"])
def test_a_space_of_zero_is_a_cap_and_a_rate_of_zero_refused(text: str) -> None:
    assert config.parse_caps(Supply(), text, None, None).space == 0
    with pytest.raises(P2pbakError, match="--upload unlimited"):
        config.parse_caps(Supply(), None, text, None)
    assert config.parse_caps(Supply(1, 2, 3), "unlimited", "none", None) == Supply(None, None, 3)


def test_several_coordinators_round_trip(tmp_path: Path) -> None:
    urls = ("http://a:8420", "http://b:8420")
    cfg = make(tmp_path / "c.toml", coordinator=urls[0], coordinators=urls)
    config.save(cfg)
    loaded = config.load(cfg.path)
    assert loaded == cfg and loaded.coordinator_urls == list(urls)
    single = make(tmp_path / "d.toml")
    config.save(single)
    assert "coordinators" not in single.path.read_text()
    assert config.load(single.path).coordinator_urls == ["http://127.0.0.1:8420"]


def test_coordinators_not_a_list_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    config.save(make(path))
    path.write_text('coordinators = "http://a"\n' + path.read_text())
    with pytest.raises(P2pbakError, match="`coordinators` must be a list"):
        config.load(path)


_url = st.from_regex(r"https?://[a-z]{1,8}(:[0-9]{2,5})?", fullmatch=True)


@given(st.lists(st.lists(_url, min_size=1, max_size=3), min_size=1, max_size=3))
def test_split_urls_keeps_order_without_repeats(groups: list[list[str]]) -> None:
    given_urls = [u for g in groups for u in g]
    # repeated options, each maybe comma-separated, slashes at the end dropped
    got = config.split_urls([",".join(u + "/" for u in g) for g in groups])
    assert got == list(dict.fromkeys(given_urls))
    assert config.split_urls(",".join(given_urls)) == got
