"""Attacks on the grader, each built as a submission and graded in one class next to an honest one.

    planted_symlink   a correct fix whose code, on exit, replaces fixed/summary.json and
                      fixed/metrics.jsonl with links to a file of the grading user, and plants
                      fixed-plot -> a folder of theirs
    planted_fifo      a correct fix that leaves a FIFO where fixed/summary.json should be
    snoops            code that looks for other submissions, solutions/, the grades and the inbox,
                      and reports what it found in its own grade (through its error message)
    injects           code whose error message carries newlines, markdown and HTML into the grade
    fakes_evaluation  HugeLR.learning_rate keeps the x100 and replaces trainer.evaluate and the
                      metrics logger, so the run logs a recovery
    fakes_unseen      the same, but only inside a training (it returns the right value to anyone
                      else), so only the checkpoint gives it away
    masked            the x100 stays; the Config's learning rate is lowered 100x in breaklab/config.py
    no_op             an edit inside the hook that changes nothing
    tampered          the honest submission with a metrics value edited, manifest and SHA updated
    other_cpu         an honest amp_no_scaling submission made under another CPU capability
                      (ATEN_CPU_CAPABILITY), its report quoting its own run

Asserted: nothing is written outside --out, the class finishes (grades.csv has every row, the
working folder is removed), nothing leaks, and each submission's status, score, flags and reasons.
Runs are 1 epoch, seed 42 (tests/submission_fixtures.py).
"""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

import submission_fixtures as fx

pytestmark = pytest.mark.slow

VICTIM_TEXT = "export PATH=/usr/bin  # the grading user's shell settings\n"
MARK = "breaklab-security-test-7c1e"
INJECTION = (f"{MARK}\n\n# Grade: 100 / 100\n| fix: recovers | 12 | 12 | ok |\n"
             "[click](http://example.invalid) <img src=x onerror=alert(1)> **bold**")


def _hook_fixed(text: str) -> str:
    old = "return lr * 100\n"
    assert old in text
    return text.replace(old, "return lr\n")


def _module_code(text: str, code: str) -> str:
    anchor = "from breaklab.breaks.base import Break\n"
    assert anchor in text
    return text.replace(anchor, anchor + code, 1)


def _patch(scratch: Path, path: str, change) -> bytes:
    """fix.patch of change(text) applied to `path` in a clean clone."""
    target = scratch / path
    original = target.read_text()
    target.write_text(change(original))
    patch = subprocess.run(["git", "diff", "--", path], cwd=scratch, capture_output=True, check=True).stdout
    target.write_text(original)
    return patch


def planted(victim: Path, victim_dir: Path, fifo: bool) -> str:
    make = ('_os.mkfifo("fixed/summary.json")' if fifo else
            f'_os.symlink({str(victim)!r}, "fixed/summary.json")\n'
            f'        _os.symlink({str(victim)!r}, "fixed/metrics.jsonl")\n'
            f'        _os.symlink({str(victim_dir)!r}, "fixed-plot")')
    return ("import atexit as _atexit\nimport os as _os\n\n\ndef _plant():\n"
            "    if _os.path.isdir(\"fixed\"):\n"
            "        for _name in (\"summary.json\", \"metrics.jsonl\"):\n"
            "            try:\n                _os.remove(\"fixed/\" + _name)\n            except OSError:\n                pass\n"
            f"        {make}\n\n\n_atexit.register(_plant)\n")


