"""JSON from strangers: the nesting is bounded before the parser sees it.

`json.loads` recurses once per `[` or `{`, so 3,000 of them raise RecursionError (a 500 in a
route, a crash in a ticket check). `loads` first scans the text for brackets outside strings
(one regex pass: cheap even on a 64 MiB base64 blob, which has none) and refuses nesting
deeper than `MAX_DEPTH` with a ValueError, which callers already turn into a 400.
"""

from __future__ import annotations

import json
import re
from typing import Any

from p2pbak.errors import TooDeep

MAX_DEPTH = 32  # our bodies nest 3 deep; a ticket 1
_TOKENS = re.compile(rb'[\[\]{}"\\]')


def check_depth(data: bytes, max_depth: int = MAX_DEPTH) -> None:
    """Raise TooDeep if `data` nests arrays/objects deeper than `max_depth`."""
    depth = 0
    in_string = escaped = False
    last = -2
    for m in _TOKENS.finditer(data):
        c, pos = m.group(), m.start()
        if in_string:
            if escaped and pos == last + 1:
                escaped = False
            elif c == b"\\":
                escaped, last = True, pos
            elif c == b'"':
                in_string = False
            continue
        if c == b'"':
            in_string, escaped = True, False
        elif c in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                raise TooDeep(f"JSON nested more than {max_depth} deep")
        elif c in (b"]", b"}"):
            depth -= 1


def loads(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads` with the nesting bounded (TooDeep, a ValueError, beyond it)."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    check_depth(raw, max_depth)
    return json.loads(raw)
