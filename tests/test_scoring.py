"""Scoring without training: the typed criteria model, explanations judged on reasoning (fixed
report texts against the recorded broken runs of tests/fixtures/broken_runs_seed42.json), evidence
files, report similarity and the class's integrity flags, shards and their merge, and the
Gradescope bundle's shape. Training-dependent checks are in tests/test_grading_scale.py.
"""
from __future__ import annotations

import csv
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

import report_corpus as rc
from breaklab.grader import evidence, explanation, integrity, rubric, similarity
from breaklab.solutions import names, writeup
from breaklab.solutions import rubric as load_rubric

ROOT = Path(__file__).resolve().parent.parent
RUNS = json.loads((Path(__file__).parent / "fixtures" / "broken_runs_seed42.json").read_text())
REFERENCES = {f"solutions/{n}/WRITEUP.md": writeup(n) for n in names()}


def explain(text: str, break_name: str, run: str | None = None, references=REFERENCES):
    crits, flags = rubric.explanation_criteria(text, load_rubric(break_name)["concepts"],
                                               RUNS[run or break_name], references, RUNS["none"])
    return round(sum(c.points for c in crits), 1), {c.name: c for c in crits}, flags


# ---------------------------------------------------------------------------------------------
# The model: maxima declared once, checked against the weights
# ---------------------------------------------------------------------------------------------

def test_criteria_maxima_add_up_to_the_weights():
    for group, weight in rubric.WEIGHTS.items():
        assert sum(s.max for s in rubric.CRITERIA.values() if s.group == group) == weight
    rubric.check_weights()
    wrong = {**rubric.CRITERIA, "length": rubric.Spec("explanation", 3, "x")}
    with pytest.raises(ValueError, match="explanation: criteria add up to 16"):
        rubric.check_weights(wrong)


def test_award_takes_the_maximum_from_the_table_and_refuses_points_above_it():
    c = rubric.award("evidence", 4, "why")
    assert (c.group, c.max, c.points) == ("diagnostics", 6, 4)
    assert rubric.award_share("causal_chain", 0.5, "why").points == 4
    with pytest.raises(ValueError, match="outside"):
        rubric.award("evidence", 7, "why")
    with pytest.raises(KeyError):
        rubric.award("concepts", 1, "the old name is gone")


def test_a_grade_missing_a_criterion_is_refused():
    full = [rubric.award(n, 0, "x") for n in rubric.CRITERIA]
    assert rubric.total(full)["score"] == 0 and rubric.total(full)["max"] == 100
    with pytest.raises(ValueError, match="explanation 13 of 15"):
        rubric.total([c for c in full if c.name != "length"])
    failed = [rubric.whole_group(g, "intake", "bad tarball") for g in rubric.WEIGHTS]
    assert rubric.total(failed)["score"] == 0


# ---------------------------------------------------------------------------------------------
# Explanations: reasoning, not words
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("break_name", rc.CALIBRATION_BREAKS + rc.EVALUATION_BREAKS)
def test_honest_reports_in_new_words_score_at_least_12(break_name):
    for text in rc.HONEST[break_name]:
        score, crits, flags = explain(text, break_name)
        assert score >= 12, {n: (c.points, c.reason) for n, c in crits.items()}
        assert flags == [] and not any(c.review for c in crits.values())
        assert crits["measured"].points == 3  # numbers of this run


def test_honest_reports_share_no_sentence_with_the_write_ups():
    for b, texts in rc.HONEST.items():
        for text in texts:
            sents = explanation.analyse(text, REFERENCES)
            assert not [s.text for s in sents if s.copied], b


def test_a_keyword_list_scores_at_most_4():
    score, crits, _ = explain(rc.KEYWORD_LIST, "huge_lr")
    assert score <= 4, {n: (c.points, c.reason) for n, c in crits.items()}
    assert crits["causal_chain"].points == 0 and crits["measured"].points == 0
    assert "outside any causal sentence" in crits["causal_chain"].reason


def test_the_write_up_copied_scores_0_and_is_flagged():
    recorded = [b for b in names() if b in RUNS]  # the breaks whose runs tests/fixtures/ records
    assert len(recorded) >= 7
    for b in recorded:
        score, crits, flags = explain(writeup(b), b)
        assert score == 0 and flags and f"solutions/{b}/WRITEUP.md" in flags[0]
        assert crits["causal_chain"].review and "copies" in crits["causal_chain"].reason


@pytest.mark.parametrize("break_name", rc.EVALUATION_BREAKS)
def test_a_lightly_edited_write_up_is_still_a_copy(break_name):
    for seed in range(3):
        edited = rc.light_edit(writeup(break_name), 0.3, seed)
        score, _, flags = explain(edited, break_name)
        assert score == 0 and flags, seed


