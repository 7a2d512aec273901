"""Exercises (breaklab exercise new/check): the generated scripts give nothing away, the bugs
combine only where every one still shows, and the check counts fixes by behaviour.

The fast tests read the template, the mutations and the recorded calibration; the slow ones train
(each in one process that runs several scripts, see breaklab/exercises/runner.py).
"""
from __future__ import annotations

import ast
import difflib
import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from breaklab.breaks import BREAK_NAMES
from breaklab.exercises.calibrate import combo_key, eligible
from breaklab.exercises.check import Alignment, _with_regions_put_back, code_lines
from breaklab.exercises.generate import (ExerciseError, apply_mutations, catalogue, choose,
                                         load_calibration, reference, shows_symptom, write_class,
                                         write_exercise)
from breaklab.exercises.mutations import MUTATIONS
from breaklab.exercises.template import VARIANTS, Variant, render

ROOT = Path(__file__).resolve().parent.parent
# Substrings no generated script may hold, in any case; "break" as a word ("breaklab" is fine).
GIVEAWAYS = [*BREAK_NAMES, "bug", "hook", "fix", "mutat", "wrong", "todo", "xxx"]


def every_combination():
    for variant in VARIANTS:
        bugs = eligible(variant)
        for k in range(0, 5):
            for combo in itertools.combinations(bugs, k):
                yield variant, combo


def test_the_seven_catalogue_bugs_each_have_one_mutation():
    assert sorted(MUTATIONS) == sorted(BREAK_NAMES)
    for variant in VARIANTS:
        script = render(variant)
        assert sorted(script.sites) == sorted(BREAK_NAMES), variant.name
        # each bug is possible in six of the seven: float16 masks a missing zero_grad, and the
        # CNN's convolutions do not underflow without a loss scale
        assert len(eligible(variant)) == 6


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_clean_script_is_a_plain_script_of_100_to_200_lines(variant):
    text = render(variant).text
    lines = text.splitlines()
    assert 100 <= len(lines) <= 200
    assert max(len(line) for line in lines) <= 100
    ast.parse(text)
    assert "#@" not in text and not re.search(r"^\[\w+\]", text, re.M)  # no template markup left


def _pyflakes(text: str) -> list[str]:
    from pyflakes.api import check
    from pyflakes.reporter import Reporter
    import io

    out = io.StringIO()
    check(text, "train.py", Reporter(out, out))
    return out.getvalue().splitlines()


def test_no_generated_script_gives_a_bug_away():
    """Every script the generator can make: no catalogue name, no bug/hook/fix words, no unused
    name or import, no odd line; and it differs from its clean script in the mutated lines only."""
    for variant, combo in every_combination():
        buggy = apply_mutations(variant, combo)
        text = buggy.text
        lowered = text.lower()
        for word in GIVEAWAYS:
            assert word not in lowered, (variant.name, combo, word)
        assert not re.search(r"\bbreak\b", lowered), (variant.name, combo)
        assert _pyflakes(text) == [], (variant.name, combo, _pyflakes(text))
        assert max(len(line) for line in buggy.lines) <= 100
        assert all(line == line.rstrip() for line in buggy.lines)
        # the diff against the clean script: exactly the mutated lines
        clean = buggy.clean
        changed_clean, changed_buggy = set(), set()
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, clean.lines, buggy.lines,
                                                           autojunk=False).get_opcodes():
            if tag != "equal":
                changed_clean.update(range(i1, i2))
                changed_buggy.update(range(j1, j2))
        assert changed_clean == {clean.sites[b] for b in combo}, (variant.name, combo)
        assert changed_buggy == {i for b in combo for i in range(*buggy.spans[b])}, (variant.name, combo)
        # the mutated lines keep the indentation of the line they replace
        for b in combo:
            site = clean.lines[clean.sites[b]]
            for line in buggy.lines[slice(*buggy.spans[b])]:
                assert line[:len(line) - len(line.lstrip())] == site[:len(site) - len(site.lstrip())]


