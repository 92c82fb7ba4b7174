"""Print the README's two commands (the shell blocks under "## Two commands"), one a line.

CI runs exactly these, so the README cannot drift from what works on a fresh machine.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def two_commands(readme: str) -> list[str]:
    section = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)\n```", section, flags=re.S)
    if len(blocks) != 2 or any("\n" in b for b in blocks):
        sys.exit("README: '## Two commands' must hold exactly two one-line ```sh blocks")
    return blocks


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    print("\n".join(two_commands((root / "README.md").read_text(encoding="utf-8"))))
