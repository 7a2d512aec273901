"""The grader's defences one by one, without training: the reader of untrusted files (links,
FIFOs, devices, caps), fresh copies, the escaping of grade.md and grades.csv, the patch cut to
the break's files, the hook probe's verdicts, the measurement checks, the run checks, and the
command's refusal to grade without isolation and its exit status.

The same attacks, built as submissions and graded end to end, are in tests/test_grader_security.py.
"""
from __future__ import annotations

import csv
import gzip
import io
import os
import re
import socket
import tarfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from breaklab import untrusted
from breaklab.untrusted import Untrusted


# ---------------------------------------------------------------------------------------------
# Reading what a sandboxed run left behind
# ---------------------------------------------------------------------------------------------

def test_plain_files_are_read_and_copied_into_a_fresh_folder(tmp_path):
    run = tmp_path / "run"
    (run / "fixed").mkdir(parents=True)
    (run / "fixed" / "metrics.jsonl").write_bytes(b'{"type":"header"}\n')
    dest, files, problems = untrusted.copy_out(run, {"fixed/metrics.jsonl": 100, "fixed/absent.json": 100},
                                               tmp_path / "copy")
    assert problems == [] and files == {"fixed/metrics.jsonl": b'{"type":"header"}\n'}
    assert (dest / "fixed" / "metrics.jsonl").read_bytes() == b'{"type":"header"}\n'
    with pytest.raises(FileExistsError):  # never into a folder that exists (it could hold links)
        untrusted.write_fresh(tmp_path / "copy", {"x": b""})


def test_a_planted_symlink_is_reported_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("the grading user's file\n")
    run = tmp_path / "run"
    (run / "fixed").mkdir(parents=True)
    os.symlink(victim, run / "fixed" / "summary.json")
    os.symlink(tmp_path, run / "linked-folder")
    files, problems = untrusted.read_folder_files(run, {"fixed/summary.json": 1 << 20,
                                                        "linked-folder/victim.txt": 1 << 20})
    assert files == {}
    assert any("summary.json is a symbolic link" in p for p in problems), problems
    assert any("linked-folder" in p and "not a plain folder" in p for p in problems), problems
    with pytest.raises(Untrusted, match="symbolic link"):
        untrusted.read_file(run / "fixed" / "summary.json", 100)
    # The folder itself given as a link is refused too.
    os.symlink(run, tmp_path / "run-link")
    files, problems = untrusted.read_folder_files(tmp_path / "run-link", {"fixed/summary.json": 100})
    assert files == {} and problems and "not a plain folder" in problems[0]
    assert victim.read_text() == "the grading user's file\n"


def test_a_fifo_in_place_of_a_run_file_neither_blocks_nor_is_read(tmp_path):
    run = tmp_path / "run"
    (run / "fixed").mkdir(parents=True)
    fifo = run / "fixed" / "summary.json"
    os.mkfifo(fifo)
    start = time.monotonic()
    files, problems = untrusted.read_folder_files(run, {"fixed/summary.json": 1 << 20})
    assert time.monotonic() - start < 5
    assert files == {} and problems == ["fixed/summary.json is a FIFO, not a regular file"]
    # A FIFO with a writer attached and data waiting: still refused, not read.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(writer, b"{}")
        files, problems = untrusted.read_folder_files(run, {"fixed/summary.json": 1 << 20})
        assert files == {} and "FIFO" in problems[0]
        assert os.read(reader, 10) == b"{}"  # the data is still there: nobody read it
    finally:
        os.close(writer)
        os.close(reader)


def test_sockets_devices_and_oversized_files_are_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(run / "meta.json"))
    (run / "metrics.jsonl").write_bytes(b"x" * 101)
    files, problems = untrusted.read_folder_files(run, {"meta.json": 100, "metrics.jsonl": 100})
    sock.close()
    assert files == {}
    assert any("meta.json is a socket" in p for p in problems), problems
    assert any("metrics.jsonl is 101 bytes, over its 100-byte cap" in p for p in problems), problems
    with pytest.raises(Untrusted, match="character device"):
        untrusted.read_file("/dev/zero", 100)