def test_short_and_empty_reports_earn_little():
    short, crits, _ = explain(rc.FIFTEEN_WORDS, "huge_lr")
    assert short <= 3, {n: (c.points, c.reason) for n, c in crits.items()}
    assert "scaled by" in crits["causal_chain"].reason
    empty, crits, _ = explain(rc.EMPTY_HEADINGS, "huge_lr")
    assert empty <= 1 and crits["sections"].points == 0


def test_numbers_must_be_the_students_own_run():
    """The same honest report judged against another run: its numbers match nothing there."""
    text = rc.HONEST["huge_lr"][0]
    _, own, _ = explain(text, "huge_lr")
    _, other, _ = explain(text, "huge_lr", run="label_permute")
    assert own["measured"].points == 3 and "loss at step 2" in own["measured"].reason
    assert other["measured"].points == 0
    no_rerun, _ = rubric.explanation_criteria(text, load_rubric("huge_lr")["concepts"], None, REFERENCES)
    assert no_rerun[3].points == 0 and "no re-run" in no_rerun[3].reason


def test_what_counts_as_a_sentence_and_a_measurement():
    assert not explanation.is_sentence("learning rate too large, 100x, overshoot, dead ReLU, diverges")
    assert not explanation.is_sentence("loss 7.66 37.6 dead relu overshoot")
    assert explanation.is_sentence("The loss is 2.31 at step 0, 7.66 at step 2 and 37.6 at step 9.")
    run, clean = explanation.RunValues.of(RUNS["huge_lr"]), explanation.RunValues.of(RUNS["none"])
    assert explanation.measured_numbers("the loss was 7.66 at step 2", run, clean)
    assert explanation.measured_numbers("the loss started at 2.31", run)
    assert not explanation.measured_numbers("the loss started at 2.31", run, clean)  # every run's
    assert explanation.measured_numbers("68% of the units are dead", run)
    assert explanation.measured_numbers("it reached a loss of 37.6", run, clean)
    # Step and seed numbers, one-digit numbers and numbers in a sentence naming no metric don't count.
    assert not explanation.measured_numbers("seed 42, step 62, 3 epochs", run)
    assert not explanation.measured_numbers("I ran it with 37.6 in mind", run)
    assert not explanation.measured_numbers("the loss was 7.9 at step 2", run)


def test_concepts_named_only_in_the_symptoms_list_earn_nothing():
    text = rc.HONEST["huge_lr"][0].replace(
        rc.HONEST["huge_lr"][0].split("## Root cause")[1].split("## Fix")[0],
        "\n\nlearning rate x100, overshoot, dead ReLU\n\n")
    score, crits, _ = explain(text, "huge_lr")
    assert crits["causal_chain"].points < 3 and score < 12


# ---------------------------------------------------------------------------------------------
# Evidence
# ---------------------------------------------------------------------------------------------

def png(width: int, height: int, pattern=lambda x, y: (x * 7 + y * 3) % 256, truncate: int = 0) -> bytes:
    rows = b"".join(b"\x00" + bytes(pattern(x, y) for x in range(width)) for y in range(height))
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return data[:len(data) - truncate] if truncate else data


CLAIM = {"metric": "loss", "step": 2, "value": 7.66, "errors": []}


@pytest.mark.parametrize("name,data,share", [
    ("plot.png", png(320, 240), 1),
    ("plot.png", png(320, 240, truncate=30), 0),                      # cut off
    ("tiny.png", png(16, 16), 0),                                      # not a readable figure
    ("blank.png", png(320, 240, pattern=lambda x, y: 255), 0),         # nothing drawn
    ("loss.txt", b"loss", 0),                                          # a word is not evidence
    ("notes.txt", b"the loss went up to 7.66 at step 2", 0),
    ("s.json", json.dumps({"step": 2, "loss": 7.6621}).encode(), 1),   # a metrics record
    ("s.jsonl", b'{"step": 1, "loss": 2.97}\n{"step": 2, "loss": 7.66}\n', 1),
    ("c.json", json.dumps({"metric": "loss", "step": 2, "value": 7.66}).encode(), 1),
    ("s.json", json.dumps({"step": 2, "loss": 3.0}).encode(), 1 / 3),  # not the re-run's value
    ("s.json", json.dumps({"step": 2, "grad_norm": 5.9}).encode(), 0),  # not the claimed metric
])
def test_evidence_must_decode_or_show_the_claimed_metric(name, data, share):
    verdict = evidence.judge(name, data, CLAIM, RUNS["huge_lr"])
    assert verdict.share == pytest.approx(share), verdict.reason


