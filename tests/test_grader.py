"""The grader: reference submissions score >= 95, each bad submission loses exactly the points
it should, hostile tarballs are rejected with a reason and nothing lands outside --out, and the
outputs (grade.json, grade.md, grades.csv, Gradescope results.json) are complete.

All submissions are graded in one grader call (tests/submission_fixtures.py): 1 epoch, seed 42.
"""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from breaklab.grader import intake
from breaklab.grader.rubric import WEIGHTS

import submission_fixtures as fx



@pytest.fixture(scope="module")
def grades():
    return fx.graded()


def points(grade) -> dict[str, float]:
    return {c["name"]: c["points"] for c in grade["criteria"]}


@pytest.mark.slow
@pytest.mark.parametrize("name", fx.BREAKS)
def test_reference_submission_scores_at_least_95(grades, name):
    g = grades[name]
    assert g["status"] == "graded", g.get("reason")
    assert g["score"] >= 95, [c for c in g["criteria"] if c["points"] < c["max"]]
    assert g["break_name"] == name and g["seed"] == fx.SEED
    # Every criterion carries points, maximum and a reason; the groups add up to the weights.
    assert all({"group", "name", "points", "max", "reason"} <= set(c) and c["reason"] for c in g["criteria"])
    for group, weight in WEIGHTS.items():
        assert sum(c["max"] for c in g["criteria"] if c["group"] == group) == weight
    assert g["reruns"]["broken"]["ok"] and g["reruns"]["fixed"]["ok"]
    # Nothing for a person to decide about an honest submission: no criterion asks for review,
    # and the only items are class flags where the class gives a reason: huge_lr's student
    # re-submitted it (the variants below), and the wrong-fix and non-minimal-fix students handed
    # in the label_permute and huge_lr reports word for word.
    assert not [c for c in g["criteria"] if c.get("review")]
    assert all(item.startswith("integrity: ") for item in g["needs_review"])
    if name not in ("huge_lr", "label_permute"):
        assert g["needs_review"] == [], g["needs_review"]


# (bad submission, the reference it derives from, {criterion: points it keeps})
BAD = {
    "wrong_fix": ("label_permute", {"recovers": 0}),
    # trainer.py is outside the break's files: not run, so the hook is still broken (no fix points,
    # no points for the fixed run)
    "non_minimal_fix": ("huge_lr", {"minimal_scope": 0, "minimal_size": 0, "recovers": 0,
                                    "fixed_metrics": 0, "fixed_checkpoint": 0}),
    # an edited run costs every reproducibility point (and raises an integrity flag)
    "tampered_metrics": ("huge_lr", {"broken_metrics": 0, "broken_checkpoint": 0, "fixed_metrics": 0,
                                     "fixed_checkpoint": 0}),
    "long_report": ("huge_lr", {"length": 0}),
    "missing_section": ("huge_lr", {"sections": 1.5}),
    "wrong_claim": ("huge_lr", {"claim_matches": 0}),
}


@pytest.mark.slow
@pytest.mark.parametrize("bad", sorted(BAD))
def test_bad_submission_loses_exactly_its_points(grades, bad):
    ref_name, expected = BAD[bad]
    ref, got = points(grades[ref_name]), points(grades[bad])
    assert grades[bad]["status"] == "graded"
    for name, value in ref.items():
        if name in expected:
            assert got[name] == expected[name], (bad, name, grades[bad]["criteria"])
        elif name == "causal_chain" and bad == "long_report":
            assert got[name] == value  # the filler names nothing new, takes nothing away
        else:
            assert got[name] == value, (bad, name)
    lost = sum(ref[n] - expected[n] for n in expected)
    assert grades[bad]["score"] == pytest.approx(grades[ref_name]["score"] - lost)


@pytest.mark.slow
def test_bad_submissions_say_why(grades):
    reason = lambda bad, name: fx.criterion(grades[bad], name)["reason"]
    assert "does not recover" in reason("wrong_fix", "recovers")
    assert "trainer.py" in reason("non_minimal_fix", "minimal_scope")
    assert grades["non_minimal_fix"]["reruns"]["fixed"] is None  # out of scope: not run
    assert any("trainer.py" in n for n in grades["non_minimal_fix"]["notes"])
    assert "edited or not made by this code" in reason("tampered_metrics", "broken_metrics")
    assert grades["tampered_metrics"]["integrity"] and not grades["huge_lr"]["integrity"]
    assert re.search(r"\d+ words \(limit 500\)", reason("long_report", "length"))
    assert "Verification" in reason("missing_section", "sections")
    assert "0.5" in reason("wrong_claim", "claim_matches") and "7.662" in reason("wrong_claim", "claim_matches")