def _tgz(entries, raw_tail: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
        end = tar.offset  # raw_tail goes before the end-of-archive blocks
    raw = buf.getvalue()[:end] + raw_tail + b"\0" * 1024 if raw_tail else buf.getvalue()
    return gzip.compress(raw, mtime=0)


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


@pytest.mark.parametrize("kind, message", [("symlink", "link"), ("fifo", "FIFO"), ("escape", "leaves"),
                                           ("absolute", "absolute"), ("huge", "cap")])
def test_one_tar_reader_for_the_intake_and_the_doctor(tmp_path, kind, message):
    """The same reader and limits refuse the same hostile tarball in both places."""
    from breaklab.doctor import RunReadError, load_run
    from breaklab.grader import intake

    entries = [_member("run/metrics.jsonl", b'{"type":"header"}\n')]
    if kind == "symlink":
        link = tarfile.TarInfo("run/meta.json")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        entries.append((link, None))
    elif kind == "fifo":
        fifo = tarfile.TarInfo("run/summary.json")
        fifo.type = tarfile.FIFOTYPE
        entries.append((fifo, None))
    elif kind == "escape":
        entries.append(_member("run/../../x", b"x"))
    elif kind == "absolute":
        entries.append(_member("/tmp/x", b"x"))
    tail = b""
    if kind == "huge":  # a header announcing more than the member cap, and no data after it
        big = tarfile.TarInfo("run/checkpoint.pt")
        big.size = untrusted.MAX_MEMBER + 1
        tail = big.tobuf(tarfile.PAX_FORMAT)
    tgz = tmp_path / "run.tgz"
    tgz.write_bytes(_tgz(entries, tail))
    with pytest.raises(Untrusted, match=message):
        untrusted.read_tar(tgz)
    with pytest.raises(intake.Rejected, match=message):
        intake.open_submission(tgz, tmp_path / "box")
    with pytest.raises(RunReadError, match=message):
        load_run(tgz)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.tgz"]


def test_a_tarball_given_as_a_link_or_a_fifo_is_refused(tmp_path):
    real = tmp_path / "real.tgz"
    real.write_bytes(_tgz([_member("run/metrics.jsonl", b"{}\n")]))
    os.symlink(real, tmp_path / "link.tgz")
    with pytest.raises(Untrusted, match="symbolic link"):
        untrusted.read_tar(tmp_path / "link.tgz")
    os.mkfifo(tmp_path / "fifo.tgz")
    with pytest.raises(Untrusted, match="FIFO"):
        untrusted.read_tar(tmp_path / "fifo.tgz")


# ---------------------------------------------------------------------------------------------
# What lands in grade.md and grades.csv
# ---------------------------------------------------------------------------------------------

INJECTION = ("boom\n\n# Grade: 100 / 100\n| fix: recovers | 12 | 12 | ok |\r\n[click me](http://example.invalid) "
             "![img](x.png) <script>alert(1)</script> **bold** `code`")


def test_untrusted_text_cannot_add_lines_or_markup_to_grade_md():
    from breaklab.grader.report import grade_markdown

    grade = {"submission": "s", "student": "a", "status": "graded", "score": 50.0, "max": 100.0,
             "reason": INJECTION, "integrity": [INJECTION], "notes": [INJECTION],
             "groups": {"fix": {"points": 0, "max": 20}},
             "criteria": [{"group": "fix", "name": "recovers", "points": 0, "max": 12, "reason": INJECTION}],
             "fix_verdict": {"kind": "faked", "reasons": [INJECTION]}, "needs_review": [INJECTION],
             "reruns": {"fixed": {"ok": False, "symptoms": [INJECTION], "test_acc": None}}}
    text = grade_markdown(grade, INJECTION)
    lines = text.splitlines()
    assert not any(line.startswith(("# Grade: 100", "| fix: recovers | 12")) for line in lines)
    assert sum(line.startswith("# ") for line in lines) == 1
    for raw in ("[click me](", "![img]", "<script>", "**bold**", "`code`"):
        assert raw not in text, raw
    assert "\\[click me\\](http://example.invalid)" in text and "\\<script\\>" in text
    # Every criterion is one table row with four cells.
    rows = [line for line in lines if line.startswith("| fix: recovers |")]
    assert len(rows) == 1 and len(re.findall(r"(?<!\\)\|", rows[0])) == 5, rows


def test_grades_csv_cells_are_one_line_and_never_formulas(tmp_path):
    from breaklab.grader.report import csv_cell, write_class_outputs

    for evil in ("=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\t=1+1", "\r\n=1+1", " =1"):
        assert csv_cell(evil).startswith("'") and not any(c in csv_cell(evil) for c in "\t\r\n"), evil
    assert csv_cell(12.5) == 12.5 and csv_cell("plain") == "plain"
    grade = {"submission": "s", "student": "-x", "break_name": "huge_lr", "seed": 1, "status": "stopped",
             "score": 0.0, "groups": {}, "reason": "=cmd|' /C calc'!A0\nsecond line", "needs_review": [],
             "integrity": ["@evil"], "sandbox": {"notes": ["+note"]}}
    write_class_outputs(tmp_path, [grade], ("csv",))
    text = (tmp_path / "grades.csv").read_text()
    assert len(text.splitlines()) == 2
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["reason"].startswith("'=cmd") and "second line" in row["reason"]
    assert row["student"] == "'-x" and row["integrity"] == "'@evil" and row["sandbox_notes"] == "'+note"


# ---------------------------------------------------------------------------------------------
# The patch: only the break's files run
# ---------------------------------------------------------------------------------------------

def test_only_the_hunks_in_the_breaks_files_are_kept():
    from breaklab.grader.gitrepo import restrict_patch

    hook = (b"diff --git a/breaks/huge_lr.py b/breaks/huge_lr.py\nindex 3333333..4444444 100644\n"
            b"--- a/breaks/huge_lr.py\n+++ b/breaks/huge_lr.py\n@@ -19 +19 @@\n-        return lr * 100\n"
            b"+        return lr\n")
    config = (b"diff --git a/trainer.py b/trainer.py\nindex 1111111..2222222 100644\n--- a/trainer.py\n"
              b"+++ b/trainer.py\n@@ -1 +1 @@\n-    lr: float = 0.1\n+    lr: float = 0.001\n")
    kept, dropped = restrict_patch(config + hook + config.replace(b"trainer.py", b"canonical_setup.py"),
                                   ["breaks/huge_lr.py"])
    assert kept == hook and dropped == ["trainer.py", "canonical_setup.py"]
    kept, dropped = restrict_patch(config, ["breaks/huge_lr.py"])
    assert kept == b"" and dropped == ["trainer.py"]
    rename = (b"diff --git a/breaks/huge_lr.py b/trainer.py\nsimilarity index 90%\nrename from breaks/huge_lr.py\n"
              b"rename to trainer.py\n")
    assert restrict_patch(rename, ["breaks/huge_lr.py"]) == (b"", ["trainer.py"])


# ---------------------------------------------------------------------------------------------
# The hook probe's verdicts (the grader's side; the sandboxed side runs in the slow tests)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def probe_expectations():
    from breaklab.grader.probe import expected_outputs, make_inputs

    inputs = make_inputs()
    return inputs, {name: expected_outputs(name, 42, inputs) for name in
                    ("huge_lr", "label_permute", "missing_zero_grad", "loss_sum", "amp_no_scaling",
                     "double_softmax", "eval_mode")}


@pytest.mark.parametrize("name", ["huge_lr", "label_permute", "missing_zero_grad", "loss_sum", "amp_no_scaling",
                                  "double_softmax", "eval_mode"])
def test_the_probe_tells_clean_from_broken_for_every_break(probe_expectations, name):
    from breaklab.breaks import REGISTRY
    from breaklab.grader.fixcheck import judge_probe

    inputs, expected = probe_expectations
    clean, broken = expected[name]
    hook = REGISTRY[name].hook
    fixed = judge_probe(hook, {"hooks": clean, "replaced": []}, clean, broken, inputs)
    assert fixed.kind == "fixed" and fixed.earns_points, fixed.reasons
    still = judge_probe(hook, {"hooks": broken, "replaced": []}, clean, broken, inputs)
    assert still.kind == "no_op" and not still.earns_points, still.reasons
    assert hook in still.reasons[0]
    # Only the break's own hook differs between its clean and broken versions.
    from breaklab.grader.probe import same_output
    assert [h for h in clean if not same_output(h, broken[h], clean[h])] == [hook]


def test_probe_verdicts_name_what_they_saw(probe_expectations):
    from breaklab.grader.fixcheck import judge_probe

    inputs, expected = probe_expectations
    clean, broken = expected["huge_lr"]
    still = judge_probe("learning_rate", {"hooks": broken, "replaced": []}, clean, broken, inputs)
    assert "learning_rate(0.1) gave 10; the clean hook gives 0.1" in still.reasons[0]
    halfway = judge_probe("learning_rate", {"hooks": {**clean, "learning_rate": [x * 10 for x in clean["learning_rate"]]},
                                            "replaced": []}, clean, broken, inputs)
    assert halfway.kind == "not_fixed" and halfway.earns_points and "gave 1;" in halfway.reasons[0]
    faked = judge_probe("learning_rate", {"hooks": clean, "replaced": ["breaklab.trainer.evaluate"]},
                        clean, broken, inputs)
    assert faked.kind == "faked" and not faked.earns_points and "breaklab.trainer.evaluate" in faked.integrity[0]
    crashed = judge_probe("learning_rate", {"import_error": "RuntimeError: unfinished", "replaced": []},
                          clean, broken, inputs)
    assert crashed.kind == "unchecked" and "unfinished" in crashed.reasons[0]
    assert judge_probe("learning_rate", None, clean, broken, inputs, "exit status 1").kind == "unchecked"
    # A break whose hook the probe does not call is left to the checkpoint.
    other = judge_probe("micro_batch_loss", {"hooks": clean, "replaced": []}, clean, broken, inputs)
    assert other.kind == "fixed" and "checkpoint decides" in other.reasons[0]


def test_logged_numbers_the_checkpoint_does_not_give_are_a_faked_measurement():
    from breaklab.grader.fixcheck import FixVerdict, judge_measurement, trusted_recovery
    from breaklab.grader.trusted import Evaluation

    facts = {"optimizer_lr": 0.1, "grad_scaler_on": False, "bn_batches_tracked": 63, "step": 63, "epoch": 1}
    measured = Evaluation(True, "", 0.207, 2.9, dict(facts))
    ok = FixVerdict("fixed", ["probe ok"])
    assert judge_measurement(ok, measured, (0.207, 2.9)).kind == "fixed"
    faked = judge_measurement(ok, measured, (0.93, 0.25))
    assert faked.kind == "faked" and "0.93" in faked.integrity[0] and "0.2070" in faked.integrity[0]
    nan = Evaluation(True, "", 0.098, float("nan"), dict(facts))
    assert judge_measurement(ok, nan, (0.098, None)).kind == "fixed"  # null is how NaN is logged
    clean = Evaluation(True, "", 0.916, 0.3, dict(facts))
    passed, reasons = trusted_recovery(Evaluation(True, "", 0.916, 0.3, dict(facts)), clean, 0.01, False)
    assert passed, reasons
    passed, reasons = trusted_recovery(measured, clean, 0.01, False)
    assert not passed and "0.207" in reasons[0]
    huge = Evaluation(True, "", 0.92, 0.3, {**facts, "optimizer_lr": 10.0})
    passed, reasons = trusted_recovery(huge, clean, 0.01, False)
    assert not passed and any("learning rate: 10.0" in r for r in reasons)
    amp_on = Evaluation(True, "", 0.916, 0.3, {**facts, "grad_scaler_on": True})
    assert trusted_recovery(amp_on, clean, 0.01, needs_amp=True)[0]
    assert not trusted_recovery(Evaluation(True, "", 0.916, 0.3, dict(facts)), clean, 0.01, needs_amp=True)[0]


def test_run_checks_tell_identical_verified_tampered_and_mismatch():
    from breaklab.grader.rubric import check_run, reproducibility

    step = lambda i, loss: {"type": "step", "step": i, "loss": loss}
    records = [step(i, 2.3 - i * 0.01) for i in range(20)] + [{"type": "epoch", "epoch": 0, "test_acc": 0.9}]
    edited = [dict(r) for r in records]
    edited[15]["loss"] *= 0.5
    common = dict(rerun_ok=True, rerun_why="", sub_records=records, rerun_records=records)
    assert check_run("broken", metrics_same=True, ckpt_same=True, env_diff=[], **common).status == "identical"
    tampered = check_run("broken", metrics_same=False, ckpt_same=True, env_diff=[],
                         **{**common, "sub_records": edited})
    assert tampered.status == "tampered" and "edited" in tampered.detail
    verified = check_run("broken", metrics_same=False, ckpt_same=False, env_diff=["cpu_capability 'DEFAULT' vs 'AVX512'"],
                         **common)
    assert verified.status == "verified" and verified.trusted
    early = [dict(r) for r in records]
    early[3]["loss"] *= 1.01  # without a second re-run, the first 5 steps are what can be checked
    mismatch = check_run("broken", metrics_same=False, ckpt_same=False, env_diff=["cpu_capability 'DEFAULT' vs 'AVX512'"],
                         **{**common, "sub_records": early})
    assert mismatch.status == "mismatch" and not mismatch.trusted
    # A fixed run made with changes the grader did not run (out of scope) proves nothing either way.
    other_code = check_run("fixed", metrics_same=False, ckpt_same=False, env_diff=[],
                           not_rerun_code="the patch's changes to trainer.py", **common)
    assert other_code.status == "not_comparable" and "trainer.py" in other_code.detail
    assert [c.points for c in reproducibility("fixed", other_code)] == [0, 0]
    # A second re-run under the submission's own CPU capability: the same bytes verify the run ...
    again = check_run("broken", metrics_same=False, ckpt_same=False, env_diff=["cpu_capability 'DEFAULT' vs 'AVX512'"],
                      alt_records=records, alt_same=True, alt_capability="default", **common)
    assert again.status == "verified" and "ATEN_CPU_CAPABILITY=default" in again.detail
    # ... and otherwise the first steps are compared, and the final accuracy where the grader's two
    # re-runs under different capabilities agree on it (a run that does not diverge).
    epoch = lambda acc: {"type": "epoch", "epoch": 0, "test_acc": acc}
    args = dict(metrics_same=False, ckpt_same=False, env_diff=["cpu_capability 'AVX2' vs 'AVX512'"],
                alt_capability="avx2", rerun_ok=True, rerun_why="", rerun_records=records)
    late = [dict(r) for r in records[:-1]] + [epoch(0.85)]
    late[15]["loss"] *= 1.5
    assert check_run("broken", sub_records=late, alt_records=records, **args).status == "mismatch"
    diverging = records[:-1] + [epoch(0.93)]
    assert check_run("broken", sub_records=late, alt_records=diverging, **args).status == "verified"
    full = reproducibility("broken", verified)
    assert [c.points for c in full] == [9, 8] and not any(c.review for c in full)
    assert [c.points for c in reproducibility("broken", mismatch)] == [0, 0]
    assert all(c.review for c in reproducibility("broken", mismatch))
    assert [c.points for c in reproducibility("fixed", verified, void="no-op")] == [0, 0]


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------

def _course(tmp_path: Path) -> Path:
    import subprocess

    course = tmp_path / "course"
    subprocess.run(["git", "init", "-q", str(course)], check=True)
    (course / "README.md").write_text("course\n")
    subprocess.run(["git", "-C", str(course), "add", "."], check=True)
    subprocess.run(["git", "-C", str(course), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"],
                   check=True)
    return course


def test_grade_refuses_without_isolation_unless_told(tmp_path, monkeypatch):
    pytest.importorskip("breaklab.solutions", reason="grading needs the rubrics (not in the student kit)")
    from breaklab.cli import cli
    from breaklab.grader import grade as grade_module

    monkeypatch.setattr(grade_module, "fs_isolation_available", lambda: False)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.tgz").write_bytes(b"not a tarball")
    args = ["grade", str(inbox), "--out", str(tmp_path / "out"), "--repo", str(_course(tmp_path))]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "cannot isolate" in refused.output and "--no-isolation" in refused.output
    assert "container or VM" in refused.output
    assert not (tmp_path / "out" / "grades.csv").exists()
    told = CliRunner().invoke(cli, args + ["--no-isolation"])
    assert "refusing" not in told.output and (tmp_path / "out" / "grades.csv").is_file()


def test_grade_exits_non_zero_and_counts_what_it_could_not_grade(tmp_path):
    pytest.importorskip("breaklab.solutions", reason="grading needs the rubrics (not in the student kit)")
    from breaklab.cli import cli

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.tgz").write_bytes(b"not a tarball")
    (inbox / "b.tgz").write_bytes(_tgz([_member("sub/report.md", b"# report\n")]))
    result = CliRunner().invoke(cli, ["grade", str(inbox), "--out", str(tmp_path / "out"), "--no-isolation",
                                      "--repo", str(_course(tmp_path))])
    assert result.exit_code == 1, result.output
    closing = [line for line in result.output.splitlines() if line.startswith("graded ")]
    assert closing and "rejected 2" in closing[-1] and "could not grade 2 of 2" in closing[-1], result.output
    rows = list(csv.DictReader((tmp_path / "out" / "grades.csv").open()))
    assert [r["status"] for r in rows] == ["rejected", "rejected"]
