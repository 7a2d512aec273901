"""Grading at scale, end to end (these re-run trainings: slow). A class of three real 1-epoch
submissions graded in one run and in two shards merged by examples/grade_in_shards.sh gives the
same grades.csv, near-duplicate flags across shards included; the Gradescope bundle grades a
real submission on a fake /autograder tree and writes a valid results.json.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import submission_fixtures as fx
from report_corpus import HONEST, light_edit

pytestmark = [pytest.mark.slow, pytest.mark.release]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def inbox(tmp_path_factory) -> Path:
    """Three students, one fixed huge_lr run (built once), three reports: ben's and cy's are a
    near-duplicate pair, and they fall into different shards."""
    base = fx.reference("huge_lr")
    folder = tmp_path_factory.mktemp("inbox")
    reports = {"ann": HONEST["huge_lr"][0], "ben": HONEST["huge_lr"][1],
               "cy": light_edit(HONEST["huge_lr"][1], 0.1, 11)}
    for student, text in reports.items():
        sub = fx.repack(base, f"scale_{student}", fx._report(text, student))
        shutil.copy(sub, folder / f"submission_huge_lr_42_{student}.tgz")
    return folder


def breaklab(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "breaklab", *args], capture_output=True, text=True, **kw)


def test_two_shards_merged_give_the_grades_of_one_run(inbox, tmp_path):
    course = fx.workspace() / "course"
    one = breaklab("grade", str(inbox), "--repo", str(course), "--out", str(tmp_path / "one"), "--no-plots",
                   timeout=1800)
    assert one.returncode == 0, one.stdout + one.stderr
    assert "could not grade 0 of 3" in one.stdout
    env = {**os.environ, "INBOX": str(inbox), "REPO": str(course), "OUT": str(tmp_path / "sharded"), "N": "2",
           "BREAKLAB": f"{sys.executable} -m breaklab", "GRADE_OPTIONS": "--no-plots"}
    sharded = subprocess.run([str(ROOT / "examples" / "grade_in_shards.sh")], env=env, capture_output=True,
                             text=True, timeout=1800)
    assert sharded.returncode == 0, sharded.stdout + sharded.stderr
    shard_1 = json.loads((tmp_path / "sharded" / "shard-1" / "shard.json").read_text())
    assert shard_1["submissions"] == ["submission_huge_lr_42_ann", "submission_huge_lr_42_cy"]
    merged = (tmp_path / "sharded" / "class" / "grades.csv").read_text()
    assert merged == (tmp_path / "one" / "grades.csv").read_text()
    rows = {r["student"]: r for r in csv.DictReader(merged.splitlines())}
    assert "near-duplicate of submission_huge_lr_42_cy" in rows["ben"]["integrity"]
    assert rows["ann"]["needs_review"] == "no" and float(rows["ann"]["score"]) >= 95


def test_gradescope_bundle_grades_a_real_submission(inbox, tmp_path):
    from breaklab.grader.autograder import build_bundle, extract, run_local

    bundle = tmp_path / "autograder.zip"
    build_bundle(bundle, fx.workspace() / "course", ROOT)
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    extract(bundle, root / "source")
    shutil.copy(inbox / "submission_huge_lr_42_ann.tgz", root / "submission")
    proc = run_local(root, sys.executable, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] >= 95 and results["output"].startswith("graded: ")
    tests = results["tests"]
    assert len(tests) == 15 and sum(t["max_score"] for t in tests) == 100
    assert sum(t["score"] for t in tests) == pytest.approx(results["score"])
    assert all({"name", "score", "max_score", "output", "visibility"} <= set(t) for t in tests)
