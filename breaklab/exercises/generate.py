"""Cut an exercise from the clean template: pick a variant and bugs from the seed, apply the
mutations, write train.py, and write the key somewhere else.

Everything the seed decides is decided by SHA-256 of the seed and a purpose word, so the same
seed gives the same script on every machine and Python version.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from breaklab.exercises.mutations import MUTATIONS
from breaklab.exercises.template import Script, Variant, render


@dataclass
class Buggy:
    """A clean script with some mutations applied, and where each bug's code now is."""

    clean: Script
    lines: list[str]
    bugs: tuple[str, ...]
    spans: dict[str, tuple[int, int]]    # bug -> [start, end) of its buggy line(s) (empty when deleted)
    regions: dict[str, tuple[int, int]]  # bug -> [start, end) of the region a fix may touch

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def apply_mutations(variant: Variant, bugs: tuple[str, ...] | list[str]) -> Buggy:
    """The variant's clean script with each named mutation applied at its site."""
    clean = render(variant)
    unknown = [b for b in bugs if b not in MUTATIONS]
    if unknown:
        raise ValueError(f"unknown bug(s) {', '.join(unknown)}; known: {', '.join(MUTATIONS)}")
    replacement = {clean.sites[b]: (b, MUTATIONS[b].apply(clean.lines[clean.sites[b]], variant)) for b in bugs}
    lines: list[str] = []
    new_index: list[int] = []  # clean line i -> where it, or what replaced it, starts in the buggy script
    spans: dict[str, tuple[int, int]] = {}
    for i, line in enumerate(clean.lines):
        new_index.append(len(lines))
        if i in replacement:
            bug, new = replacement[i]
            spans[bug] = (len(lines), len(lines) + len(new))
            lines.extend(new)
        else:
            lines.append(line)
    new_index.append(len(lines))
    regions = {}
    for bug in bugs:
        start, end = clean.region(bug)
        regions[bug] = (new_index[start], new_index[end])
    return Buggy(clean, lines, tuple(sorted(bugs)), spans, regions)


def seeded_index(seed: int, purpose: str, n: int) -> int:
    """A number in [0, n) from the seed and a purpose word: the same everywhere."""
    digest = hashlib.sha256(f"breaklab-exercise:{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n