def test_the_trainers_own_figure_is_evidence():
    """A PNG written by matplotlib (what `breaklab plot` and report.png are)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3), dpi=50)
    ax.plot([2.31, 2.97, 7.66])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    assert evidence.png_size(buf.getvalue()) == (200, 150)
    assert rubric.evidence_criterion({"fig.png": buf.getvalue(), "w.txt": b"loss"}, CLAIM, RUNS["huge_lr"]).points == 6


# ---------------------------------------------------------------------------------------------
# Similarity and the class's integrity flags
# ---------------------------------------------------------------------------------------------

def test_near_duplicate_threshold_separates_held_out_honest_reports_from_light_edits():
    honest = [t for b in rc.EVALUATION_BREAKS for t in rc.HONEST[b]]
    sets = [similarity.shingles(t) for t in honest]
    worst_honest = max(similarity.jaccard(a, b) for i, a in enumerate(sets) for b in sets[i + 1:])
    edits = [similarity.jaccard(similarity.shingles(t), similarity.shingles(rc.light_edit(t, r, s)))
             for t in honest for r in (0.1, 0.2, 0.3) for s in range(3)]
    assert worst_honest < integrity.NEAR_DUPLICATE / 3 < integrity.NEAR_DUPLICATE < min(edits)


def _grade(sub, student, break_name="huge_lr", seed=42, sha=None, **extra):
    return {"submission": sub, "student": student, "break_name": break_name, "seed": seed, "status": "graded",
            "score": 90.0, "max": 100.0, "tarball_sha256": sha or f"sha-{sub}", "needs_review": [],
            "criteria": [], "groups": {g: {"points": 0, "max": w} for g, w in rubric.WEIGHTS.items()}, **extra}


def test_class_flags_name_what_a_person_must_decide():
    grades = [_grade("a", "ann"), _grade("b", "bob"), _grade("c", "cat", "loss_sum"),
              _grade("d", "dan"), _grade("d2", "dan"), _grade("e", "eve"), _grade("e2", "eve", sha="sha-e"),
              _grade("f", "fay", "label_permute", 1), _grade("f2", "fay", "label_permute", 7)]
    reports = {"a": rc.HONEST["huge_lr"][0], "b": rc.light_edit(rc.HONEST["huge_lr"][0], 0.2, 1),
               "c": rc.HONEST["loss_sum"][0], "d": rc.HONEST["huge_lr"][1], "d2": rc.HONEST["huge_lr"][1],
               "e": rc.HONEST["eval_mode"][0], "e2": rc.HONEST["eval_mode"][0],
               "f": rc.HONEST["label_permute"][0], "f2": rc.HONEST["label_permute"][1]}
    flags = integrity.class_flags(grades, reports)
    kinds = {sub: sorted(f.kind for f in fl) for sub, fl in flags.items()}
    assert kinds == {"a": ["near_duplicate"], "b": ["near_duplicate"], "c": [],
                     "d": ["resubmission"], "d2": ["resubmission"],
                     "e": ["identical_tarball"], "e2": ["identical_tarball"],
                     "f": ["duplicate_student"], "f2": ["duplicate_student"]}
    assert flags["a"][0].others == ["b"] and "Jaccard" in flags["a"][0].detail
    # Applied twice, the second time changes nothing; cleared, the review items go too.
    changed = integrity.apply(grades, flags)
    assert sorted(changed) == ["a", "b", "d", "d2", "e", "e2", "f", "f2"]
    assert grades[0]["needs_review"] == [flags["a"][0].review_item()] and grades[2]["needs_review"] == []
    assert integrity.apply(grades, flags) == []
    grades[0]["needs_review"].insert(0, "minimal_scope: check by hand")
    integrity.apply(grades, {})
    assert grades[0]["needs_review"] == ["minimal_scope: check by hand"] and "class_flags" not in grades[0]


def test_independent_honest_reports_raise_no_flag():
    grades, reports = [], {}
    for b, texts in rc.HONEST.items():
        for i, text in enumerate(texts):
            sub = f"{b}-{i}"
            grades.append(_grade(sub, sub, b))
            reports[sub] = text
    assert all(not f for f in integrity.class_flags(grades, reports).values())


# ---------------------------------------------------------------------------------------------
# Class outputs, shards and merge (synthetic grade folders)
# ---------------------------------------------------------------------------------------------

def _write_class(folder: Path, grades: list[dict], reports: dict[str, str]) -> None:
    from breaklab.grader.report import write_submission_outputs

    for g in grades:
        (folder / g["submission"]).mkdir(parents=True, exist_ok=True)
        write_submission_outputs(folder / g["submission"], g, plots=False)
        if g["submission"] in reports:
            (folder / g["submission"] / "report.md").write_text(reports[g["submission"]])


def _class():
    crit = [rubric.award(n, rubric.CRITERIA[n].max, "full").as_dict() for n in rubric.CRITERIA]
    grades = [_grade(s, st, criteria=crit) for s, st in (("a", "ann"), ("b", "bob"), ("c", "cat"))]
    grades.append({**_grade("d", None), "status": "rejected", "reason": "not a gzip", "score": 0.0})
    reports = {"a": rc.HONEST["huge_lr"][0], "b": rc.light_edit(rc.HONEST["huge_lr"][0], 0.1, 3),
               "c": rc.HONEST["huge_lr"][1]}
    return grades, reports


def test_grades_csv_has_review_and_integrity_columns(tmp_path):
    grades, reports = _class()
    _write_class(tmp_path, grades, reports)
    integrity.finalize(tmp_path, grades, ("json", "csv"))
    rows = {r["submission"]: r for r in csv.DictReader((tmp_path / "grades.csv").open())}
    assert rows["a"]["needs_review"] == "yes" and "near-duplicate of b" in rows["a"]["integrity"]
    assert rows["c"]["needs_review"] == "no" and rows["c"]["integrity"] == ""
    md = (tmp_path / "a" / "grade.md").read_text()
    assert "## Integrity" in md and "## For a person to review" in md
    assert json.loads((tmp_path / "a" / "grade.json").read_text())["class_flags"][0]["others"] == ["b"]


def test_shards_partition_the_class_and_merge_like_one_run(tmp_path):
    from breaklab.grader import shards

    grades, reports = _class()
    one = tmp_path / "one"
    whole = [dict(g) for g in grades]
    _write_class(one, whole, reports)
    integrity.finalize(one, whole, ("json", "csv"))
    class_list = [(g["submission"], f"{g['submission']}.tgz") for g in grades]
    parts = [shards.select(grades, k, 3) for k in (1, 2, 3)]
    assert sorted(i for p in parts for i in p) == list(range(len(grades)))
    for k, part in enumerate(parts, 1):
        folder = tmp_path / f"shard-{k}"
        mine = [dict(grades[i]) for i in part]
        _write_class(folder, mine, reports)
        integrity.finalize(folder, mine, ("json", "csv"))
        shards.write_manifest(folder, k, 3, class_list, [g["submission"] for g in mine], ("json", "csv"))
    from breaklab.cli import cli

    result = CliRunner().invoke(cli, ["grade", "merge", *(str(tmp_path / f"shard-{k}") for k in (1, 2, 3)),
                                      "--out", str(tmp_path / "merged")])
    assert result.exit_code == 1, result.output  # one rejected submission
    assert "could not grade 1 of 4" in result.output
    assert (tmp_path / "merged" / "grades.csv").read_text() == (one / "grades.csv").read_text()
    for sub in ("a", "b", "c"):
        assert (tmp_path / "merged" / sub / "grade.json").read_text() == (one / sub / "grade.json").read_text()
    # A missing shard, or one of another split, is an error in one line.
    missing = CliRunner().invoke(cli, ["grade", "merge", str(tmp_path / "shard-1"), "--out", str(tmp_path / "m2")])
    assert missing.exit_code == 1 and "shard(s) 2/3, 3/3 missing" in missing.output
    assert "Traceback" not in missing.output


def test_shard_option_errors_are_one_line(tmp_path):
    from breaklab.cli import cli

    (tmp_path / "a.tgz").write_bytes(b"x")
    for bad, needle in (("3/2", "between 1 and N"), ("two", "write K/N")):
        result = CliRunner().invoke(cli, ["grade", str(tmp_path / "a.tgz"), "--out", str(tmp_path / "o"),
                                          "--repo", str(ROOT), "--shard", bad])
        assert result.exit_code == 2 and needle in result.output, result.output


def test_shard_selection_names_submissions_over_the_whole_class(tmp_path):
    from breaklab.commands.grade import shard_selection

    tarballs = [tmp_path / f"s{i}.tgz" for i in (3, 1, 2)]
    whole, ids, none = shard_selection(tarballs, None)
    assert [t.name for t in whole] == ["s1.tgz", "s2.tgz", "s3.tgz"] and none is None
    first, first_ids, (k, n, class_list) = shard_selection(tarballs, "1/2")
    second, second_ids, _ = shard_selection(tarballs, "2/2")
    assert first_ids == ["s1", "s3"] and second_ids == ["s2"] and (k, n) == (1, 2)
    assert class_list == [("s1", "s1.tgz"), ("s2", "s2.tgz"), ("s3", "s3.tgz")]


# ---------------------------------------------------------------------------------------------
# The Gradescope bundle (its grading of a real submission: tests/test_grading_scale.py)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from breaklab.grader.autograder import build_bundle

    out = tmp_path_factory.mktemp("bundle") / "autograder.zip"
    build_bundle(out, ROOT, ROOT)
    return out


def test_bundle_has_gradescopes_files_executable_at_its_root(bundle, tmp_path):
    import zipfile

    from breaklab.grader.autograder import build_bundle

    with zipfile.ZipFile(bundle) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        for name in ("setup.sh", "run_autograder", "requirements.txt", "course.bundle", "bundle.json",
                     "breaklab/breaklab/cli.py", "breaklab/grader/grade.py", "breaklab/solutions/huge_lr/rubric.json"):
            assert name in infos, name
        assert not [n for n in infos if n.startswith("breaklab/tests/")]
        for script in ("setup.sh", "run_autograder"):
            assert (infos[script].external_attr >> 16) & 0o111 == 0o111
            assert zf.read(script).startswith(b"#!/usr/bin/env bash\n")
        assert b'RESULTS="$ROOT/results"' in zf.read("run_autograder")
        assert b"torch==" in zf.read("setup.sh")
        info = json.loads(zf.read("bundle.json"))
    assert info["format"] == "breaklab-gradescope-autograder" and len(info["course_head"]) == 40
    for script in ("setup.sh", "run_autograder"):
        (tmp_path / script).write_bytes(zipfile.ZipFile(bundle).read(script))
        assert subprocess.run(["bash", "-n", str(tmp_path / script)]).returncode == 0
    again = tmp_path / "again.zip"
    build_bundle(again, ROOT, ROOT)
    assert again.read_bytes() == bundle.read_bytes()  # the same inputs, the same bytes


def test_run_autograder_always_writes_results_json(bundle, tmp_path):
    from breaklab.grader.autograder import extract, run_local

    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    extract(bundle, root / "source")
    proc = run_local(root, sys.executable, timeout=300)
    results = json.loads((root / "results" / "results.json").read_text())
    assert proc.returncode == 0 and results["score"] == 0 and "exactly one tarball" in results["output"]
    (root / "submission" / "submission_huge_lr_42_x.tgz").write_bytes(b"not a tarball")
    proc = run_local(root, sys.executable, timeout=300)
    results = json.loads((root / "results" / "results.json").read_text())
    assert proc.returncode == 0, proc.stderr
    assert results["score"] == 0 and "rejected" in results["output"] and "gzip" in results["output"]
    assert sum(t["max_score"] for t in results["tests"]) == 100


# ---------------------------------------------------------------------------------------------
# The batch-scheduler examples' wiring (their real grading: tests/test_grading_scale.py)
# ---------------------------------------------------------------------------------------------

def test_slurm_example_runs_one_shard_per_task_then_merges_all(tmp_path):
    import os
    import stat

    log = tmp_path / "calls.log"
    stub = tmp_path / "stub"
    stub.write_text(f"#!/usr/bin/env bash\necho \"$0 $*\" >> {log}\necho 4242\n")
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "BREAKLAB": str(stub), "SBATCH": str(stub), "INBOX": "in", "REPO": "kit",
           "OUT": str(tmp_path / "g"), "N": "2", "SLURM_ARRAY_TASK_COUNT": "2"}
    slurm = ROOT / "examples" / "slurm"
    subprocess.run([str(slurm / "submit.sh")], env=env, check=True, capture_output=True)
    for k in ("1", "2"):
        subprocess.run(["bash", str(slurm / "grade_array.sbatch")], env={**env, "SLURM_ARRAY_TASK_ID": k}, check=True)
    subprocess.run(["bash", str(slurm / "merge.sbatch")], env=env, check=True)
    calls = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
    out = tmp_path / "g"
    assert calls[0].startswith("--parsable --array=1-2 ") and calls[0].endswith("grade_array.sbatch")
    assert "--dependency=afterany:4242" in calls[1] and calls[1].endswith("merge.sbatch")
    assert calls[2:] == [f"grade in --repo kit --shard 1/2 --jobs 1 --out {out}/shard-1",
                         f"grade in --repo kit --shard 2/2 --jobs 1 --out {out}/shard-2",
                         f"grade merge {out}/shard-1 {out}/shard-2 --out {out}/class"]
