"""The man pages in man/ against the CLI they describe, and how groff renders them."""

from __future__ import annotations

import difflib
import enum
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pbak import manpages
from p2pbak.errors import ExitCode

ROOT = Path(__file__).resolve().parents[1]
MAN = ROOT / "man"
REGEN = "run `python scripts/gen_man.py` and commit man/"
GROFF = shutil.which("groff")
NO_GROFF = "groff is not installed (apt-get install -y groff man-db)"


def committed() -> dict[str, str]:
    return {p.name: p.read_text(encoding="ascii") for p in sorted(MAN.glob("p2pbak*.1"))}


def test_pages_are_what_the_generator_makes_now(tmp_path: Path) -> None:
    manpages.write(MAN, tmp_path)
    fresh = {p.name: p.read_text(encoding="ascii") for p in sorted(tmp_path.glob("*.1"))}
    have = committed()
    missing = sorted(set(fresh) - set(have))
    gone = sorted(set(have) - set(fresh))
    assert not missing, f"commands without a man page: {missing}; {REGEN}"
    assert not gone, f"man pages for commands that no longer exist: {gone}; {REGEN}"
    for name, text in fresh.items():
        if have[name] != text:
            diff = "".join(list(difflib.unified_diff(
                have[name].splitlines(True), text.splitlines(True), f"man/{name}",
                "generated"))[:40])
            pytest.fail(f"man/{name} is out of date with the CLI; {REGEN}\n{diff}")


def _section(text: str, title: str) -> str:
    m = re.search(rf"^\.SH {title}\n(.*?)(?=^\.SH |\Z)", text, re.S | re.M)
    return m.group(1) if m else ""


def _tagged_options(text: str) -> set[str]:
    """Option names in the tag lines of a page's OPTIONS section."""
    tags = re.findall(r"^\.TP\n(.*)$", _section(text, "OPTIONS"), re.M)
    found = set()
    for tag in tags:
        bold = re.findall(r"\\fB(.*?)\\fR", tag)
        found |= {b.replace("\\-", "-") for b in bold if b.startswith("\\-")}
    return found


def test_every_option_has_its_entry_and_every_entry_its_option() -> None:
    pages = committed()
    for page in manpages.walk():
        name = f"{page.name}.1"
        assert name in pages, f"`{page.words}` has no man page; {REGEN}"
        text = pages[name]
        params = [p for p in page.command.get_params(page.ctx) if not getattr(p, "hidden", False)]
        real = {o for p in params if p.param_type_name == "option"
                for o in (*p.opts, *p.secondary_opts)}
        documented = _tagged_options(text)
        assert real - documented == set(), \
            f"man/{name} lacks options {sorted(real - documented)}; {REGEN}"
        assert documented - real == set(), \
            f"man/{name} describes options `{page.words}` no longer has: " \
            f"{sorted(documented - real)}; {REGEN}"
        for sub in page.subcommands:
            words = manpages.escape(" ".join((*page.path, sub)))
            assert f"\\fB{words}" in _section(text, "COMMANDS"), \
                f"man/{name} does not list `{page.words} {sub}`; {REGEN}"
    names = {f"{p.name}.1" for p in manpages.walk()}
    assert set(pages) <= names, f"pages for no command: {sorted(set(pages) - names)}; {REGEN}"


def test_every_page_documents_every_exit_code() -> None:
    for name, text in committed().items():
        codes = set(re.findall(r"^\\fB(\d+)\\fR$", _section(text, "EXIT STATUS"), re.M))
        if name == "p2pbak.1":
            assert codes == {str(int(c)) for c in ExitCode}, name
        assert codes <= {str(int(c)) for c in ExitCode}, name
        assert "0" in codes, name