@pytest.mark.slow
def test_explanations_are_graded_on_reasoning(grades):
    """The same fixed run with other reports: a keyword list earns at most 4 of 15, the reference
    write-up copied earns 0 and is flagged; the honest report earns at least 12."""
    expl = lambda g: g["groups"]["explanation"]["points"]
    ref = grades["huge_lr"]
    assert expl(ref) >= 12
    for name in ("keyword_report", "copied_writeup"):
        g = grades[name]
        assert g["status"] == "graded"
        # Only the explanation differs from the reference submission.
        assert {k: v for k, v in points(g).items() if fx.criterion(g, k)["group"] != "explanation"} == \
               {k: v for k, v in points(ref).items() if fx.criterion(ref, k)["group"] != "explanation"}
    assert expl(grades["keyword_report"]) <= 4
    copied = grades["copied_writeup"]
    assert expl(copied) == 0
    assert copied["integrity"] == ["copies the reference write-up solutions/huge_lr/WRITEUP.md (100%)"]
    assert any("copies a reference write-up" in r for r in copied["needs_review"])


@pytest.mark.slow
def test_class_integrity_flags(grades):
    flags = lambda name: {f["kind"]: f for f in grades[name].get("class_flags", [])}
    a, b = grades["duplicate_a"]["submission"], grades["duplicate_b"]["submission"]
    assert flags("duplicate_a")["near_duplicate"]["others"] == [b]
    assert flags("duplicate_b")["near_duplicate"]["others"] == [a]
    r1, r2 = grades["resubmission_1"]["submission"], grades["resubmission_2"]["submission"]
    assert flags("resubmission_1")["resubmission"]["others"] == [r2] and "decide which counts" in \
        flags("resubmission_1")["resubmission"]["detail"]
    # Different students' honest reports of the same break are not flagged.
    assert "near_duplicate" not in flags("loss_sum") and "near_duplicate" not in flags("keyword_report")
    rows = {r["submission"]: r for r in csv.DictReader((fx.workspace() / "graded" / "grades.csv").open())}
    assert rows[a]["needs_review"] == "yes" and f"near-duplicate of {b}" in rows[a]["integrity"]
    assert rows[grades["amp_no_scaling"]["submission"]]["needs_review"] == "no"
    from breaklab.grader.report import md as markdown_escaped

    md = (fx.workspace() / "graded" / a / "grade.md").read_text()
    assert "## Integrity" in md and markdown_escaped(b) in md


# ---------------------------------------------------------------------------------------------
# Hostile tarballs
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(fx.HOSTILE_REASONS))
def test_hostile_tarball_is_rejected_by_intake_with_a_reason(name, tmp_path):
    box = tmp_path / "box"
    box.mkdir()
    with pytest.raises(intake.Rejected) as e:
        intake.open_submission(fx.hostile()[name], box / "x")
    assert re.search(fx.HOSTILE_REASONS[name], str(e.value)), str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["box"]
    assert not (Path("/tmp") / fx.ESCAPE_NAME).exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(fx.HOSTILE_REASONS))
def test_hostile_submission_gets_zero_and_the_rest_are_graded(grades, name):
    g = grades[name]
    assert g["status"] == "rejected" and g["score"] == 0
    assert re.search(fx.HOSTILE_REASONS[name], g["reason"]), g["reason"]
    folder = fx.workspace() / "graded" / g["submission"]
    assert json.loads((folder / "grade.json").read_text())["status"] == "rejected"
    assert all(grades[b]["status"] == "graded" for b in fx.BREAKS)