def test_variants_differ_in_model_optimizer_and_batching():
    texts = {v.name: render(v).text for v in VARIANTS}
    assert len(set(texts.values())) == 8
    assert "class MLP" in texts["mlp-sgd-loader"] and "class SmallCNN" in texts["cnn-sgd-loader"]
    assert "torch.optim.Adam" in texts["mlp-adam-index"] and "torch.optim.SGD" in texts["mlp-sgd-index"]
    assert "DataLoader(" in texts["cnn-adam-loader"] and "def batches(" in texts["cnn-adam-index"]
    for text in texts.values():  # the sample is sorted by digit: every shape shuffles every epoch
        assert "shuffle=True, generator=generator" in text or "torch.randperm(len(labels), generator=generator)" in text


# ---------------------------------------------------------------------------------------------
# The calibration: what the generator may produce was measured
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def calibration():
    return load_calibration()


def test_calibration_covers_every_variant_and_combination(calibration):
    for variant, combo in every_combination():
        runs = calibration["variants"][variant.name]["runs"]
        if not combo or (len(combo) > 2 and "label_permute" in combo):
            continue  # at chance by construction: measured alone and in pairs (next test)
        assert combo_key(combo) in runs, (variant.name, combo)
        assert runs[combo_key(combo)]["steps"] == 189 or not runs[combo_key(combo)]["ok"]


def test_shuffled_labels_leave_every_measured_run_at_chance(calibration):
    """The claim that lets the calibration skip larger combinations with label_permute: alone and
    with any one other bug, in every variant, test accuracy at chance."""
    assert MUTATIONS["label_permute"].certain
    for variant in VARIANTS:
        runs = calibration["variants"][variant.name]["runs"]
        measured = [k for k in runs if "label_permute" in k.split("+")]
        assert len(measured) == 6
        for k in measured:
            assert runs[k]["test_acc"] < 0.2, (variant.name, k, runs[k])


def test_every_clean_variant_learned_and_looked_healthy_at_every_seed(calibration):
    for variant in VARIANTS:
        clean = calibration["variants"][variant.name]["clean"]
        assert len(clean) == 4
        for seed, run in clean.items():
            assert run["ok"] and run["verdict"] == "healthy", (variant.name, seed, run)
            assert run["test_acc"] >= 0.92, (variant.name, seed, run["test_acc"])


def test_every_single_bug_showed_a_symptom(calibration):
    for variant in VARIANTS:
        ref, tol = reference(calibration, variant)
        runs = calibration["variants"][variant.name]["runs"]
        for bug in eligible(variant):
            assert shows_symptom(runs[bug], ref, tol), (variant.name, bug, runs[bug])


def test_allowed_combinations_show_a_symptom_in_every_part(calibration):
    cat = catalogue(calibration)
    for variant in VARIANTS:
        ref, tol = reference(calibration, variant)
        runs = calibration["variants"][variant.name]["runs"]
        for combo in cat.allowed[variant.name]:
            for k in range(1, len(combo) + 1):
                for part in itertools.combinations(combo, k):
                    assert shows_symptom(runs[combo_key(part)], ref, tol), (variant.name, combo, part)
        for combo, why in cat.refused[variant.name].items():
            assert why


def test_choice_is_a_function_of_the_seed_and_meets_the_request():
    cat = catalogue()
    for seed in range(40):
        for n in (1, 2, 3):
            variant, bugs = choose(seed, n, "medium", cat)
            assert (variant, bugs) == choose(seed, n, "medium", cat)
            assert len(bugs) == n and bugs in cat.allowed[variant.name]
    for level in ("easy", "hard"):
        variant, bugs = choose(3, 1, level, cat)
        loud = cat.loud[variant.name]
        assert all((b in loud) == (level == "easy") for b in bugs)
    seen = {choose(seed, 2, "medium", cat)[0] for seed in range(60)}
    assert len(seen) == 8  # the seed reaches every shape
    with pytest.raises(ExerciseError, match="--bugs 5"):
        choose(1, 5, "medium", cat)


# ---------------------------------------------------------------------------------------------
# new: files, key, determinism
# ---------------------------------------------------------------------------------------------

