"""`breaklab submit`: the report's format, the clear errors, and a byte-reproducible tarball whose
manifest describes exactly what is inside.

These tests are part of the student kit: they use no reference fix or write-up (solutions/), only
a report in the required format and an edit that is not a fix."""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from breaklab.cli import cli
from breaklab.submission import (MAX_WORDS, SubmitError, check_report, parse_symptom_block,
                                 sections_present, word_count)
from breaklab.grader import gitrepo, intake


ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "reports" / "TEMPLATE.md"
SEED, EPOCHS = 42, 1

# A report in the required format (four sections, a symptom block). It diagnoses nothing: these
# tests check the command, and the student kit has no reference write-ups.
REPORT = """# huge_lr

## Symptoms
The training loss rises over the first steps.

```symptom
metric: loss
step: 2
value: 4.0
```

## Root cause
Not part of this test.

## Fix
Not part of this test.

## Verification
Not part of this test.
"""


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A clone of this repository's HEAD: the course repository the students cloned."""
    dest = tmp_path_factory.mktemp("course") / "course"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    return dest


def student_clone(course: Path, dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(course), str(dest)], check=True)
    return dest


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------

def test_template_has_the_sections_and_the_symptom_block():
    text = TEMPLATE.read_text()
    assert all(sections_present(text).values())
    claim = parse_symptom_block(text)
    assert claim is not None and not claim["errors"] and claim["metric"] == "loss"
    assert word_count(text) < 50  # the instructions are comments: the student's 500 words are free
    assert word_count(TEMPLATE.read_text()) <= MAX_WORDS and len(TEMPLATE.read_text().split()) <= 500


def test_word_count_skips_comments_and_fenced_blocks():
    text = "# T\n<!-- one two three -->\nfour five\n```symptom\nmetric: loss\n```\nsix grad_norm 1.5e-3\n"
    assert word_count(text) == 6  # T, four, five, six, grad_norm, 1.5e-3
    assert word_count("don't stop 0.5 logit_rowsum_mean") == 4


def test_sections_are_headings_at_any_level_and_case():
    text = "## symptoms\n### Root Cause:\n# Fix\nVerification\n"
    assert sections_present(text) == {"Symptoms": True, "Root cause": True, "Fix": True, "Verification": False}
    assert not any(sections_present("<!--\n## Symptoms\n-->").values())


def test_symptom_block_parsing():
    ok = parse_symptom_block("```symptom\nmetric: grad_mean.fc1.weight\nstep: 12\nvalue: 3.5e-4\n```")
    assert ok == {"errors": [], "metric": "grad_mean.fc1.weight", "step": 12, "value": 3.5e-4}
    epoch = parse_symptom_block("```symptom\nmetric: test_acc\nepoch: 0\nvalue: 0.1\n```")
    assert epoch["epoch"] == 0 and not epoch["errors"]
    bad = parse_symptom_block("```symptom\nmetric: loss; rm -rf\nstep: two\nvalue: high\n```")
    assert len(bad["errors"]) == 4 and "metric" not in bad
    assert parse_symptom_block("no block here") is None


def test_check_report_errors_and_warnings(tmp_path):
    with pytest.raises(SubmitError, match="does not exist"):
        check_report(tmp_path / "missing.md")
    (tmp_path / "empty.md").write_text("<!-- only a comment -->\n")
    with pytest.raises(SubmitError, match="empty"):
        check_report(tmp_path / "empty.md")
    (tmp_path / "long.md").write_text("## Symptoms\n" + "word " * (MAX_WORDS + 1))
    with pytest.raises(SubmitError, match=f"{MAX_WORDS + 2} words; the limit is {MAX_WORDS}"):
        check_report(tmp_path / "long.md")
    (tmp_path / "partial.md").write_text("## Symptoms\nloss went up\n")
    _, warnings = check_report(tmp_path / "partial.md")
    assert sum("section" in w for w in warnings) == 3 and any("symptom block" in w for w in warnings)


# ---------------------------------------------------------------------------------------------
# The command's errors (all raised before any training)
# ---------------------------------------------------------------------------------------------

def submit(*args: str):
    return CliRunner().invoke(cli, ["submit", *args])


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.md"
    path.write_text(REPORT)
    # Complete; only short (a test report): the one warning says what a short report costs.
    assert [w.split(";")[0] for w in check_report(path)[1]] == ["the report has 29 words"]
    return path