@pytest.mark.slow
def test_nothing_is_written_outside_the_output_folder(grades):
    ws = fx.workspace()
    assert sorted(p.name for p in ws.iterdir()) == ["course", "evidence", "graded", "hostile", "reports",
                                                     "students", "subs"]
    assert not list(ws.rglob(fx.ESCAPE_NAME))
    assert not (Path("/tmp") / fx.ESCAPE_NAME).exists()
    # The course repository is untouched: no worktrees, no changes.
    course = ws / "course"
    assert subprocess.run(["git", "status", "--porcelain"], cwd=course, capture_output=True,
                          text=True).stdout == ""
    assert not (course / ".git" / "worktrees").exists()


@pytest.mark.slow
def test_sandbox_limits_time_and_scrubs_the_environment(tmp_path, monkeypatch):
    import time

    from breaklab.grader.sandbox import run_sandboxed

    monkeypatch.setenv("SECRET_TOKEN", "do-not-leak")
    res = run_sandboxed(["python3", "-c", "import os; print(sorted(os.environ)); print(os.getcwd())"],
                        cwd=tmp_path, timeout=30)
    assert res.ok and "SECRET_TOKEN" not in res.stdout and str(tmp_path) in res.stdout
    start = time.monotonic()
    # A child that forks a grandchild and sleeps: the whole group dies at the timeout.
    res = run_sandboxed(["sh", "-c", "sleep 60 & sleep 60"], cwd=tmp_path, timeout=1)
    assert res.timed_out and time.monotonic() - start < 10
    res = run_sandboxed(["python3", "-c", "while True: pass"], cwd=tmp_path, timeout=30, cpu_seconds=1)
    assert not res.ok and "CPU" in res.why()
    if res.network_isolated:
        net = run_sandboxed(["python3", "-c", "import socket; socket.create_connection(('1.1.1.1', 53), 2)"],
                            cwd=tmp_path, timeout=30)
        assert not net.ok


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_outputs_json_md_csv_and_gradescope(grades):
    out = fx.workspace() / "graded"
    rows = list(csv.DictReader((out / "grades.csv").open()))
    assert len(rows) == len(grades)
    by_sub = {r["submission"]: r for r in rows}
    ref = grades["huge_lr"]
    row = by_sub[ref["submission"]]
    assert float(row["score"]) == ref["score"] and row["status"] == "graded" and row["break"] == "huge_lr"
    assert sum(float(row[g]) for g in WEIGHTS) == pytest.approx(ref["score"])
    folder = out / ref["submission"]
    on_disk = json.loads((folder / "grade.json").read_text())
    assert on_disk["score"] == ref["score"] and len(on_disk["criteria"]) == len(ref["criteria"])
    md = (folder / "grade.md").read_text()
    assert f"{ref['score']} / 100.0" in md and "| fix: recovers |" in md
    gs = json.loads((folder / "results.json").read_text())
    assert gs["score"] == ref["score"] and gs["visibility"] == "visible"
    assert all({"name", "score", "max_score", "status", "output", "visibility"} <= set(t) for t in gs["tests"])
    assert sum(t["max_score"] for t in gs["tests"]) == 100


@pytest.mark.slow
def test_grade_md_shows_broken_and_fixed_plots_side_by_side(grades, tmp_path):
    from breaklab.grader.report import grade_markdown, make_plots

    runs = Path(fx.workspace() / "graded" / ".work" / "runs")
    g = grades["huge_lr"]
    folders = {}
    for folder in runs.iterdir():  # each run's files, as the grader copied them out
        files = folder / "files"
        if (files / "metrics.jsonl").is_file():
            meta = json.loads((files / "meta.json").read_text())
            label = meta["config"]["out"]
            if meta["break"] == "huge_lr" and label in ("broken", "fixed") and label not in folders:
                folders[label] = str(files)
    plots = make_plots(tmp_path, folders)
    md = grade_markdown(g, plots)
    if isinstance(plots, dict):
        assert (tmp_path / "broken.png").is_file() and (tmp_path / "fixed.png").is_file()
        assert "| ![broken](broken.png) | ![fixed](fixed.png) |" in md
    else:  # breaklab.plots missing: grading goes on and grade.md says why
        assert "plots" in md