def _groff(path: Path) -> subprocess.CompletedProcess[str]:
    assert GROFF is not None
    return subprocess.run([GROFF, "-man", "-Tutf8", "-ww", "-z", str(path)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(GROFF is None, reason=NO_GROFF)
def test_pages_render_without_warnings() -> None:
    pages = sorted(MAN.glob("p2pbak*.1"))
    assert pages
    for page in pages:
        r = _groff(page)
        assert r.returncode == 0 and r.stderr == "", f"groff on man/{page.name}:\n{r.stderr}"


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed (apt-get "
                    "install -y groff man-db)")
def test_man_l_shows_the_backup_page() -> None:
    r = subprocess.run(["man", "-P", "cat", "-l", str(MAN / "p2pbak-backup.1")],
                       capture_output=True, text=True, timeout=60,
                       env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    assert r.returncode == 0, r.stderr
    plain = re.sub(".\b", "", r.stdout)
    assert "p2pbak-backup" in plain and "--quiet" in plain and "EXIT STATUS" in plain


def _render(roff: str, tmp: Path) -> str:
    page = tmp / "t.1"
    page.write_text(f'.TH "T" "1"\n.SH S\n{roff}\n', encoding="ascii")
    assert GROFF is not None
    r = subprocess.run([GROFF, "-man", "-Tutf8", "-ww", str(page)], capture_output=True,
                       timeout=60)
    assert r.stderr == b"", r.stderr.decode()
    return re.sub(".\b", "", r.stdout.decode("utf-8"))


TRICKY = st.text(alphabet=st.sampled_from(list(".'\"\\-`^~ abc×–—é\t{}[]$%&")) | st.characters(
    min_codepoint=32, max_codepoint=0x2FF, exclude_categories=("Cc", "Cs")),
    min_size=1, max_size=30)


@pytest.mark.skipif(GROFF is None, reason=NO_GROFF)
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(TRICKY.map(lambda s: s.replace("\t", " ").strip()).filter(bool),
                      min_size=1, max_size=4))
def test_escaped_text_renders_as_itself(lines: list[str], tmp_path: Path) -> None:
    shown = _render(manpages.verbatim("\n".join(lines)), tmp_path)
    body = [ln.strip() for ln in shown.split("\n")[1:] if ln.strip()][1:-1]
    assert body == lines


def test_unknown_options_are_caught() -> None:
    assert manpages.unknown_options(["backup", "--quiet", "-q", "/home"]) == []
    assert manpages.unknown_options(["backup", "--no-such-option", "/home"]) != []
    assert manpages.unknown_options(["no-such-command"]) != []
    assert manpages.unknown_options(["backup", "--", "--not-an-option"]) == []
    assert manpages.command_lines("0 3 * * * /usr/bin/p2pbak backup -q ~ 2>&1 # nightly") == [
        ["backup", "-q", "~"]]
    assert manpages.command_lines("useradd --home-dir /var/lib/p2pbak p2pbak-user") == []


def test_orphan_section_file_is_refused(tmp_path: Path) -> None:
    sections = tmp_path / "sections"
    sections.mkdir()
    shutil.copy(MAN / "sections" / "common.toml", sections)
    (sections / "p2pbak-no-such-command.toml").write_text('description = "x"\n')
    with pytest.raises(manpages.ManError, match="no-such-command"):
        manpages.build(sections)


@pytest.mark.parametrize("toml", [
    '[[examples]]\ntext = "x"\ncode = "p2pbak backup --frobnicate ~"\n',
    'description = """\nLike this:\n\n    p2pbak backup --frobnicate ~\n"""\n',
    'description = "Run `p2pbak backup --frobnicate ~` each night."\n',
    'description = "With `--frobnicate` it goes faster."\n',
])
def test_command_line_with_a_stale_option_is_refused(tmp_path: Path, toml: str) -> None:
    sections = tmp_path / "sections"
    sections.mkdir()
    shutil.copy(MAN / "sections" / "common.toml", sections)
    (sections / "p2pbak-backup.toml").write_text(toml)
    with pytest.raises(manpages.ManError, match="--frobnicate"):
        manpages.build(sections)


class Mode(enum.StrEnum):
    fast = "fast"
    safe = "safe"


def _odd_app() -> object:
    """A CLI with everything a future command might bring to the generator."""
    import typer
    import typer.main

    app = typer.Typer(rich_markup_mode="rich")
    sub = typer.Typer(help="A group.")
    inner = typer.Typer(help="A group in a group.")

    @app.command("odd", epilog="After the options: see [bold]also[/bold] this.")
    def odd(target: str = typer.Argument(..., help=".dot first \\ and a back\\slash"),
            mode: Mode = typer.Option(Mode.safe, "--mode", help="How ×2 – fast.",
                                      show_default=True),
            colour: bool = typer.Option(True, "--colour/--no-colour",
                                        help="'quoted' start, a lone ` and a `span`"),
            secret: str = typer.Option("", "--secret", hidden=True)) -> None:
        """Do [bold]odd[/bold] things.

        .A line that starts with a dot.
        'And one with a quote.
        """

    @app.command("old", deprecated=True)
    def old() -> None:
        """Old."""

    @app.command("ghost", hidden=True)
    def ghost() -> None:
        """Hidden."""

    @inner.command("leaf")
    def leaf(n: int = typer.Option(3, "--n", "-n", min=1, max=9)) -> None:
        pass

    sub.add_typer(inner, name="inner")
    app.add_typer(sub, name="grp")
    return typer.main.get_command(app)


@pytest.mark.skipif(GROFF is None, reason=NO_GROFF)
def test_generator_copes_with_any_command(tmp_path: Path) -> None:
    sections = tmp_path / "sections"
    sections.mkdir()
    codes = "".join(f'{c.name} = "{c.name.lower()}"\n' for c in ExitCode)
    (sections / "common.toml").write_text(f"[exit_status]\n{codes}")
    pages = manpages.build(sections, _odd_app())
    assert set(pages) == {"p2pbak.1", "p2pbak-odd.1", "p2pbak-old.1", "p2pbak-grp.1",
                          "p2pbak-grp-inner.1", "p2pbak-grp-inner-leaf.1"}
    for name, text in pages.items():
        assert text.isascii(), name
        (tmp_path / name).write_text(text, encoding="ascii")
        r = _groff(tmp_path / name)
        assert r.stderr == "", f"{name}:\n{r.stderr}"
    shown = _render(pages["p2pbak-odd.1"].split("\n", 2)[2], tmp_path)
    for words in ["Do odd things.", ".A line that starts with a dot.", "'And one with a quote.",
                  "After the options: see also this.", ".dot first \\ and a back\\slash",
                  "--colour, --no-colour", "How ×2 – fast.", "[default: safe]",
                  "<fast|safe>", "a lone ` and a `span`"]:
        assert words in " ".join(shown.split()), words
    assert "--secret" not in shown
    assert "Deprecated" in pages["p2pbak-old.1"]
    assert "\\fBgrp inner leaf\\fR" in pages["p2pbak.1"]


def test_every_page_is_installed_where_man_looks() -> None:
    """`pip install .` copies man/*.1 to PREFIX/share/man/man1, which man-db searches for a
    PREFIX/bin on PATH: `man p2pbak-backup` works in an activated venv."""
    files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "data-files"]["share/man/man1"]
    installed = {p.name for pattern in files for p in ROOT.glob(pattern)}
    assert installed == set(committed()) and "p2pbak-backup.1" in installed