def test_same_seed_same_bytes_and_the_key_stays_outside(tmp_path):
    a = write_exercise(tmp_path / "a", 1234, 3, key_path=tmp_path / "a.key", now=0.0)
    b = write_exercise(tmp_path / "b", 1234, 3, key_path=tmp_path / "b.key", now=0.0)
    assert (tmp_path / "a" / "train.py").read_bytes() == (tmp_path / "b" / "train.py").read_bytes()
    assert (tmp_path / "a.key").read_bytes() == (tmp_path / "b.key").read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["TASK.md", "train.py"]
    key = json.loads((tmp_path / "a.key").read_text())
    assert [b["name"] for b in key["bugs"]] and len(key["bugs"]) == 3 == len(a.bugs)
    script = (tmp_path / "a" / "train.py").read_text().splitlines()
    for bug in key["bugs"]:
        assert 2 <= len(bug["questions"]) <= 3
        if bug["buggy_lines"]:
            assert script[bug["line"] - 1] == bug["buggy_lines"][0]
    task = (tmp_path / "a" / "TASK.md").read_text().lower()
    assert "3 bugs" in task and not any(name in task for name in BREAK_NAMES)
    with pytest.raises(ExerciseError, match="inside the exercise folder"):
        write_exercise(tmp_path / "c", 1, 1, key_path=tmp_path / "c" / "k.json")
    with pytest.raises(ExerciseError, match="already exists"):
        write_exercise(tmp_path / "a", 1234, 3, key_path=tmp_path / "x.key")
    clean = write_exercise(tmp_path / "clean", 1234, 3, clean=True)
    assert clean.key_path is None and clean.variant == a.variant
    assert (tmp_path / "clean" / "train.py").read_text() == key["clean_script"]


def test_default_key_goes_to_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BREAKLAB_CACHE", str(tmp_path / "cache"))
    w = write_exercise(tmp_path / "ex", 5, 1)
    assert w.key_path.is_relative_to(tmp_path / "cache")
    from breaklab.exercises.generate import read_key
    key, path = read_key(tmp_path / "ex")
    assert path == w.key_path and key["seed"] == 5


def test_class_roster_gives_each_student_a_different_exercise(tmp_path):
    roster = tmp_path / "roster.txt"
    roster.write_text("# class of 2030\nalice\nbob\n\ncarol\ndave\n")
    key_path, written = write_class(tmp_path / "class", roster, 7, 2, key_path=tmp_path / "class.key")
    assert sorted(written) == ["alice", "bob", "carol", "dave"]
    assert len({(w.variant, w.bugs) for w in written.values()}) == 4
    key = json.loads(key_path.read_text())
    assert sorted(key["exercises"]) == sorted(written)
    from breaklab.exercises.generate import read_key
    entry, _ = read_key(tmp_path / "class" / "bob", key_path)
    assert entry["script"] == (tmp_path / "class" / "bob" / "train.py").read_text()
    roster.write_text("alice\n../evil\n")
    with pytest.raises(ExerciseError, match="not a plain name"):
        write_class(tmp_path / "c2", roster, 7, key_path=tmp_path / "c2.key")


# ---------------------------------------------------------------------------------------------
# check: the local part (no training)
# ---------------------------------------------------------------------------------------------

def _exercise(variant_name: str, bugs: tuple[str, ...]):
    from breaklab.exercises.generate import make_key

    variant = Variant.parse(variant_name)
    buggy = apply_mutations(variant, bugs)
    return buggy, make_key(0, "medium", variant, buggy, 0.0)


def test_code_lines_ignore_comments_and_spacing():
    assert code_lines("LR=5.0  # was 0.05\nx = 1\n") == code_lines("LR = 5.0\nx = 1\n")
    assert code_lines("LR = 5.0\n") != code_lines("LR = 0.05\n")


