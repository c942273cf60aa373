"""The command line every data script shares: write its word file, or check the shipped one against it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def write_or_check(out: Path, make, description: str) -> None:
    """Parse `--check`; `make()` returns (text, source, made): the file's text, what it was made from (for
    the check's line) and what was written (for the write's line). Without --check write `text` to `out`;
    with it print whether `out` matches and exit 1 when it does not."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--check", action="store_true", help=f"compare with data/{out.name} instead of writing it")
    args = ap.parse_args()
    text, source, made = make()
    if args.check:
        same = out.exists() and out.read_text(encoding="utf-8") == text
        print(f"{out.name} {'matches' if same else 'DIFFERS from'} {source}")
        sys.exit(0 if same else 1)
    out.write_text(text, encoding="utf-8", newline="\n")
    print(f"wrote {out} ({made})")
