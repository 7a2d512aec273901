"""Submissions built and graded once per test session, shared by test_solutions.py and
test_grader.py (a module-level cache: both files import this module, Python imports it once).

Everything happens in a private temporary folder:
  course/      a clone of the repository's HEAD: the course repository the grader re-runs from
  students/    one clone per submission, with the fix applied to the working tree
  subs/        the tarballs; graded/ the grader's output folder
Runs use 1 epoch: every bar still holds there (solutions/MEASUREMENTS.md).
"""
from __future__ import annotations

import atexit
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, wraps
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED, EPOCHS = 42, 1
# The breaks whose reference fix goes through `breaklab submit` and the grader end to end: float16
# (amp_no_scaling), the one the bad variants and the other modules' classes are made from
# (huge_lr), the one the wrong fix is of (label_permute), the resubmissions' (loss_sum). Each
# submission costs five trainings in their own processes; tests/test_solutions.py checks every
# other break's reference fix and write-up on runs trained in-process.
BREAKS = ["amp_no_scaling", "huge_lr", "label_permute", "loss_sum"]


def once(build_all):
    """lru_cache that also remembers a failure: every later test gets the first error at once,
    instead of re-building into folders the failed attempt left behind."""
    outcome: list = []

    @wraps(build_all)
    def cached():
        if not outcome:
            try:
                outcome.append((True, build_all()))
            except BaseException as error:
                outcome.append((False, error))
        ok, value = outcome[0]
        if not ok:
            raise value
        return value
    return cached


@lru_cache(maxsize=None)
def workspace() -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="breaklab-grading-tests-"))
    atexit.register(shutil.rmtree, tmp, True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(tmp / "course")], check=True)
    return tmp


def student_clone(name: str) -> Path:
    dest = workspace() / "students" / name
    dest.parent.mkdir(exist_ok=True)
    subprocess.run(["git", "clone", "-q", str(workspace() / "course"), str(dest)], check=True)
    return dest


def build(name: str, break_name: str, patch: bytes | None = None, edit=None, report: str | None = None,
          with_evidence: bool = True) -> Path:
    """A submission made with `breaklab submit`'s code: the fix applied (patch, or edit(tree)),
    the report written (by default an honest one of tests/report_corpus.py), evidence from a quick
    look at the broken run."""
    from breaklab.submission import SubmitOptions, build_submission, parse_symptom_block
    from report_corpus import HONEST

    tree = student_clone(name)
    if patch is not None:
        subprocess.run(["git", "apply", "-"], cwd=tree, input=patch, check=True)
    if edit is not None:
        edit(tree)
    text = report if report is not None else HONEST[break_name][0]
    report_path = workspace() / "reports" / f"{name}.md"
    report_path.parent.mkdir(exist_ok=True)
    report_path.write_text(text)
    evidence = ()
    if with_evidence:
        claim = parse_symptom_block(text) or {}
        ev = workspace() / "evidence" / f"{name}.json"
        ev.parent.mkdir(exist_ok=True)
        ev.write_text(json.dumps({"metric": claim.get("metric"), "step": claim.get("step"),
                                  "value": claim.get("value")}))
        evidence = (ev,)
    out = workspace() / "subs" / f"{name}.tgz"
    path, _ = build_submission(SubmitOptions(seed=SEED, break_name=break_name, report=report_path,
                                             evidence=evidence, student=name.replace("_", "-"),
                                             epochs=EPOCHS, repo=tree, tarball=out))
    return path


def read_members(tarball: Path) -> tuple[str, dict[str, bytes]]:
    with tarfile.open(tarball) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    top = next(iter(members)).split("/", 1)[0]
    return top, {k.split("/", 1)[1]: v for k, v in members.items()}