@pytest.mark.slow
def test_submit_errors_are_one_line_and_name_the_fix(tmp_path, report, course, monkeypatch):
    # No tarball may be written for a refused submission: not in the folder it runs from either
    # (which, for a person who followed the README, already holds their own submission_*.tgz).
    monkeypatch.chdir(tmp_path)
    base = ["--seed", "42", "--break", "huge_lr"]
    r = submit(*base, "--report", str(tmp_path / "nope.md"), "--repo", str(tmp_path))
    assert r.exit_code == 1 and "does not exist" in r.output and "Traceback" not in r.output
    long = tmp_path / "long.md"
    long.write_text("## Symptoms\n" + "word " * 600)
    r = submit(*base, "--report", str(long), "--repo", str(tmp_path))
    assert r.exit_code == 1 and "the limit is 500" in r.output
    plain = tmp_path / "plain"
    plain.mkdir()
    r = submit(*base, "--report", str(report), "--repo", str(plain))
    assert r.exit_code == 1 and "is not a git checkout" in r.output
    unchanged = student_clone(course, tmp_path / "unchanged")
    r = submit(*base, "--report", str(report), "--repo", str(unchanged))
    assert r.exit_code == 1 and "nothing was changed" in r.output
    r = submit("--seed", "42", "--break", "nope", "--report", str(report), "--repo", str(unchanged))
    assert r.exit_code == 1 and "unknown break 'nope'" in r.output
    r = submit("--seed", "42", "--break", "no_warmup", "--report", str(report), "--repo", str(unchanged))
    assert r.exit_code == 1 and "no_warmup is a control" in r.output and "Traceback" not in r.output
    r = submit(*base, "--report", str(report), "--repo", str(unchanged), "--student", "../x")
    assert r.exit_code == 1 and "--student" in r.output
    r = submit(*base, "--report", str(report), "--repo", str(unchanged), "--base", "no-such-rev")
    assert r.exit_code == 1 and "no such commit" in r.output
    assert not list(tmp_path.glob("*.tgz")) and not list(unchanged.glob("*.tgz"))


# ---------------------------------------------------------------------------------------------
# The tarball
# ---------------------------------------------------------------------------------------------

def not_a_fix(tree: Path) -> None:
    """A tracked change that leaves training as it is: one comment line in the break's module."""
    path = tree / "breaks" / "huge_lr.py"
    path.write_text("# looked at this file\n" + path.read_text())


@pytest.mark.slow
def test_submission_is_byte_reproducible_and_its_manifest_is_complete(tmp_path, course, report):
    tree = student_clone(course, tmp_path / "student")
    not_a_fix(tree)
    evidence = tmp_path / "evidence.json"
    evidence.write_text(json.dumps({"metric": "loss", "step": 2, "value": 4.0}))
    args = ["--seed", str(SEED), "--break", "huge_lr", "--epochs", str(EPOCHS), "--report", str(report),
            "--evidence", str(evidence), "--student", "student-1", "--repo", str(tree)]
    first, again = tmp_path / "first.tgz", tmp_path / "again.tgz"
    r = submit(*args, "--tarball", str(first))
    assert r.exit_code == 0, r.output
    # Before packing, submit said what the grader will take off, measured on this broken run:
    # the report claims loss 4.0 at step 2, the evidence shows the same number (not the run's),
    # and the edit is outside the hook.
    assert "warning: claim_matches will cost 12 of its 12 points" in r.output
    assert "warning: evidence will cost 4 of its 6 points" in r.output
    assert "warning: minimal_scope will cost 6 of its 6 points" in r.output
    r = submit(*args, "--tarball", str(again))
    assert r.exit_code == 0, r.output
    assert again.read_bytes() == first.read_bytes()
    digest = hashlib.sha256(first.read_bytes()).hexdigest()
    assert f"sha256:     {digest}" in r.output
    check = subprocess.run(["sha256sum", "-c", again.name + ".sha256"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    sub = intake.open_submission(first, tmp_path / "x")
    m = sub.manifest
    head = gitrepo.resolve_commit(course, "HEAD")
    assert (m["break"], m["seed"], m["epochs"], m["threads"], m["student"]) == ("huge_lr", 42, 1, 1, "student-1")
    assert m["base_commit"] == head
    assert {"python", "torch", "threads", "device"} <= set(m["env"])
    assert set(m["files"]) == set(intake.REQUIRED_FILES) | {"evidence/evidence.json"}
    for run in ("broken", "fixed"):
        meta = json.loads(sub.read_text(f"{run}/meta.json"))
        assert meta["break"] == "huge_lr" and meta["seed"] == 42 and meta["status"] == "complete"
        assert meta["git"]["commit"] == head and meta["git"]["dirty"] is (run == "fixed")
    patch = gitrepo.parse_patch(sub.path("fix.patch").read_bytes())
    assert [(c.path, c.changed_lines) for c in patch] == [("breaks/huge_lr.py", 1)]
    assert "--break huge_lr --epochs 1 --threads 1" in sub.read_text("commands.txt")
    assert head in sub.read_text("commands.txt")
    # The fixed run was trained from the edited tree; a comment changes nothing it computes.
    broken = json.loads(sub.read_text("broken/summary.json"))
    fixed = json.loads(sub.read_text("fixed/summary.json"))
    assert broken["test_acc"] < 0.5 and fixed["test_acc"] == broken["test_acc"]
    assert sub.path("fixed/metrics.jsonl").read_bytes() == sub.path("broken/metrics.jsonl").read_bytes()
