"""Regenerate man/*.1 from the p2pbak command line and the hand-written man/sections/.

    python scripts/gen_man.py            # rewrite man/
    python scripts/gen_man.py --out DIR  # write somewhere else (the tests compare)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from p2pbak.manpages import ManError, write  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: man/)")
    args = parser.parse_args()
    try:
        names = write(ROOT / "man", args.out)
    except ManError as exc:
        print(f"gen_man: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(names)} pages to {args.out or ROOT / 'man'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
