"""How much two texts share, measured on word shingles (runs of N consecutive words).

Reports are compared on their prose only: the template's headings and comments, the ```symptom
block and punctuation do not count, and numbers are kept (two honest reports of the same run share
numbers, never long runs of words). Two measures:

    jaccard(a, b)      |A & B| / |A | B|: the share of all shingles the two texts have in common
    containment(a, b)  |A & B| / |A|: the share of a's shingles found in b (a copied into a longer b,
                       or b into a, still scores high in one direction)

The thresholds that turn these into flags (breaklab.grader.integrity) were calibrated on reports
written independently against lightly edited copies of them (docs/GRADING.md).
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Iterable

from breaklab.submission import prose

SHINGLE_WORDS = 4
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s.*$", re.M)
_WORD = re.compile(r"[a-z0-9]+(?:['’.][a-z0-9]+)*")


def words(text: str) -> list[str]:
    """The report's prose as lower-case words, headings removed."""
    return _WORD.findall(_HEADING.sub(" ", prose(text)).lower())


def shingles(text: str, n: int = SHINGLE_WORDS) -> frozenset[tuple[str, ...]]:
    w = words(text)
    if len(w) < n:
        return frozenset([tuple(w)]) if w else frozenset()
    return frozenset(tuple(w[i:i + n]) for i in range(len(w) - n + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def containment(a: frozenset, b: frozenset) -> float:
    """The share of a's shingles that are also in b."""
    if not a:
        return 0.0
    return len(a & b) / len(a)


def similar_pairs(texts: dict[str, frozenset], threshold: float) -> list[tuple[str, str, float]]:
    """Pairs (a, b, jaccard) with jaccard >= threshold, a < b, most similar first.

    An inverted index (shingle -> texts) counts shared shingles only for pairs that share any, so a
    class of a few thousand reports is compared in seconds rather than by all pairs of sets."""
    index: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for key in sorted(texts):
        for s in texts[key]:
            index[s].append(key)
    shared: dict[tuple[str, str], int] = defaultdict(int)
    for keys in index.values():
        if len(keys) > 1:
            for i, a in enumerate(keys):
                for b in keys[i + 1:]:
                    shared[(a, b)] += 1
    out = []
    for (a, b), n in shared.items():
        union = len(texts[a]) + len(texts[b]) - n
        score = n / union if union else 0.0
        if score >= threshold:
            out.append((a, b, round(score, 3)))
    return sorted(out, key=lambda t: (-t[2], t[0], t[1]))


def best_match(text: frozenset, others: Iterable[tuple[str, frozenset]]) -> tuple[str | None, float]:
    """The other text containing the largest share of text's shingles, and that share."""
    best, score = None, 0.0
    for name, other in others:
        c = containment(text, other)
        if c > score:
            best, score = name, c
    return best, score
