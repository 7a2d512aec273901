"""Mystery mode: a run whose break is picked from the seed and never written down.

`--break mystery` records only the word "mystery" (in meta.json, the checkpoint's config and the
command); `breaks.mystery_choice(seed)` says which break (or none) it was. `reveal` is the one
place that looks it up, after the person has made a guess.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breaklab.breaks import BREAK_NAMES, MYSTERY, REGISTRY, mystery_choice

ROOT = Path(__file__).resolve().parent.parent
# Accepted spellings of "there is no bug".
HEALTHY_WORDS = {"none", "healthy", "clean"}


class RevealError(Exception):
    """The run cannot be revealed (message says why and what to do)."""


@dataclass
class Reveal:
    actual: str          # the break's name, or "none"
    guess: str
    right: bool
    was_mystery: bool
    writeup: str
    writeup_source: str


def normalise_guess(guess: str) -> str:
    g = guess.strip().lower().replace("-", "_")
    if g in HEALTHY_WORDS:
        return "none"
    if g not in BREAK_NAMES:
        raise RevealError(f"unknown guess {guess!r}: guess one of none, {', '.join(BREAK_NAMES)}")
    return g


def actual_break(meta: dict[str, Any] | None) -> tuple[str, bool]:
    """The break a run used, from its meta.json (seed and recorded break)."""
    if not meta or "seed" not in meta or "break" not in meta:
        raise RevealError("the run has no meta.json with its seed and break: reveal needs the run "
                          "folder or tarball that demo_run.sh made")
    recorded, seed = meta["break"], meta["seed"]
    if recorded == MYSTERY:
        return mystery_choice(int(seed)), True
    if recorded != "none" and recorded not in REGISTRY:
        raise RevealError(f"meta.json names an unknown break {recorded!r}")
    return recorded, False


def writeup(name: str) -> tuple[str, str]:
    """The reference write-up: solutions/NAME/WRITEUP.md when it exists, else the break module's
    docstring (what the bug is and why it shows as it does)."""
    path = ROOT / "solutions" / name / "WRITEUP.md"
    if path.is_file():
        return path.read_text(encoding="utf-8"), str(path.relative_to(ROOT))
    cls = REGISTRY[name]
    module = inspect.getmodule(cls)
    doc = inspect.getdoc(module) if name != "none" and module is not None else None
    if not doc:
        doc = "No break: the canonical training loop. The loss falls from ln 10 and every metric looks healthy."
    source = f"breaks/{name}.py (docstring)" if name != "none" else "breaks/base.py"
    return doc, source


def reveal(meta: dict[str, Any] | None, guess: str) -> Reveal:
    g = normalise_guess(guess)
    actual, was_mystery = actual_break(meta)
    text, source = writeup(actual)
    return Reveal(actual, g, g == actual, was_mystery, text, source)
