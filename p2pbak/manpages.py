"""Man pages generated from the Typer app itself, merged with hand-written sections.

Every command (and command group) gets `man/p2pbak-<path>.1`; `man/p2pbak.1` is the overview.
NAME, SYNOPSIS, ARGUMENTS, OPTIONS and COMMANDS come from the click objects behind `--help`,
so they cannot drift from it. What a generator cannot know (DESCRIPTION in plain words,
EXAMPLES, FILES, ...) lives in `man/sections/<page>.toml`; shared texts (exit codes,
environment variables, files) in `man/sections/common.toml`. Run `python scripts/gen_man.py`.

Hand-written text uses a small markup: blank lines separate paragraphs, `code` is bold,
lines starting with "- " are bullets, lines indented by four spaces are verbatim blocks.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.errors import MarkupError
from rich.text import Text
from typer._click import Context

from p2pbak import __version__
from p2pbak.cli import command
from p2pbak.errors import ExitCode, ManError

PROG = "p2pbak"
COMMON = "common"
PAGE_KEYS = {"description", "sections", "exit_status", "exit_codes", "environment", "files",
             "examples", "see_also"}


# -- roff ---------------------------------------------------------------------------------

_ESCAPES = {"\\": "\\e", "-": "\\-", "'": "\\(aq", "`": "\\(ga", "^": "\\(ha", "~": "\\(ti"}


def escape(text: str) -> str:
    """Plain text as roff: backslashes, hyphens, quotes and non-ASCII made literal."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) > 126 or (ord(ch) < 32 and ch != "\n"):
            out.append(f"\\[u{ord(ch):04X}]")
        else:
            out.append(ch)
    return "".join(out)


def fill(roff: str) -> str:
    """Escaped text as filled lines: a leading '.' or "'" would be a request, so it gets a
    zero-width \\&; leading blanks and blank lines (both break the fill) are dropped."""
    lines = [line.strip() for line in roff.split("\n")]
    return "\n".join("\\&" + ln if ln.startswith((".", "'")) else ln for ln in lines if ln)


