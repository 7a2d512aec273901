"""The catalogue of breaks, read without importing them.

Each break is a module in breaks/ whose class sets a few plain attributes (name, category,
description, ...). `breaklab list`, the did-you-mean of a mistyped name and every other "is this a
break?" question read those attributes from the source with `ast`, so that they answer in well
under a second: importing the breaks themselves imports torch (seconds). The registry that runs
them is breaklab.breaks; a test checks that both agree.
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

NONE = "none"
MYSTERY = "mystery"


@dataclass(frozen=True)
class Entry:
    name: str
    category: str
    description: str
    symptom: str
    metric: str
    hook: str
    control: bool = False      # a change that looks suspicious and does no harm here
    needs_amp: bool = False


def breaks_folder() -> Path:
    spec = importlib.util.find_spec("breaklab.breaks")  # finds the folder without running it
    return Path(next(iter(spec.submodule_search_locations)))


def _class_attributes(node: ast.ClassDef) -> dict[str, object]:
    values = {}
    for stmt in node.body:
        target = value = None
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target, value = stmt.target, stmt.value
        if isinstance(target, ast.Name):
            try:
                values[target.id] = ast.literal_eval(value)
            except ValueError:
                pass
    return values


@lru_cache(maxsize=1)
def entries() -> tuple[Entry, ...]:
    """Every break (controls included), sorted as the registry lists them: by module name."""
    found = []
    for path in sorted(breaks_folder().glob("*.py")):
        if path.stem in ("__init__", "base"):
            continue
        for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
            if isinstance(node, ast.ClassDef):
                attrs = _class_attributes(node)
                if isinstance(attrs.get("name"), str):
                    fields = {k: attrs[k] for k in Entry.__dataclass_fields__ if k in attrs}
                    found.append(Entry(**{"category": "", "description": "", "symptom": "", "metric": "",
                                          "hook": "", **fields}))
    return tuple(found)


def names(controls: bool = True) -> list[str]:
    return [e.name for e in entries() if controls or not e.control]


def is_known(name: str) -> bool:
    """A name `--break` accepts: a break, a control, none, or mystery."""
    return name in (NONE, MYSTERY) or name in names()


def closest(name: str) -> str | None:
    """The valid name a typo most likely meant: hugelr, huge-lr and Huge_LR all give huge_lr."""
    valid = [NONE, *names(), MYSTERY]
    squashed = {v.replace("_", ""): v for v in valid}
    key = name.lower().replace("-", "").replace("_", "").replace(" ", "")
    if key in squashed:
        return squashed[key]
    match = difflib.get_close_matches(name.lower(), valid, n=1, cutoff=0.6)
    return match[0] if match else None


def unknown_message(name: str) -> str:
    guess = closest(name)
    hint = f" did you mean {guess}?" if guess else ""
    return f"unknown break {name!r};{hint} valid breaks: {', '.join([NONE, *names(), MYSTERY])} (see: breaklab list)"


if __name__ == "__main__":  # `python -m breaklab.catalogue NAME`: exit 0 for a known name, else say why
    import sys

    if len(sys.argv) == 2 and not is_known(sys.argv[1]):
        print(f"error: {unknown_message(sys.argv[1])}", file=sys.stderr)
        sys.exit(2)
