"""The architecture contract beyond what import-linter checks (docs/architecture.md):
no import cycles even through imports inside functions, such imports only where they keep
start-up fast (and say so), and one error hierarchy in p2pbak/errors.py."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import p2pbak

PACKAGE = Path(p2pbak.__file__).resolve().parent
LAZY_MARK = "start-up"


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = (path, ast.parse(path.read_text(encoding="utf-8")))
    return found


MODULES = _modules()


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    nodes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            nodes |= {id(n) for n in ast.walk(node)}
    return nodes


def _imports(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every runtime import and whether it sits inside a function or class."""
    skip = _type_checking_nodes(tree)
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in skip:
            yield node, id(node) not in top


def _targets(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                 for a in node.names]
    out = []
    for name in names:
        while name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in MODULES:
            out.append(name)
    return out


def _graph() -> dict[str, set[str]]:
    return {name: {t for node, _ in _imports(tree) for t in _targets(node) if t != name}
            for name, (_, tree) in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, if there is any (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    for root in sorted(graph):
        if root in state:
            continue
        stack = [(root, iter(sorted(graph[root])))]
        path = [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return [*path[path.index(child):], child]
            elif child not in state:
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph.get(child, ())))))
    return None


def test_the_package_has_no_import_cycle_even_through_function_imports() -> None:
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_imports_inside_functions_say_they_keep_start_up_fast() -> None:
    """An import inside a function only where it saves start-up time, and then a comment
    above its block says so."""
    unmarked = []
    for name, (path, tree) in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node, inner in _imports(tree):
            if not inner:
                continue
            i = node.lineno - 2
            while i >= 0 and (lines[i].strip().startswith(("from ", "import ", ")"))
                              or lines[i].rstrip().endswith((",", "(")) or not lines[i].strip()):
                i -= 1
            if LAZY_MARK not in lines[i]:
                unmarked.append(f"{name}:{node.lineno} {ast.unparse(node)}")
    assert unmarked == []


def test_every_exception_class_lives_in_errors() -> None:
    errors = MODULES["p2pbak.errors"][1]
    known = {n.name for n in errors.body if isinstance(n, ast.ClassDef)}
    elsewhere = []
    for name, (_, tree) in MODULES.items():
        if name == "p2pbak.errors":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases}
                if bases & (known | {"Exception", "ValueError", "OSError", "RuntimeError"}):
                    elsewhere.append(f"{name}.{node.name}")
    assert elsewhere == []