@pytest.mark.slow
def test_grade_command_on_a_folder(tmp_path):
    """The CLI surface: a folder of submissions, progress, a summary line that counts what could
    not be graded, exit status 1 then; gradescope results.json at the top for a single submission."""
    from breaklab.cli import cli

    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "a.tgz").write_bytes(fx.hostile()["bad_json"].read_bytes())
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["grade", str(folder), "--out", str(out), "--format", "json,csv,gradescope",
                                      "--repo", str(fx.workspace() / "course")])
    assert result.exit_code == 1, result.output
    assert "[1/1] a: 0" in result.output and "rejected 1" in result.output
    assert "could not grade 1 of 1" in result.output
    assert "Traceback" not in result.output
    assert json.loads((out / "results.json").read_text())["score"] == 0
    assert (out / "grades.csv").is_file() and not (out / ".work").exists()
    bad = CliRunner().invoke(cli, ["grade", str(folder), "--out", str(out), "--format", "pdf"])
    assert bad.exit_code == 2 and "comma-separated" in bad.output


@pytest.mark.slow
def test_kit_leaves_out_the_answers(tmp_path):
    from breaklab.cli import cli

    result = CliRunner().invoke(cli, ["kit", "--out", str(tmp_path / "kit")])
    assert result.exit_code == 0, result.output
    kit = tmp_path / "kit"
    assert (kit / "trainer.py").is_file() and (kit / "breaks" / "huge_lr.py").is_file()
    assert (kit / "reports" / "TEMPLATE.md").is_file() and (kit / "grader" / "intake.py").is_file()
    assert not (kit / "solutions").exists()
    assert not (kit / "tests" / "test_solutions.py").exists() and not (kit / "tests" / "test_grader.py").exists()
    assert not list(kit.rglob("rubric.json")) and not list(kit.rglob("fix.patch"))
    assert "commit:" in result.output
    # The kit's commit depends only on its files: made twice, the same id.
    again = CliRunner().invoke(cli, ["kit", "--out", str(tmp_path / "kit2")])
    commit = lambda p: subprocess.run(["git", "rev-parse", "HEAD"], cwd=p, capture_output=True, text=True).stdout
    assert commit(kit) == commit(tmp_path / "kit2") != ""
    refused = CliRunner().invoke(cli, ["kit", "--out", str(kit)])
    assert refused.exit_code == 1 and "not empty" in refused.output

    # The kit's own test suite must not need the answers: no test file imports solutions or
    # names a path in it, and the suite collects without it (quick start: `pytest -q`).
    assert kit_test_files_using_solutions(kit) == []
    collect = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider"],
                             cwd=kit, env={**os.environ, "PYTHONPATH": str(kit)}, capture_output=True, text=True,
                             timeout=300)
    assert collect.returncode == 0, collect.stdout[-3000:] + collect.stderr[-3000:]
    assert "tests/test_submit.py::" in collect.stdout
    assert re.fullmatch(r"\d+ tests collected in [\d.]+s", collect.stdout.strip().splitlines()[-1]), collect.stdout[-500:]
    assert_kit_holds_no_exercise_answer(kit)


def mutation_lines() -> set[str]:
    """Every line a mutation writes into an exercise script, and every clean line it replaces
    (stripped), over every shape where it is put."""
    from breaklab.exercises.generate import apply_mutations, eligible
    from breaklab.exercises.variants import VARIANTS

    lines = set()
    for variant in VARIANTS:
        for bug in eligible(variant):
            buggy = apply_mutations(variant, (bug,))
            lines.update(line.strip() for line in buggy.lines[slice(*buggy.spans[bug])])
            lines.update(line.strip() for line in buggy.clean.lines[slice(*buggy.clean_spans[bug])])
    return {line for line in lines if line}