def repack(src: Path, name: str, change) -> Path:
    """A copy of a submission with change(files) applied and the manifest's SHA-256s updated,
    so it passes intake and only the changed content can cost points."""
    from breaklab.tarballs import write_tarball

    top, files = read_members(src)
    change(files)
    manifest = json.loads(files.pop("manifest.json"))
    manifest["files"] = {k: hashlib.sha256(v).hexdigest() for k, v in sorted(files.items())}
    files["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    out = workspace() / "subs" / f"{name}.tgz"
    write_tarball(out, files, top)
    return out


# ---------------------------------------------------------------------------------------------
# The bad submissions, each wrong in one way
# ---------------------------------------------------------------------------------------------

def wrong_fix(tree: Path) -> None:
    """label_permute 'fixed' by changing the seed of the second permutation: still two permutations."""
    path = tree / "breaks" / "label_permute.py"
    text = path.read_text()
    assert "self.seed * 7919 + step)" in text
    path.write_text(text.replace("self.seed * 7919 + step)", "self.seed * 7919 + step + 1)"))


def non_minimal_fix(tree: Path) -> None:
    """huge_lr compensated in trainer.py (divide the hook's result by 100): training recovers, but
    the fix is not in the hook and hides the bug."""
    path = tree / "trainer.py"
    text = path.read_text()
    clean = "lr = brk.learning_rate(cfg.lr if lr is None else lr)"
    assert clean in text
    path.write_text(text.replace(clean, clean + " / 100", 1))


FILLER = " ".join(["Further observations about the run that add nothing new."] * 30)


def _report_edit(old: str, new: str):
    def change(files):
        text = files["report.md"].decode()
        assert old in text
        files["report.md"] = text.replace(old, new, 1).encode()
    return change


def _report(text: str, student: str | None = None):
    """Replace the report (and the student id in the manifest, when given)."""
    def change(files):
        files["report.md"] = text.encode()
        if student is not None:
            as_student(student)(files)
    return change


def _tamper_metrics(files):
    lines = files["broken/metrics.jsonl"].decode().splitlines(keepends=True)
    rec = json.loads(lines[31])  # step 30: not the claimed step
    assert rec["type"] == "step"
    rec["loss"] = rec["loss"] / 2
    lines[31] = json.dumps(rec, separators=(",", ":")) + "\n"
    files["broken/metrics.jsonl"] = "".join(lines).encode()


def as_student(student: str):
    """A repack change: the same submission handed in by another student."""
    def change(files):
        manifest = json.loads(files["manifest.json"])
        manifest["student"] = student
        files["manifest.json"] = json.dumps(manifest).encode()
    return change


@lru_cache(maxsize=None)
def reference(break_name: str) -> Path:
    """The reference fix of one break as a student submits it, built once per test process (the
    modules that need an honest submission share it: repack it under another student's name)."""
    from breaklab.solutions import fix_patch

    return build(f"ref_{break_name}", break_name, patch=fix_patch(break_name))


@once
def submissions() -> dict[str, Path]:
    """Every submission the tests grade: the references of BREAKS and the bad variants."""
    jobs = {b: (lambda b=b: reference(b)) for b in BREAKS}
    jobs["wrong_fix"] = lambda: build("wrong_fix", "label_permute", edit=wrong_fix)
    jobs["non_minimal_fix"] = lambda: build("non_minimal_fix", "huge_lr", edit=non_minimal_fix)
    with ThreadPoolExecutor(2) as pool:
        futures = {k: pool.submit(f) for k, f in jobs.items()}
        subs = {k: f.result() for k, f in futures.items()}
    ref = subs["huge_lr"]
    subs["tampered_metrics"] = repack(ref, "tampered_metrics", _tamper_metrics)
    subs["long_report"] = repack(ref, "long_report", _report_edit("## Verification", FILLER + "\n\n## Verification"))
    subs["missing_section"] = repack(ref, "missing_section", _report_edit("## Verification", "## What I checked"))
    subs["wrong_claim"] = repack(ref, "wrong_claim", _report_edit("value: 7.66", "value: 0.5"))
    # Explanations and integrity: other students, the same fixed run.
    from breaklab.solutions import writeup
    from report_corpus import HONEST, KEYWORD_LIST, light_edit

    subs["keyword_report"] = repack(ref, "keyword_report", _report(KEYWORD_LIST, "kim"))
    subs["copied_writeup"] = repack(ref, "copied_writeup", _report(writeup("huge_lr"), "cody"))
    subs["duplicate_a"] = repack(ref, "duplicate_a", _report(HONEST["huge_lr"][1], "dina"))
    subs["duplicate_b"] = repack(ref, "duplicate_b", _report(light_edit(HONEST["huge_lr"][1], 0.1, 7), "dave"))
    loss_sum = subs["loss_sum"]
    subs["resubmission_1"] = repack(loss_sum, "resubmission_1", _report(HONEST["loss_sum"][1], "sam"))
    subs["resubmission_2"] = repack(loss_sum, "resubmission_2",
                                    _report(light_edit(HONEST["loss_sum"][1], 0.1, 3), "sam"))
    return subs


@once
def graded() -> dict[str, dict]:
    """All of submissions() and hostile() graded in one grader call (2 jobs), keyed by name."""
    from breaklab.grader.grade import Grader

    subs = {**submissions(), **hostile()}
    out = workspace() / "graded"
    grader = Grader(repo=workspace() / "course", out=out, plots=False, keep_work=True)
    grades = grader.grade_all(list(subs.values()), jobs=2, formats=("json", "csv", "gradescope"))
    by_tarball = {g["tarball"]: g for g in grades}
    return {k: by_tarball[p.name] for k, p in subs.items()}


def criterion(grade: dict, name: str) -> dict:
    return next(c for c in grade["criteria"] if c["name"] == name)


# ---------------------------------------------------------------------------------------------
# Hostile and broken tarballs
# ---------------------------------------------------------------------------------------------

ESCAPE_NAME = "breaklab-escaped-by-a-test.txt"


def _tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]], raw_tail: bytes = b"") -> Path:
    import gzip

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
        end = tar.offset  # raw_tail goes before the end-of-archive blocks
    raw = buf.getvalue()[:end] + raw_tail + b"\0" * 1024 if raw_tail else buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw, mtime=0))
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _valid_files() -> dict[str, bytes]:
    _, files = read_members(submissions()["huge_lr"])
    return files