def test_changed_is_local_and_accepts_fixes_written_differently():
    buggy, key = _exercise("cnn-adam-index", ("huge_lr", "missing_zero_grad", "eval_mode"))
    regions = {b["name"]: b["region"] for b in key["bugs"]}
    text = buggy.text

    def changed(new_text):
        al = Alignment(text, new_text)
        return {name: al.changed(*r) for name, r in regions.items()}

    assert changed(text) == dict.fromkeys(regions, False)
    assert changed(text.replace("LR = 1e-1\n", "LR = 1e-1  # looks fine\n")) == dict.fromkeys(regions, False)
    assert changed(text.replace("LR = 1e-1\n", "LR = 0.001\n"))["huge_lr"]
    # zero_grad written elsewhere in the step, in another spelling
    fixed = text.replace("        scaler.scale(loss).backward()\n",
                         "        model.zero_grad(set_to_none=True)\n        scaler.scale(loss).backward()\n")
    assert changed(fixed) == {"huge_lr": False, "missing_zero_grad": True, "eval_mode": False}
    # an extra line after the bug's line counts as a change of it (model.train() after eval())
    assert changed(text.replace("    model.eval()\n", "    model.eval()\n    model.train()\n"))["eval_mode"]
    # an edit elsewhere touches nothing
    assert changed(text.replace("BATCH_SIZE = 64", "BATCH_SIZE = 32")) == dict.fromkeys(regions, False)


def test_putting_regions_back_restores_the_clean_code():
    buggy, key = _exercise("mlp-sgd-loader", ("label_permute", "loss_sum", "amp_no_scaling"))
    names = [b["name"] for b in key["bugs"]]
    lines = buggy.text.splitlines()
    al = Alignment(buggy.text, buggy.text)
    assert _with_regions_put_back(lines, al, key["bugs"], names) == key["clean_script"]
    # with one region edited by the learner, the others go back and the edit stays
    edited = buggy.text.replace('nn.CrossEntropyLoss(reduction="sum")', 'nn.CrossEntropyLoss(reduction="mean")')
    al = Alignment(buggy.text, edited)
    out = _with_regions_put_back(edited.splitlines(), al, key["bugs"], ["label_permute", "amp_no_scaling"])
    assert out == key["clean_script"].replace("nn.CrossEntropyLoss()", 'nn.CrossEntropyLoss(reduction="mean")')
    # a deleted line's region (the training step) goes back with the line in it
    buggy, key = _exercise("cnn-sgd-index", ("missing_zero_grad", "double_softmax"))
    al = Alignment(buggy.text, buggy.text)
    assert _with_regions_put_back(buggy.text.splitlines(), al, key["bugs"],
                                  ["missing_zero_grad", "double_softmax"]) == key["clean_script"]


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------

def _cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "breaklab", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_exercise_help_does_not_import_torch():
    code = ("import sys; from click.testing import CliRunner; from breaklab.cli import cli; "
            "r = CliRunner().invoke(cli, ['exercise', 'new', '--help']); "
            "r2 = CliRunner().invoke(cli, ['exercise', 'check', '--help']); "
            "assert r.exit_code == 0 and r2.exit_code == 0 and 'Example' in r.output; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_bad_input_gives_one_line_errors(tmp_path):
    from click.testing import CliRunner

    from breaklab.cli import cli

    runner = CliRunner()
    r = runner.invoke(cli, ["exercise", "new", "--seed", "1", "--bugs", "5", "--out", str(tmp_path / "e")])
    assert r.exit_code == 2 and "--bugs" in r.output
    r = runner.invoke(cli, ["exercise", "new", "--seed", "1", "--out", str(tmp_path / "e"),
                            "--key", str(tmp_path / "e" / "k")])
    assert r.exit_code == 1 and "inside the exercise folder" in r.output and "Traceback" not in r.output
    (tmp_path / "empty").mkdir()
    r = runner.invoke(cli, ["exercise", "check", str(tmp_path / "empty"), "--key", str(tmp_path / "nokey")])
    assert r.exit_code == 1 and "does not exist" in r.output
    (tmp_path / "bad.key").write_text("{")
    r = runner.invoke(cli, ["exercise", "check", str(tmp_path / "empty"), "--key", str(tmp_path / "bad.key")])
    assert r.exit_code == 1 and "not readable JSON" in r.output


def test_doctor_sees_probabilities_that_reach_exactly_zero():
    from breaklab.doctor import detect_probability_outputs

    steps = [{"step": i, "loss": 1.6, "logit_rowsum_mean": 1.0, "logit_min": 0.0, "logit_max": 1.0}
             for i in range(20)]
    assert detect_probability_outputs(steps, [], None).name == "double_softmax"
