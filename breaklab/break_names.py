"""The names a `--break` may take, read from the file names in breaks/ without importing them.

Importing the breaks imports torch (seconds); a mistyped name should be answered at once, before
anything heavy loads. demo_run.sh runs this file as a script before it takes its lock:

    python breaklab/break_names.py hugelr
    error: unknown break 'hugelr'; did you mean huge_lr? valid breaks: none, ... (see: breaklab list)

It imports nothing outside the standard library, so it also works where the environment with
torch is not active. Exit status 0 for a valid name, 2 (a usage error) otherwise. With --list it
prints every break's name, one a line.
"""
from __future__ import annotations

import difflib
import sys
from pathlib import Path

SPECIAL = ("none", "mystery")  # the clean loop, and a break picked from the seed with its name hidden
NOT_BREAKS = ("__init__", "base")


def breaks_folder() -> Path:
    """breaks/ beside this package in a checkout, or breaklab/breaks in an installed wheel."""
    here = Path(__file__).resolve().parent
    for folder in (here.parent / "breaks", here / "breaks"):
        if (folder / "base.py").is_file():
            return folder
    raise FileNotFoundError(f"no breaks/ folder beside {here}")


def break_names() -> list[str]:
    return sorted(p.stem for p in breaks_folder().glob("*.py") if p.stem not in NOT_BREAKS)


def valid_names() -> list[str]:
    return ["none", *break_names(), "mystery"]


def closest(name: str) -> str | None:
    """The valid name a typo most likely meant: hugelr, huge-lr and Huge_LR all give huge_lr."""
    valid = valid_names()
    squashed = {v.replace("_", ""): v for v in valid}
    key = name.lower().replace("-", "").replace("_", "").replace(" ", "")
    if key in squashed:
        return squashed[key]
    match = difflib.get_close_matches(name.lower(), valid, n=1, cutoff=0.6)
    return match[0] if match else None


def unknown_break_message(name: str) -> str:
    guess = closest(name)
    hint = f" did you mean {guess}?" if guess else ""
    return (f"unknown break {name!r};{hint} valid breaks: {', '.join(valid_names())} "
            f"(see: breaklab list)")


def main(argv: list[str]) -> int:
    if argv == ["--list"]:
        print("\n".join(break_names()))
        return 0
    if len(argv) != 1:
        print("usage: python breaklab/break_names.py NAME  (or --list: every break's name)", file=sys.stderr)
        return 2
    if argv[0] in valid_names():
        return 0
    print(f"error: {unknown_break_message(argv[0])}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
