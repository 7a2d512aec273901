"""Reference solutions: per break, the minimal fix (fix.patch), the write-up (WRITEUP.md) and
what the grader needs to judge a fix (rubric.json). Not part of the student hand-out."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SOLUTIONS_DIR = Path(__file__).resolve().parent


def names(root: Path = SOLUTIONS_DIR) -> list[str]:
    return sorted(p.name for p in root.iterdir() if (p / "fix.patch").is_file())


def rubric(name: str, root: Path = SOLUTIONS_DIR) -> dict[str, Any]:
    return json.loads((root / name / "rubric.json").read_text())


def fix_patch(name: str, root: Path = SOLUTIONS_DIR) -> bytes:
    return (root / name / "fix.patch").read_bytes()


def writeup(name: str, root: Path = SOLUTIONS_DIR) -> str:
    return (root / name / "WRITEUP.md").read_text()