def assert_kit_holds_no_exercise_answer(kit: Path) -> None:
    """The kit cannot make an exercise (one line says why), and no file of it holds a mutation's
    clean or buggy line, except the lines the course's own training code has for its own reasons:
    trainer.py and examples/ are clean PyTorch (model.train(), optimizer.zero_grad()), and each
    break module in breaks/ carries its own bug by design (the kit's other exercise)."""
    new = subprocess.run([sys.executable, "-m", "breaklab", "exercise", "new", "--seed", "1", "--out",
                          str(kit.parent / "ex"), "--key", str(kit.parent / "ex.key")], cwd=kit,
                         env={**os.environ, "PYTHONPATH": str(kit)}, capture_output=True, text=True, timeout=120)
    assert new.returncode == 1 and "full install" in new.stderr, new.stdout + new.stderr
    assert len(new.stderr.strip().splitlines()) == 1 and not (kit.parent / "ex" / "train.py").exists()
    assert not (kit / "breaklab" / "exercises" / "mutations.py").exists()
    texts = {p.relative_to(kit).as_posix(): p.read_text(errors="replace")
             for p in kit.rglob("*") if p.is_file() and ".git" not in p.parts}
    plain_code = "\n".join(text for name, text in texts.items()
                           if name == "trainer.py" or name.startswith(("breaks/", "examples/")))
    lines = mutation_lines()
    assert len(lines) > 40
    assert sum(line not in plain_code for line in lines) > 35  # most are the exercises' own
    for line in sorted(lines):
        if line in plain_code:
            continue
        holders = [name for name, text in texts.items() if line in text]
        assert holders == [], (line, holders)


# Kit test files that name solutions/ and cope with its absence, and how.
READS_SOLUTIONS_IF_PRESENT = {
    "tests/test_mystery.py": "compares reveal's output with the write-up only when the file exists, "
                             "else with the break's docstring (breaklab/mystery.py does the same)",
    "tests/test_layers.py": "maps breaklab.solutions to its folder; with no folder there is nothing to walk",
}