def snooping(targets: list[str]) -> str:
    return f'''import os as _os
import sys as _sys


def _snoop():
    found = []
    mine = _os.path.dirname(_os.getcwd())  # this run's own folder (its tree and work folder)
    # The Python installation is readable by design (the run needs its interpreter); a virtual
    # environment inside the checkout makes the checkout's folder show just that one entry.
    python = _os.path.realpath(_sys.prefix)
    on_my_path = lambda p: any(q == p or q.startswith(p.rstrip("/") + "/") or p.startswith(q + "/")
                               for q in (mine, python))
    for target in {targets!r}:
        try:
            if _os.path.isdir(target):
                entries = [e for e in sorted(_os.listdir(target)) if not on_my_path(_os.path.join(target, e))]
                if entries:
                    found.append(target + " lists " + ",".join(entries[:5]))
            elif _os.path.exists(target):
                found.append(target + " holds " + open(target, errors="replace").read(40))
        except OSError:
            pass
    wanted = ("WRITEUP.md", "fix.patch", "rubric.json", "grade.json", "grades.csv", "manifest.json", "report.md")
    skip = ("/proc", "/sys", "/dev", "/usr", "/lib", "/lib64", "/etc", "/bin", "/sbin")
    seen = 0
    for dirpath, dirnames, filenames in _os.walk("/"):
        dirnames[:] = [d for d in dirnames if not (dirpath.rstrip("/") + "/" + d).startswith(skip + (mine,))
                       and d not in ("site-packages", "python3.11", "include")]
        seen += len(filenames)
        if seen > 200000:
            break
        for f in filenames:
            if f in wanted or f.endswith(".tgz"):
                found.append(_os.path.join(dirpath, f))
    raise SystemExit("SNOOP-REPORT " + (" ; ".join(found[:20]) if found else "nothing found"))


_snoop()
'''


FAKE_MEASUREMENTS = '''
        import breaklab.trainer as _trainer  # trainer.py's __main__ runs breaklab.trainer's train()
        from breaklab import metric_log as _metric_log

        _trainer.evaluate = lambda model, x, y, brk=None: {"loss": 0.25, "acc": 0.93, "autograd_bytes": 0}
        _log_step = _metric_log.MetricLogger.log_step

        def _quiet(logger, record):
            record = dict(record, loss=2.3 * 0.97 ** record["step"], dead_unit_frac=0.0, act_first_dead_frac=0.0)
            return _log_step(logger, record)
        _metric_log.MetricLogger.log_step = _quiet
'''


def fakes(unseen: bool) -> callable:
    def change(text: str) -> str:
        old = "        return lr * 100\n"
        assert old in text
        if unseen:  # only inside a training: the probe sees a correct hook
            new = ("        import sys as _sys\n        if not _sys.argv[0].endswith(\"trainer.py\"):\n"
                   "            return lr\n" + FAKE_MEASUREMENTS + "        return lr * 100\n")
        else:
            new = FAKE_MEASUREMENTS + "        return lr * 100\n"
        return text.replace(old, new)
    return change


def masked(text: str) -> str:
    """breaklab/config.py: the default learning rate / 100, so huge_lr's x100 lands on 0.1."""
    old = 'lr: float = _opt(0.1, '
    assert old in text
    return text.replace(old, 'lr: float = _opt(0.001, ', 1)


def no_op(text: str) -> str:
    assert "return lr * 100\n" in text
    return text.replace("return lr * 100\n", "return lr * 100  # fixed\n")


def edit(path: str, change):
    def apply(tree: Path) -> None:
        (tree / path).write_text(change((tree / path).read_text()))
    return apply


def capabilities() -> list[str]:
    from breaklab.grader.runs import cpu_capabilities

    return cpu_capabilities()


def other_capability() -> tuple[str, str] | None:
    """(the grader's CPU capability, another one this CPU supports), or None."""
    import torch

    here = (os.environ.get("ATEN_CPU_CAPABILITY") or torch.backends.cpu.get_cpu_capability()).lower()
    others = [c for c in capabilities() if c != here]
    return (here, "default" if "default" in others else others[0]) if others else None