@lru_cache(maxsize=None)
def hostile() -> dict[str, Path]:
    """name -> tarball; each must be rejected at intake."""
    d = workspace() / "hostile"
    out: dict[str, Path] = {}
    files = _valid_files()
    good = [_file(f"sub/{k}", v) for k, v in sorted(files.items())]
    out["path_traversal"] = _tar(d / "path_traversal.tgz", good + [_file(f"sub/../../../{ESCAPE_NAME}", b"x")])
    link = tarfile.TarInfo("sub/evidence/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    out["symlink"] = _tar(d / "symlink.tgz", good + [(link, None)])
    hard = tarfile.TarInfo("sub/evidence/hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "sub/report.md"
    out["hardlink"] = _tar(d / "hardlink.tgz", good + [(hard, None)])
    out["absolute_path"] = _tar(d / "absolute_path.tgz", good + [_file(f"/tmp/{ESCAPE_NAME}", b"x")])
    # A header announcing 200 MiB, and no data after it: rejected on the header alone.
    big = tarfile.TarInfo("sub/evidence/huge.bin")
    big.size = 200 << 20
    out["huge_member"] = _tar(d / "huge_member.tgz", good, raw_tail=big.tobuf(tarfile.PAX_FORMAT))
    out["missing_manifest"] = _tar(d / "missing_manifest.tgz",
                                   [e for e in good if e[0].name != "sub/manifest.json"])
    out["bad_json"] = _tar(d / "bad_json.tgz", [e for e in good if e[0].name != "sub/manifest.json"]
                           + [_file("sub/manifest.json", b"{not json")])
    out["sha_mismatch"] = _tar(d / "sha_mismatch.tgz", [
        e if e[0].name != "sub/report.md" else _file("sub/report.md", b"# changed after packing\n") for e in good])
    fifo = tarfile.TarInfo("sub/evidence/fifo")
    fifo.type = tarfile.FIFOTYPE
    out["fifo"] = _tar(d / "fifo.tgz", good + [(fifo, None)])
    (d / "not_a_tarball.tgz").write_bytes(b"just some text, not gzip\n")
    out["not_a_tarball"] = d / "not_a_tarball.tgz"
    (d / "truncated.tgz").write_bytes(submissions()["huge_lr"].read_bytes()[:2000])
    out["truncated"] = d / "truncated.tgz"
    return out


# What each rejection's reason must say.
HOSTILE_REASONS = {
    "path_traversal": "leaves",
    "symlink": "link",
    "hardlink": "link",
    "absolute_path": "absolute",
    "huge_member": "cap",
    "missing_manifest": "manifest.json is missing",
    "bad_json": "not valid JSON",
    "sha_mismatch": "does not match its SHA-256",
    "fifo": "FIFO",
    "not_a_tarball": "not a gzip",
    "truncated": "truncated|corrupt gzip",
}