def inline(text: str) -> str:
    """Text as filled roff lines, `code` in bold."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick stays a literal one
        return fill(escape(text))
    return fill("".join(f"\\fB{escape(p)}\\fR" if i % 2 else escape(p)
                        for i, p in enumerate(parts)))


def markup(text: str) -> str:
    """The hand-written markup (see the module doc) as roff paragraphs."""
    blocks: list[str] = []
    for para in re.split(r"\n\s*\n", inspect.cleandoc(text)):
        lines = para.split("\n")
        if all(ln.startswith("    ") for ln in lines):
            body = "\n".join("\\&" + escape(ln[4:]) for ln in lines)
            blocks.append(f".PP\n.RS 4\n.nf\n{body}\n.fi\n.RE")
        elif lines[0].startswith("- "):
            items = re.split(r"\n(?=- )", para)
            blocks.append("\n".join(f".IP \\(bu 2\n{inline(it[2:])}" for it in items))
        else:
            blocks.append(f".PP\n{inline(para)}")
    return "\n".join(blocks)


def verbatim(code: str) -> str:
    body = "\n".join("\\&" + escape(ln) for ln in code.strip("\n").split("\n"))
    return f".PP\n.RS 4\n.nf\n{body}\n.fi\n.RE"


# -- the command tree ---------------------------------------------------------------------

@dataclass
class Page:
    path: tuple[str, ...]  # () for the overview, ("market", "erasure") for a member
    command: Any  # a click Command (TyperCommand or TyperGroup)
    ctx: Any  # its click Context, for help records

    @property
    def name(self) -> str:
        return "-".join((PROG, *self.path))

    @property
    def words(self) -> str:
        return " ".join((PROG, *self.path))

    @property
    def subcommands(self) -> dict[str, Any]:
        cmds = getattr(self.command, "commands", {})
        return {n: c for n, c in cmds.items() if not getattr(c, "hidden", False)}


def root_command() -> Any:
    return command()


def walk(root: Any | None = None) -> list[Page]:
    """Every visible command and group, the overview first, in --help order."""

    root = root if root is not None else root_command()
    pages: list[Page] = []

    def visit(cmd: Any, path: tuple[str, ...], parent: Any) -> None:
        ctx = Context(cmd, info_name=path[-1] if path else PROG, parent=parent)
        page = Page(path, cmd, ctx)
        pages.append(page)
        for name, sub in page.subcommands.items():
            visit(sub, (*path, name), ctx)

    visit(root, (), None)
    return pages


def _plain(text: str, command: Any) -> str:
    """Help text as --help shows it: dedented, cut at \\f, rich markup removed."""
    text = inspect.cleandoc(text or "").partition("\f")[0]
    text = "\n".join(ln for ln in text.split("\n") if ln.strip() != "\b")
    if getattr(command, "rich_markup_mode", None) == "rich":
        with contextlib.suppress(MarkupError):
            text = Text.from_markup(text).plain
    return text.strip()


def summary_line(page: Page) -> str:
    """The first paragraph of the help, as one line without a final full stop."""
    first = _plain(page.command.help or page.command.short_help or "", page.command)
    first = " ".join(first.split("\n\n")[0].split())
    return first.rstrip(".") or f"the {page.words} command"


def _params(page: Page, kind: str) -> list[Any]:
    return [p for p in page.command.get_params(page.ctx)
            if p.param_type_name == kind and not getattr(p, "hidden", False)]


def _tag(param: Any, ctx: Any) -> str:
    """The option names in bold and the value placeholder in italics."""
    if param.param_type_name == "argument":
        name = param._rich_display_name() if hasattr(param, "_rich_display_name") else param.name
        kind = param.display_type_rich(ctx) if hasattr(param, "display_type_rich") else ""
        return f"\\fI{escape(name.upper())}\\fR" + (f" {escape(kind)}" if kind else "")
    names = ", ".join(f"\\fB{escape(o)}\\fR" for o in (*param.opts, *param.secondary_opts))
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return names
    kind = param.display_type_rich(ctx) if hasattr(param, "display_type_rich") else ""
    return f"{names} \\fI{escape(kind)}\\fR" if kind else names


def _param_help(param: Any, page: Page) -> str:
    record = param.get_help_record(page.ctx)
    text = record[1] if record else ""
    raw = param.help or ""
    if raw and text.startswith(raw):  # markup stripped from the author's text only
        text = _plain(raw, page.command) + text[len(raw):]
    return inline(text)


def _param_list(page: Page, kind: str) -> str:
    items = []
    for p in _params(page, kind):
        body = _param_help(p, page)
        items.append(f".TP\n{_tag(p, page.ctx)}" + (f"\n{body}" if body else ""))
    return "\n".join(items)


# -- option checks (examples, service files) -----------------------------------------------

def find_command(argv: list[str],
                 root: Any | None = None) -> tuple[tuple[str, ...], Any, list[str]]:
    """Split `argv` (after the program name) into command path, command, its arguments."""
    cmd = root if root is not None else root_command()
    path: list[str] = []
    rest = list(argv)
    while rest and rest[0] in getattr(cmd, "commands", {}):
        path.append(rest[0])
        cmd = cmd.commands[rest.pop(0)]
    return tuple(path), cmd, rest


def unknown_options(argv: list[str], root: Any | None = None) -> list[str]:
    """Problems with a p2pbak command line: unknown command or options it does not take."""

    path, cmd, rest = find_command(argv, root)
    if getattr(cmd, "commands", None):
        return [f"`{' '.join((PROG, *argv))}`: no such command"]
    ctx = Context(cmd, info_name=path[-1] if path else PROG)
    known = {o for p in cmd.get_params(ctx) for o in (*p.opts, *p.secondary_opts)}
    problems = []
    for word in rest:
        if word == "--":
            break
        if not word.startswith("-") or word == "-":
            continue
        opt = word.split("=", 1)[0]
        bundled = not opt.startswith("--") and len(opt) > 2  # short flags together: -qn
        names = [f"-{c}" for c in opt[1:]] if bundled else [opt]
        problems += [f"`{' '.join((PROG, *path))}` has no option {n}"
                     for n in names if n not in known]
    return problems


def command_lines(text: str) -> list[list[str]]:
    """Every p2pbak invocation in a shell snippet, as argv after the program name."""
    found = []
    for line in text.replace("\\\n", " ").split("\n"):
        line = line.strip().removeprefix("$ ")
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        for i, w in enumerate(words):
            if _is_program(w) and (i == 0 or words[i - 1] not in ("which", "man")):
                found.append([x for x in words[i + 1:] if x not in ("|", "&&", ";")])
                break
    return [_until_pipe(argv) for argv in found]


def _is_program(word: str) -> bool:
    """`p2pbak` or an installed one (`/usr/local/bin/p2pbak`), not a folder of that name."""
    return word == PROG or word.endswith(f"/bin/{PROG}")


def _until_pipe(argv: list[str]) -> list[str]:
    for i, w in enumerate(argv):
        if w in ("|", "||", "&&", ";") or w.startswith(("2>", ">")):
            return argv[:i]
    return argv


# -- hand-written sections ----------------------------------------------------------------

def load_sections(section_dir: Path) -> dict[str, dict[str, Any]]:
    """Every `<page>.toml` in the section folder, by page name."""
    data = {}
    for f in sorted(section_dir.glob("*.toml")):
        try:
            data[f.stem] = tomllib.loads(f.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ManError(f"{f}: {exc}") from None
    return data


def _check_page_keys(name: str, spec: dict[str, Any]) -> None:
    bad = set(spec) - PAGE_KEYS
    if bad:
        raise ManError(f"man/sections/{name}.toml: unknown keys {sorted(bad)}; "
                       f"use {sorted(PAGE_KEYS)}")


def _exit_text(common: dict[str, Any], spec: dict[str, Any], code: ExitCode) -> str:
    own = spec.get("exit_status", {})
    for key in (code.name, str(int(code))):
        if key in own:
            return str(own[key])
    texts = common.get("exit_status", {})
    if code.name not in texts:
        raise ManError(f"exit code {int(code)} ({code.name}) has no text: add it to "
                       "[exit_status] in man/sections/common.toml")
    return str(texts[code.name])


def _exit_section(common: dict[str, Any], spec: dict[str, Any]) -> str:
    wanted = spec.get("exit_codes")
    codes = [c for c in ExitCode if wanted is None or int(c) in wanted]
    items = [f".TP\n\\fB{int(c)}\\fR\n{inline(_exit_text(common, spec, c))}" for c in codes]
    return ".SH EXIT STATUS\n" + "\n".join(items)


def _named_list(title: str, table: dict[str, str], names: list[str], page: str) -> str:
    missing = [n for n in names if n not in table]
    if missing:
        raise ManError(f"man/sections/{page}.toml names {missing} under {title.lower()}, "
                       f"which man/sections/common.toml does not describe")
    items = [f".TP\n\\fB{escape(n)}\\fR\n{inline(table[n])}" for n in names]
    return f".SH {title}\n" + "\n".join(items) if items else ""


def _texts(spec: dict[str, Any]) -> list[str]:
    """All hand-written prose of a sections file."""
    texts = [str(spec.get("description", ""))]
    texts += [str(s.get("text", "")) for s in spec.get("sections", [])]
    texts += [str(ex.get("text", "")) for ex in spec.get("examples", [])]
    for table in ("exit_status", "environment", "files"):
        if isinstance(spec.get(table), dict):
            texts += [str(v) for v in spec[table].values()]
    return texts


def check_commands(name: str, spec: dict[str, Any], root: Any) -> None:
    """Every p2pbak command line in hand-written text (examples, indented blocks and
    `p2pbak ...` code spans) must still be valid: commands and options that exist."""
    texts = _texts(spec)
    codes = [str(ex.get("code", "")) for ex in spec.get("examples", [])]
    codes += ["\n".join(ln[4:] for ln in t.split("\n") if ln.startswith("    "))
              for t in texts]
    codes += [span for t in texts for span in re.findall(r"`(p2pbak [^`]*)`", t)]
    for code in codes:
        for argv in command_lines(code):
            problems = unknown_options(_leading_command(argv, root), root)
            if problems:
                raise ManError(f"man/sections/{name}.toml: {problems[0]}")
    known = _all_options(root)
    for t in texts:
        for opt in re.findall(r"`(--?[A-Za-z][\w-]*)", t):
            if opt not in known:
                raise ManError(f"man/sections/{name}.toml: no command has the option {opt}")


def _all_options(cmd: Any) -> set[str]:
    ctx = Context(cmd, info_name=PROG)
    names = {o for p in cmd.get_params(ctx) for o in (*p.opts, *p.secondary_opts)}
    for sub in getattr(cmd, "commands", {}).values():
        names |= _all_options(sub)
    return names


def _leading_command(argv: list[str], root: Any) -> list[str]:
    """A span may name a group alone (`p2pbak supply`): check it as its first member."""
    path, cmd, rest = find_command(argv, root)
    subs = getattr(cmd, "commands", {})
    if subs and not rest:
        return [*path, next(iter(subs))]
    return argv


def _examples(spec: dict[str, Any]) -> str:
    out = [markup(str(ex.get("text", ""))) + "\n" + verbatim(str(ex.get("code", "")))
           for ex in spec.get("examples", [])]
    return ".SH EXAMPLES\n" + "\n".join(out) if out else ""


# -- pages --------------------------------------------------------------------------------

def _header(page: Page) -> str:
    return (f'.\\" Generated by scripts/gen_man.py from the {PROG} command line and '
            "man/sections/; do not edit.\n"
            f'.TH "{page.name.upper()}" "1" "" "{PROG} {__version__}" "{PROG} manual"\n'
            ".nh\n.ad l\n"  # no hyphenation, ragged right: option names stay whole
            f".SH NAME\n{escape(page.name)} \\- {inline(summary_line(page))}")


def _synopsis(page: Page) -> str:
    pieces = page.command.collect_usage_pieces(page.ctx)
    return f".SH SYNOPSIS\n\\fB{escape(page.words)}\\fR {escape(' '.join(pieces))}"


def _description(page: Page, spec: dict[str, Any]) -> str:
    text = spec.get("description") or _plain(page.command.help or "", page.command)
    text = text or summary_line(page) + "."
    if getattr(page.command, "deprecated", False):
        text = "Deprecated: this command will be removed.\n\n" + text
    epilog = _plain(getattr(page.command, "epilog", None) or "", page.command)
    return ".SH DESCRIPTION\n" + markup(f"{text}\n\n{epilog}" if epilog else text)


def _commands(page: Page, pages: list[Page]) -> str:
    depth = len(page.path)
    subs = [p for p in pages if p.path[:depth] == page.path and len(p.path) > depth
            and not p.subcommands]
    items = [f".TP\n\\fB{escape(' '.join(p.path))}\\fR\n{inline(summary_line(p))}; see "
             f"\\fB{escape(p.name)}\\fR(1)." for p in subs]
    return ".SH COMMANDS\n" + "\n".join(items) if items else ""


def _see_also(page: Page, pages: list[Page], spec: dict[str, Any]) -> str:
    if page.path:
        names = [PROG] + ["-".join((PROG, *page.path[:i])) for i in range(1, len(page.path))]
    else:
        names = [p.name for p in pages if p.path]
    names += [n for n in spec.get("see_also", []) if n not in names]
    return ".SH SEE ALSO\n" + ",\n".join(f".BR {escape(n)} (1)" for n in names)


def render(page: Page, pages: list[Page], common: dict[str, Any], spec: dict[str, Any],
           root: Any) -> str:
    _check_page_keys(page.name, spec)
    check_commands(page.name, spec, root)
    default_env = list(common.get("environment", {}))
    default_files = [] if page.path else list(common.get("files", {}))
    extra = [f".SH {escape(s['title'].upper())}\n{markup(s['text'])}"
             for s in spec.get("sections", [])]
    parts = [
        _header(page), _synopsis(page), _description(page, spec), _commands(page, pages),
        _param_list_section("ARGUMENTS", page, "argument"),
        _param_list_section("OPTIONS", page, "option"), *extra,
        _exit_section(common, spec),
        _named_list("ENVIRONMENT", common.get("environment", {}),
                    spec.get("environment", default_env), page.name),
        _named_list("FILES", common.get("files", {}), spec.get("files", default_files),
                    page.name),
        _examples(spec), _see_also(page, pages, spec),
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _param_list_section(title: str, page: Page, kind: str) -> str:
    body = _param_list(page, kind)
    return f".SH {title}\n{body}" if body else ""


def build(section_dir: Path, root: Any | None = None) -> dict[str, str]:
    """Every page as {file name: roff text}; raises ManError on orphan or bad sections."""
    root = root if root is not None else root_command()
    pages = walk(root)
    sections = load_sections(section_dir)
    common = sections.pop(COMMON, {})
    check_commands(COMMON, common, root)
    orphans = sorted(set(sections) - {p.name for p in pages})
    if orphans:
        raise ManError(f"man/sections has pages for commands that do not exist: {orphans}")
    return {f"{p.name}.1": render(p, pages, common, sections.get(p.name, {}), root)
            for p in pages}


def write(man_dir: Path, out_dir: Path | None = None) -> list[str]:
    """Write the pages (to `out_dir`, default `man_dir`) and delete stale generated ones."""
    out = out_dir if out_dir is not None else man_dir
    out.mkdir(parents=True, exist_ok=True)
    pages = build(man_dir / "sections")
    for stale in out.glob(f"{PROG}*.1"):
        if stale.name not in pages:
            stale.unlink()
    for name, text in pages.items():
        (out / name).write_text(text, encoding="ascii")
    return sorted(pages)