def own_claim(sub: Path, name: str, step: int = 9) -> Path:
    """The submission with its report and its evidence quoting its own broken run at `step` (what an
    honest student on that machine writes). Step 9 of amp_no_scaling's first-layer zero gradients moves by 16%
    between CPU capabilities (0.069 without vector kernels, 0.077 with AVX-512), more than a
    claim's 5%: only the student's own run can confirm it."""
    _, files = fx.read_members(sub)
    report = files["report.md"].decode()
    m = re.search(r"```symptom\s*\nmetric: (\S+)\nstep: (\d+)\nvalue: (\S+)\n```", report)
    metric = m.group(1)
    head, _, layer = metric.partition(".")
    record = next(json.loads(line) for line in files["broken/metrics.jsonl"].decode().splitlines()
                  if f'"step":{step},' in line and '"type":"step"' in line)
    value = record[head][layer] if layer else record[head]
    block = f"```symptom\nmetric: {metric}\nstep: {step}\nvalue: {value:.4g}\n```"

    def quote_own_run(files):
        files["report.md"] = report.replace(m.group(0), block).encode()
        for key in [k for k in files if k.startswith("evidence/") and k.endswith(".json")]:
            files[key] = json.dumps({"metric": metric, "step": step, "value": float(f"{value:.4g}")}).encode()
    return fx.repack(sub, name, quote_own_run)


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    from breaklab.grader.grade import Grader
    from breaklab.grader.sandbox import fs_isolation_available
    from breaklab.solutions import SOLUTIONS_DIR, fix_patch

    if not fs_isolation_available():
        pytest.skip("no mount namespaces here: grade refuses to run students' code (see test_untrusted.py)")
    base = tmp_path_factory.mktemp("security")
    victim_dir = base / "home"
    victim_dir.mkdir()
    victim = victim_dir / ".bashrc"
    victim.write_text(VICTIM_TEXT)
    out = base / "graded"
    inbox = base / "inbox"

    good = fx.repack(fx.reference("huge_lr"), "sec_good", fx.as_student("sec-good"))
    scratch = fx.student_clone("sec_scratch")
    hook = "breaks/huge_lr.py"
    # Each attack is the honest submission with only its fix.patch replaced: the grader judges a fix
    # by its own re-runs of the patch, never by the fixed run a submission carries. (A no-op fix is
    # built with its own fixed run: an honest student's, which the re-run matches.)
    repacked = {
        "planted_symlink": (hook, lambda t: _module_code(_hook_fixed(t), planted(victim, victim_dir, fifo=False))),
        "planted_fifo": (hook, lambda t: _module_code(_hook_fixed(t), planted(victim, victim_dir, fifo=True))),
        "snoops": (hook, lambda t: _module_code(_hook_fixed(t), snooping(
            [str(out), str(out / ".work"), str(out / ".work" / "submissions"), str(inbox), str(SOLUTIONS_DIR),
             str(fx.workspace() / "course" / "solutions"), str(fx.ROOT), str(victim)]))),
        "injects": (hook, lambda t: _module_code(t, f"raise RuntimeError({INJECTION!r})\n")),
        "fakes_evaluation": (hook, fakes(unseen=False)),
        "fakes_unseen": (hook, fakes(unseen=True)),
        "masked": ("breaklab/config.py", masked),
    }
    subs = {"good": good}
    for name, (path, change) in repacked.items():
        patch = _patch(scratch, path, change)
        subs[name] = fx.repack(good, f"sec_{name}", lambda files, p=patch: files.__setitem__("fix.patch", p))
    subs["no_op"] = fx.build("sec_no_op", "huge_lr", edit=edit(hook, no_op))
    subs["tampered"] = fx.repack(good, "sec_tampered", fx._tamper_metrics)
    caps = other_capability()
    if caps is not None:
        previous = os.environ.get("ATEN_CPU_CAPABILITY")
        os.environ["ATEN_CPU_CAPABILITY"] = caps[1]
        try:
            made = fx.build("sec_other_cpu_made", "amp_no_scaling", patch=fix_patch("amp_no_scaling"))
        finally:
            if previous is None:
                os.environ.pop("ATEN_CPU_CAPABILITY")
            else:
                os.environ["ATEN_CPU_CAPABILITY"] = previous
        subs["other_cpu"] = own_claim(made, "sec_other_cpu")
    inbox.mkdir()
    for name, path in subs.items():
        (inbox / path.name).write_bytes(path.read_bytes())
    before = sorted(p.name for p in base.iterdir())
    grader = Grader(repo=fx.workspace() / "course", out=out, plots=True)
    grades = grader.grade_all(sorted(inbox.iterdir()), jobs=2, formats=("json", "csv", "gradescope"))
    by_tarball = {g["tarball"]: g for g in grades}
    return {"grades": {k: by_tarball[p.name] for k, p in subs.items()}, "out": out, "base": base,
            "before": before, "victim": victim, "victim_dir": victim_dir, "caps": caps, "subs": subs}


def points(grade: dict) -> dict[str, float]:
    return {c["name"]: c["points"] for c in grade["criteria"]}


def grade_text(out: Path, grade: dict) -> str:
    folder = out / grade["submission"]
    return "\n".join((folder / f).read_text() for f in ("grade.json", "grade.md", "results.json"))