def kit_test_files_using_solutions(kit: Path) -> list[str]:
    """The kit's test files that import the solutions package or name a path under solutions/
    (docstrings and comments aside), less the ones known to cope with its absence."""
    import ast

    found = []
    for path in sorted((kit / "tests").rglob("*.py")):
        rel = path.relative_to(kit).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            imported = ([a.name for a in node.names] if isinstance(node, ast.Import)
                        else [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
                        if isinstance(node, ast.ImportFrom) else [])
            named = (isinstance(node, ast.Constant) and isinstance(node.value, str)
                     and node.value.strip("/").split("/")[0] == "solutions")
            if named or any(m.split(".")[0] == "solutions" or m.startswith("breaklab.solutions")
                            for m in imported):
                found.append(f"{rel}:{node.lineno}")
    return [f for f in found if f.split(":")[0] not in READS_SOLUTIONS_IF_PRESENT]


def test_the_solutions_check_sees_imports_and_paths(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text('"""Needs no solutions/."""\nimport os\n')
    (tmp_path / "tests" / "test_b.py").write_text("def f():\n    from breaklab.solutions import writeup\n")
    (tmp_path / "tests" / "test_c.py").write_text("from pathlib import Path\nP = Path('x') / 'solutions' / 'a'\n")
    (tmp_path / "tests" / "helper.py").write_text("import solutions.measure\n")
    assert kit_test_files_using_solutions(tmp_path) == ["tests/helper.py:1", "tests/test_b.py:2",
                                                        "tests/test_c.py:2"]


# ---------------------------------------------------------------------------------------------
# The command's errors and a course repository that does not hold the submission's commit
# ---------------------------------------------------------------------------------------------

def _one_line_usage_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and all(n in error[0] for n in needles), result.output


def test_grade_refuses_a_repo_that_is_missing_or_not_a_git_repository(tmp_path):
    from breaklab.cli import cli

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.tgz").write_bytes(b"not graded: the command stops before")
    grade = lambda *a: CliRunner().invoke(cli, ["grade", str(inbox), "--out", str(tmp_path / "out"), *a])
    _one_line_usage_error(grade("--repo", str(tmp_path / "nonexist")), "--repo", "does not exist")
    plain = tmp_path / "plain"
    plain.mkdir()
    _one_line_usage_error(grade("--repo", str(plain)), f"--repo {plain} is not a git repository")
    _one_line_usage_error(grade("--repo", str(fx.ROOT / "grader")), "inside the git repository", str(fx.ROOT))
    assert not (tmp_path / "out").exists()


def test_grade_refuses_a_mistyped_submissions_path(tmp_path):
    from breaklab.cli import cli

    result = CliRunner().invoke(cli, ["grade", str(tmp_path / "inbx"), "--out", str(tmp_path / "out"),
                                      "--repo", str(fx.ROOT)])
    _one_line_usage_error(result, "inbx", "does not exist")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_base_commit_missing_from_the_repo_is_an_error_to_review(tmp_path):
    """Graded against another repository, a real submission is not scored: one error that names
    the fix, for review, and nothing is re-run."""
    from breaklab.grader.grade import Grader

    other = tmp_path / "other"
    other.mkdir()
    git = lambda *a: subprocess.run(["git", *a], cwd=other, check=True, capture_output=True)
    git("init", "-q")
    (other / "x.txt").write_text("another repository\n")
    git("add", "x.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", "commit", "-q", "-m", "x")
    sub = fx.submissions()["huge_lr"]
    base = intake.open_submission(sub, tmp_path / "peek").manifest["base_commit"]
    grader = Grader(repo=other, out=tmp_path / "out", plots=False, keep_work=True)
    g = grader.grade_all([sub])[0]
    assert g["status"] == "error" and g["score"] == 0
    assert g["reason"] == (f"base commit {base[:12]} is not in --repo {other.resolve()}: "
                           "grade against the repository the students cloned")
    assert g["needs_review"] == [f"error: {g['reason']}"]
    assert not (tmp_path / "out" / ".work" / "runs").exists()


# ---------------------------------------------------------------------------------------------
# Single rules, on small inputs
# ---------------------------------------------------------------------------------------------

def _records(losses, acc):
    return ([{"type": "step", "step": i, "loss": l} for i, l in enumerate(losses)]
            + [{"type": "epoch", "epoch": 0, "step": len(losses), "test_acc": acc}])


def test_other_environment_gets_full_credit_only_within_tolerance():
    """Another environment: full points when the run agrees within the measured cross-CPU
    tolerance (bytes cannot match there), 0 and a review item outside it; in the same environment
    other bytes are a tampered run. The maxima are the declared table's."""
    from breaklab.grader.rubric import CRITERIA, check_run, reproducibility

    rerun = _records([2.3, 2.1, 1.9], 0.916)
    close = _records([2.3 * (1 + 1e-6), 2.1, 1.9], 0.916)
    far = _records([2.3 * 1.01, 2.1, 1.9], 0.916)
    kw = dict(rerun_ok=True, rerun_why="", metrics_same=False, ckpt_same=False, rerun_records=rerun)
    other = ["torch '2.3.0' vs '2.14.1'"]
    full = reproducibility("broken", check_run("broken", env_diff=other, sub_records=close, **kw))
    assert [c.points for c in full] == [CRITERIA["broken_metrics"].max, CRITERIA["broken_checkpoint"].max] == [9, 8]
    assert not any(c.review for c in full)
    assert "another environment" in full[0].reason and "torch" in full[0].reason
    outside = reproducibility("broken", check_run("broken", env_diff=other, sub_records=far, **kw))
    assert [c.points for c in outside] == [0, 0] and all(c.review for c in outside)
    same_env_check = check_run("broken", env_diff=[], sub_records=close, **kw)
    same_env = reproducibility("broken", same_env_check)
    assert same_env_check.status == "tampered"
    assert [c.points for c in same_env] == [0, 0] and "same environment" in same_env[0].reason
    failed = reproducibility("fixed", check_run("fixed", rerun_ok=False, rerun_why="stopped at the wall-clock limit",
                                                metrics_same=False, ckpt_same=False, env_diff=[],
                                                sub_records=None, rerun_records=None))
    assert [c.points for c in failed] == [0, 0] and "wall-clock" in failed[0].reason
    identical = check_run("fixed", rerun_ok=True, rerun_why="", metrics_same=True, ckpt_same=True, env_diff=[],
                          sub_records=None, rerun_records=None)
    assert [(c.points, c.max) for c in reproducibility("fixed", identical)] == [(9, 9), (9, 9)]
    voided = reproducibility("fixed", identical, void="no points for the fixed run: a no-op")
    assert [(c.points, c.max) for c in voided] == [(0, 9), (0, 9)] and "no-op" in voided[0].reason


def test_claims_on_epoch_metrics_and_per_layer_paths():
    from breaklab.grader.rubric import claim_criteria

    broken = [{"type": "step", "step": 3, "loss": 7.0, "grad_mean": {"fc1.weight": 0.02}},
              {"type": "epoch", "epoch": 0, "step": 4, "test_acc": 0.1}]
    clean = [{"type": "step", "step": 3, "loss": 2.0, "grad_mean": {"fc1.weight": 0.0201}},
             {"type": "epoch", "epoch": 0, "step": 4, "test_acc": 0.92}]
    m = ["loss", "test_acc", "grad_mean"]
    match, shows = claim_criteria({"errors": [], "metric": "test_acc", "epoch": 0, "value": 0.1}, broken, clean, m)
    assert (match.points, shows.points) == (12, 6)
    # A real value, but not a symptom: the clean run has the same there.
    match, shows = claim_criteria({"errors": [], "metric": "grad_mean.fc1.weight", "step": 3, "value": 0.02},
                                  broken, clean, m)
    assert (match.points, shows.points) == (12, 3) and "not a symptom" in shows.reason
    match, shows = claim_criteria({"errors": [], "metric": "loss", "step": 99, "value": 7.0}, broken, clean, m)
    assert (match.points, shows.points) == (0, 0) and "no numeric loss at step 99" in match.reason
    assert [c.points for c in claim_criteria(None, broken, clean, m)] == [0, 0]


def test_evidence_rules():
    """More cases in tests/test_scoring.py."""
    from breaklab.grader.rubric import evidence_criterion

    claim = {"metric": "grad_norm", "step": 9, "value": 9.46, "errors": []}
    broken = [{"type": "step", "step": 9, "grad_norm": 9.4609}]
    assert evidence_criterion({}, claim, broken).points == 0
    assert evidence_criterion({"s.json": b'[{"step": 9, "grad_norm": 9.46}]'}, claim, broken).points == 6
    assert evidence_criterion({"s.txt": b"the loss went up"}, claim, broken).points == 0
    fake = evidence_criterion({"p.png": b"\x89PNG\r\n\x1a\n...."}, claim, broken)
    assert fake.points == 0 and not fake.review
    assert evidence_criterion({"b.json": b"{broken", "x.bin": b"\xff\xfe\x00"}, claim, broken).points == 0


def test_patch_scope_rules():
    from breaklab.grader.gitrepo import parse_patch, patch_problems
    from breaklab.grader.rubric import scope_criterion, size_criterion

    def patch(path, old, new, line=5):
        return (f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n"
                f"@@ -{line},1 +{line},1 @@\n-{old}\n+{new}\n").encode()

    src = "class HugeLR:\n    name = 'x'\n\n    def learning_rate(self, lr):\n        return lr * 100\n"
    fixed = src.replace("lr * 100", "lr")
    allowed = (["breaks/huge_lr.py"], ["HugeLR.learning_rate"])
    inside = parse_patch(patch("breaks/huge_lr.py", "        return lr * 100", "        return lr"))
    assert scope_criterion(inside, *allowed, {"breaks/huge_lr.py": src}, {"breaks/huge_lr.py": fixed}).points == 6
    outside = parse_patch(patch("breaks/huge_lr.py", "    name = 'x'", "    name = 'y'", line=2))
    assert scope_criterion(outside, *allowed, {"breaks/huge_lr.py": src}, {"breaks/huge_lr.py": src}).points == 0
    tests = parse_patch(patch("tests/test_breaks.py", "a", "b"))
    forbidden = scope_criterion(tests, *allowed, {}, {})
    assert forbidden.points == 0 and forbidden.review and "tests/test_breaks.py" in forbidden.reason
    assert size_criterion(inside, 6).points == 2 and size_criterion(parse_patch(b""), 6).points == 0
    unread = scope_criterion(inside, *allowed, None, None, unread="commit abc is not in the repository")
    assert unread.points == 0 and unread.review and "not judged" in unread.reason
    assert "abc is not in the repository" in unread.reason and "outside" not in unread.reason
    assert scope_criterion(tests, *allowed, None, None).points == 0  # needs no source to refuse
    assert patch_problems(patch("../evil.py", "a", "b"))
    assert patch_problems(patch(".git/config", "a", "b"))
    link = b"diff --git a/x b/x\nnew file mode 120000\n--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+/etc/passwd\n"
    assert patch_problems(link)
