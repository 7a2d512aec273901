"""Integrity across a class: what no single submission shows.

After every submission is graded (or after shards are merged), the class is looked at as a whole:

    near_duplicate      two students' reports share most of their word 4-grams (Jaccard at least
                        NEAR_DUPLICATE; calibrated in docs/GRADING.md)
    resubmission        one student id on several tarballs of the same break and seed
    duplicate_student   one student id on tarballs of different breaks or seeds
    identical_tarball   the very same tarball (SHA-256) handed in more than once

Each flag names the other submissions, goes into grade.json (`class_flags`), grade.md, the
`integrity` column of grades.csv, and is an item for a person to review: only a person can decide
which submission counts or whether two reports were written together. Flags change no points. A
report that copies a reference write-up is found per submission (breaklab.grader.explanation),
scores 0 for its explanation, and is listed in `integrity` too.

The class flags are recomputed from scratch every time, from the grade.json and report.md of each
submission folder, so grading in shards and merging gives the same flags as one run.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from breaklab.atomic import atomic_write_text
from breaklab.grader import similarity

NEAR_DUPLICATE = 0.15
REPORT_COPY = "report.md"   # the submitted report, kept beside grade.json for the class checks


@dataclass
class Flag:
    kind: str
    detail: str
    others: list[str] = field(default_factory=list)

    def review_item(self) -> str:
        return f"integrity: {self.detail}"


def keep_report(folder: Path, grade: dict[str, Any]) -> None:
    """Write the submitted report beside grade.json (the class checks read it back)."""
    text = grade.get("_report")
    if isinstance(text, str):
        atomic_write_text(folder / REPORT_COPY, text)


def class_flags(grades: list[dict[str, Any]], reports: dict[str, str]) -> dict[str, list[Flag]]:
    """submission id -> its class flags, from the grades and the submitted reports."""
    flags: dict[str, list[Flag]] = {g["submission"]: [] for g in grades}
    by_id = {g["submission"]: g for g in grades}

    # One student id on several tarballs.
    students: dict[str, list[str]] = {}
    for g in grades:
        if g.get("student"):
            students.setdefault(g["student"], []).append(g["submission"])
    for student, subs in sorted(students.items()):
        if len(subs) < 2:
            continue
        for sub in subs:
            others = [s for s in subs if s != sub]
            me = by_id[sub]
            same_file = [s for s in others if by_id[s].get("tarball_sha256") == me.get("tarball_sha256")]
            same_task = [s for s in others if (by_id[s].get("break_name"), by_id[s].get("seed")) ==
                         (me.get("break_name"), me.get("seed"))]
            if same_file:
                flags[sub].append(Flag("identical_tarball", f"the same tarball as {', '.join(same_file)} "
                                       f"(student {student}): count it once", same_file))
            rest = [s for s in others if s not in same_file]
            if any(s in same_task for s in rest):
                again = [s for s in rest if s in same_task]
                flags[sub].append(Flag("resubmission", f"student {student} also handed in {', '.join(again)} "
                                       f"for {me.get('break_name')} seed {me.get('seed')}: decide which counts",
                                       again))
            elsewhere = [s for s in rest if s not in same_task]
            if elsewhere:
                flags[sub].append(Flag("duplicate_student", f"student id {student} is also on "
                                       f"{', '.join(elsewhere)} (another break or seed): two people with one "
                                       "id, or one student handing in twice", elsewhere))

    # Near-duplicate reports between different students.
    texts = {sub: similarity.shingles(text) for sub, text in reports.items() if sub in by_id and text.strip()}
    for a, b, score in similarity.similar_pairs(texts, NEAR_DUPLICATE):
        sa, sb = by_id[a].get("student"), by_id[b].get("student")
        if sa and sa == sb:
            continue  # one student's own re-submission: flagged above
        for me, other in ((a, b), (b, a)):
            flags[me].append(Flag("near_duplicate", f"report near-duplicate of {other}'s "
                                  f"(word 4-gram Jaccard {score:.2f}): written together or copied?", [other]))
    return flags


def apply(grades: list[dict[str, Any]], flags: dict[str, list[Flag]]) -> list[str]:
    """Put each submission's class flags in its grade (replacing earlier ones) and return the ids of
    the grades that changed."""
    changed = []
    for g in grades:
        new = flags.get(g["submission"], [])
        old_items = {f"integrity: {f['detail']}" for f in g.get("class_flags", [])}
        new_dicts = [asdict(f) for f in new]
        if new_dicts == g.get("class_flags", []):
            continue
        g["needs_review"] = [r for r in g.get("needs_review", []) if r not in old_items] + \
                            [f.review_item() for f in new]
        if new_dicts:
            g["class_flags"] = new_dicts
        else:
            g.pop("class_flags", None)
        changed.append(g["submission"])
    return changed


def read_reports(out: Path, grades: list[dict[str, Any]]) -> dict[str, str]:
    reports = {}
    for g in grades:
        path = out / g["submission"] / REPORT_COPY
        if path.is_file() and not path.is_symlink():
            reports[g["submission"]] = path.read_text(encoding="utf-8", errors="replace")
    return reports


def finalize(out: Path, grades: list[dict[str, Any]], formats: tuple[str, ...]) -> None:
    """The class checks over out/<submission>/, then every changed grade's files and grades.csv."""
    from breaklab.grader.report import rewrite_submission_outputs, write_class_outputs

    changed = apply(grades, class_flags(grades, read_reports(out, grades)))
    by_id = {g["submission"]: g for g in grades}
    for sub in changed:
        rewrite_submission_outputs(out / sub, by_id[sub], gradescope="gradescope" in formats)
    write_class_outputs(out, grades, formats)


def load_grade(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "grade.json").read_text())