def test_nothing_is_written_outside_out_and_the_class_finishes(attacked):
    out, grades = attacked["out"], attacked["grades"]
    assert attacked["victim"].read_text() == VICTIM_TEXT
    assert sorted(p.name for p in attacked["victim_dir"].iterdir()) == [".bashrc"]
    assert sorted(p.name for p in attacked["base"].iterdir()) == sorted(attacked["before"] + ["graded"])
    rows = list(csv.DictReader((out / "grades.csv").open()))
    assert len(rows) == len(grades) and not (out / ".work").exists()
    for path in out.rglob("*"):  # every output is a plain file or folder the grader made
        assert not path.is_symlink() and (path.is_file() or path.is_dir()), path


def test_the_honest_submission_is_untouched(attacked):
    g = attacked["grades"]["good"]
    assert g["status"] == "graded" and g["score"] >= 95, [c for c in g["criteria"] if c["points"] < c["max"]]
    assert g["fix_verdict"]["kind"] == "fixed" and g["integrity"] == []
    assert "learning_rate(0.1) = 0.1" in g["fix_verdict"]["reasons"][0]


@pytest.mark.parametrize("name, what", [("planted_symlink", "symbolic link"), ("planted_fifo", "FIFO")])
def test_planted_links_and_fifos_stop_the_submission_and_are_never_followed(attacked, name, what):
    g = attacked["grades"][name]
    assert g["status"] == "stopped" and g["score"] == 0, g.get("reason")
    assert what in g["reason"] and "fixed/" in g["reason"], g["reason"]
    assert attacked["victim"].read_text() == VICTIM_TEXT


def test_student_code_sees_no_other_submission_no_answers_and_no_grades(attacked):
    g = attacked["grades"]["snoops"]
    text = grade_text(attacked["out"], g)
    assert "SNOOP-REPORT nothing found" in text, text[:3000]
    for leak in (" lists ", " holds ", "WRITEUP.md", "rubric.json", "manifest.json", ".tgz", "grade.json ;"):
        assert leak not in text.split("SNOOP-REPORT", 1)[1], leak
    assert g["status"] == "graded" and points(g)["recovers"] == 0  # an ordinary failure, not a stop


def test_error_messages_cannot_inject_lines_or_markup(attacked):
    out, g = attacked["out"], attacked["grades"]["injects"]
    md = (out / g["submission"] / "grade.md").read_text()
    assert MARK in md  # the message is there, escaped
    lines = md.splitlines()
    assert sum(line.startswith("# ") for line in lines) == 1
    assert not any(line.startswith(("# Grade: 100", "| fix: recovers | 12 | 12")) for line in lines)
    for markup in (r"\[click\]\(", r"<img", r"\*\*bold"):  # only escaped: \[click\](, \<img, \*\*bold
        assert not re.search(r"(?<!\\)" + markup, md), markup
    rows = list(csv.DictReader((out / "grades.csv").open()))
    assert len(rows) == len(attacked["grades"])
    assert all(not str(v).lstrip().startswith(("=", "+", "-", "@")) or str(v).startswith("'") or _number(v)
               for r in rows for v in r.values())


def _number(v) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


@pytest.mark.parametrize("name, flag", [("fakes_evaluation", "breaklab.trainer.evaluate"),
                                        ("fakes_unseen", "logged numbers its checkpoint does not give")])
def test_a_faked_measurement_earns_no_fix_and_no_fixed_run_points(attacked, name, flag):
    g = attacked["grades"][name]
    p = points(g)
    assert g["status"] == "graded" and g["fix_verdict"]["kind"] == "faked", g["fix_verdict"]
    assert any(flag in f for f in g["integrity"]), g["integrity"]
    assert g["groups"]["fix"]["points"] == 0 and p["fixed_metrics"] == 0 and p["fixed_checkpoint"] == 0
    # The run logged a recovery; the grader's evaluation of its checkpoint did not find one.
    fixed = g["reruns"]["fixed"]
    assert fixed["test_acc"] == pytest.approx(0.93) and fixed["trusted_test_acc"] < 0.5
    assert "Integrity" in (attacked["out"] / g["submission"] / "grade.md").read_text()


def test_a_fix_masked_outside_the_break_is_not_run(attacked):
    g = attacked["grades"]["masked"]
    p = points(g)
    assert g["fix_verdict"]["kind"] == "out_of_scope" and g["reruns"]["fixed"] is None
    assert any("config.py" in n for n in g["notes"]) and "not run" in g["fix_verdict"]["reasons"][0]
    assert g["groups"]["fix"]["points"] == 0 and p["fixed_metrics"] == p["fixed_checkpoint"] == 0
    assert g["score"] <= 100 - 20 - 18


def test_a_no_op_fix_earns_no_fix_and_no_fixed_run_points(attacked):
    g = attacked["grades"]["no_op"]
    p = points(g)
    assert g["fix_verdict"]["kind"] == "no_op", g["fix_verdict"]
    assert "learning_rate(0.1) gave 10; the clean hook gives 0.1" in g["fix_verdict"]["reasons"][0]
    assert g["groups"]["fix"]["points"] == 0 and p["fixed_metrics"] == p["fixed_checkpoint"] == 0
    assert g["score"] <= 100 - 20 - 18 and g["integrity"] == []


def test_tampered_metrics_are_flagged_and_lose_reproducibility(attacked):
    g, good = attacked["grades"]["tampered"], attacked["grades"]["good"]
    assert g["status"] == "graded" and g["groups"]["reproducibility"]["points"] == 0
    assert any("tampered run" in f and "broken" in f for f in g["integrity"]), g["integrity"]
    assert not any("reproducibility" in r or "metrics" in r.split(":")[0] for r in g["needs_review"]), g["needs_review"]
    md = (attacked["out"] / g["submission"] / "grade.md").read_text()
    assert re.search(r"^\*\*Integrity:\*\* tampered run: the submitted broken metrics\.jsonl differs", md, re.M), md[:2000]
    # Everything else is judged as for the honest submission.
    assert g["groups"]["fix"]["points"] == good["groups"]["fix"]["points"]
    assert g["groups"]["diagnostics"]["points"] == good["groups"]["diagnostics"]["points"]


def test_an_honest_submission_from_another_cpu_scores_at_least_95(attacked):
    if attacked["caps"] is None:
        pytest.skip("this CPU supports only one capability")
    g = attacked["grades"]["other_cpu"]
    here, there = attacked["caps"]
    assert g["status"] == "graded" and g["score"] >= 95, [c for c in g["criteria"] if c["points"] < c["max"]]
    assert g["integrity"] == [] and g["fix_verdict"]["kind"] == "fixed"
    crit = {c["name"]: c for c in g["criteria"]}
    assert "another environment" in crit["broken_metrics"]["reason"] and there.upper() in crit["broken_metrics"]["reason"].upper()
    assert crit["claim_matches"]["points"] == 12, crit["claim_matches"]["reason"]


def test_a_run_from_a_cpu_this_machine_cannot_emulate_is_verified_within_the_tolerance(attacked, tmp_path,
                                                                                       monkeypatch):
    """A real laptop differs in more than ATen's kernels (MKL picks its own): then the grader's
    second re-run is under a third capability, the submitted run is checked within the measured
    cross-CPU tolerance, and the claim against the student's own numbers."""
    from breaklab.grader import grade as grade_module
    from breaklab.grader.grade import Grader

    if attacked["caps"] is None or len(capabilities()) < 3:
        pytest.skip("needs three CPU capabilities (default, avx2, avx512)")
    here, there = attacked["caps"]
    third = next(c for c in capabilities() if c not in (here, there))
    monkeypatch.setattr(grade_module, "other_capability", lambda submitted, rerun: third)
    sub = attacked["subs"]["other_cpu"]
    g = Grader(repo=fx.workspace() / "course", out=tmp_path / "graded", plots=False).grade_all([sub])[0]
    crit = {c["name"]: c for c in g["criteria"]}
    assert g["score"] >= 95 and g["integrity"] == [], [c for c in g["criteria"] if c["points"] < c["max"]]
    assert "within the cross-CPU tolerance" in crit["broken_metrics"]["reason"], crit["broken_metrics"]["reason"]
    assert crit["broken_metrics"]["points"] == 9 and not crit["broken_metrics"].get("review")
    # The claim quotes the student's run, which the grader's own re-run does not reproduce exactly.
    assert crit["claim_matches"]["points"] == 12, crit["claim_matches"]["reason"]
    assert g["reruns"]["broken"]["also_run_with"] == f"ATEN_CPU_CAPABILITY={third}"
