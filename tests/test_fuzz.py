"""Property-based tests over generated hostile inputs (hypothesis).

- The grader's intake (grader.intake.open_submission) over generated tarballs: random bytes,
  tarballs of hostile members (escaping and odd names, links, devices, FIFOs, PAX overrides,
  lying sizes) and bit-flipped, truncated or spliced copies of a well-formed submission.
  Property: it returns a Submission or raises Rejected, nothing else; nothing is written outside
  the folder it was given; no link is created; each case finishes within the deadline.
- The doctor's reader (breaklab.doctor.load_run, then diagnose) over generated run folders and
  tarballs: hostile metrics.jsonl lines (wrong types, NaN/Infinity tokens, deep nesting, cut-off
  lines, bytes that are not UTF-8), hostile meta.json and checkpoint bytes.
  Property: a Run (then a Diagnosis) or RunReadError, nothing else, within the deadline.

Run with `--hypothesis-show-statistics` to see the number of cases tried. The three properties
are marked slow (seconds each), so the fast tier leaves them out.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from breaklab.doctor import RunReadError, diagnose, load_run
import torch  # noqa: F401,E402  (imported here, not inside the first timed example: seconds on a busy machine)
from breaklab.grader import intake

MARK = "FUZZ-ESCAPE-7d1c"  # every escaping name targets a path with this mark in it
FUZZ = settings(max_examples=800, deadline=3000, suppress_health_check=[HealthCheck.too_slow],
                database=None, derandomize=True)

# ---------------------------------------------------------------------------------------------
# Tarballs
# ---------------------------------------------------------------------------------------------

ESCAPES = [f"../{MARK}", f"../../{MARK}", f"/tmp/{MARK}", f"sub/../../{MARK}", f"sub/./{MARK}",
           f"sub//{MARK}", f"sub/{MARK}/", "sub\\..\\" + MARK, f"sub/{MARK}\0x", "sub/" + "a" * 300,
           "/".join(["sub"] * 9), f"sub/é{MARK}", "", ".", "sub/..", f"./sub/{MARK}"]
PLAIN = ["sub/report.md", "sub/fix.patch", "sub/commands.txt", "sub/manifest.json",
         "sub/broken/metrics.jsonl", "sub/fixed/meta.json", "sub/evidence/a.png", "sub", "sub/evidence"]
names = st.one_of(st.sampled_from(ESCAPES + PLAIN), st.text(min_size=0, max_size=40).map(lambda s: "sub/" + s))
types = st.sampled_from([tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                         tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE, tarfile.CONTTYPE, b"Z"])


@st.composite
def member(draw):
    info = tarfile.TarInfo(draw(names))
    info.type = draw(types)
    data = draw(st.binary(max_size=64)) if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else None
    info.size = len(data) if data is not None else 0
    if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = draw(st.sampled_from(["/etc/passwd", f"../../{MARK}", "sub/report.md", "/tmp", ".."]))
    info.mode = draw(st.sampled_from([0o644, 0o755, 0o4777, 0o000]))
    if draw(st.booleans()):
        info.pax_headers = {"path": draw(names)}
    return info, data


def _manifest(files: dict[str, bytes]) -> bytes:
    return json.dumps({"format": intake.FORMAT, "version": intake.VERSION, "break": "huge_lr", "seed": 42,
                       "epochs": 1, "threads": 1, "base_commit": "0" * 40, "student": None, "env": {},
                       "files": {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}}).encode()


def _well_formed() -> bytes:
    files = {name: f"content of {name}\n".encode() for name in intake.REQUIRED_FILES}
    return _tarball([(tarfile.TarInfo(f"sub/{k}"), v) for k, v in sorted(files.items())]
                    + [(tarfile.TarInfo("sub/manifest.json"), _manifest(files))])


def _tarball(entries, fmt=tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            try:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
            except (ValueError, UnicodeError):  # a name even tarfile cannot write
                pass
    return gzip.compress(buf.getvalue(), mtime=0)


WELL_FORMED = _well_formed()


@st.composite
def mutated(draw):
    data = bytearray(WELL_FORMED)
    raw = bytearray(gzip.decompress(bytes(data)))
    target = draw(st.sampled_from(["gz", "tar"]))
    buf = data if target == "gz" else raw
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(buf) - 1))
        op = draw(st.sampled_from(["flip", "set", "cut", "splice"]))
        if op == "flip":
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            buf[pos] = draw(st.sampled_from([0, 0x30, 0x37, 0x80, 0xFF, ord("/"), ord(".")]))
        elif op == "cut":
            del buf[pos:]
            if not buf:
                break
        else:
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=600))
    return bytes(buf) if target == "gz" else gzip.compress(bytes(buf), mtime=0)


tarballs = st.one_of(
    st.binary(max_size=2000),
    st.binary(max_size=2000).map(lambda b: gzip.compress(b, mtime=0)),
    st.lists(member(), max_size=12).map(_tarball),
    st.lists(member(), max_size=6).map(lambda e: _tarball(e, tarfile.GNU_FORMAT)),
    mutated(),
)


def _no_escape(box: Path) -> None:
    assert not list(box.parent.glob(f"*{MARK}*")), "written beside the output folder"
    assert not Path("/tmp", MARK).exists(), "written into /tmp"
    for dirpath, dirnames, filenames in os.walk(box):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            assert not p.is_symlink(), f"link created: {p}"
            assert Path(os.path.realpath(p)).is_relative_to(box.resolve()), f"outside: {p}"


@pytest.mark.slow  # 800 cases: 10-15 s of CPU each
@FUZZ
@given(data=tarballs)
def test_intake_only_accepts_or_rejects(data):
    with tempfile.TemporaryDirectory(prefix="breaklab-fuzz-") as tmp:
        tmp = Path(tmp)
        tgz = tmp / "in" / "sub.tgz"
        tgz.parent.mkdir()
        tgz.write_bytes(data)
        box = tmp / "box"
        box.mkdir()
        try:
            sub = intake.open_submission(tgz, box / "x")
            assert sub.root.resolve().is_relative_to(box.resolve())
        except intake.Rejected as e:
            assert str(e)  # a reason
        _no_escape(box)
        assert sorted(p.name for p in tmp.iterdir()) == ["box", "in"]
        assert sorted(p.name for p in tgz.parent.iterdir()) == ["sub.tgz"]


def test_intake_accepts_the_well_formed_tarball(tmp_path):
    """The mutations start from a tarball the intake accepts: the fuzzing reaches past the gate."""
    tgz = tmp_path / "sub.tgz"
    tgz.write_bytes(WELL_FORMED)
    sub = intake.open_submission(tgz, tmp_path / "box")
    assert sorted(sub.manifest["files"]) == sorted(intake.REQUIRED_FILES)


# ---------------------------------------------------------------------------------------------
# The doctor's run reader
# ---------------------------------------------------------------------------------------------

GOOD_STEP = {"type": "step", "step": 0, "epoch": 0, "batch_size": 64, "lr": 0.1, "loss": 2.3,
             "grad_norm": 1.0, "grad_norm_by_layer": {"fc1.weight": 0.5}, "grad_mean": {"fc1.weight": 0.001},
             "zero_grad_frac": 0.0, "zero_grad_frac_by_layer": {"fc1.weight": 0.0}, "dead_unit_frac": 0.0,
             "act_first_mean": 0.4, "act_first_var": 0.3, "act_first_dead_frac": 0.0, "act_last_mean": 0.0,
             "act_last_var": 0.01, "logit_min": -0.4, "logit_max": 0.4, "logit_rowsum_mean": 0.0,
             "update_ratio": 0.001, "bn_running_mean_abs": 0.06, "bn_running_var_mean": 1.0,
             "amp_scale": 1.0, "step_skipped": False, "loss_finite": True, "grads_finite": True}
HEADER = '{"type":"header","schema":"breaklab.metrics","version":1}'
# Values a schema-v1 writer could produce (numbers of any size, null) ...
typed_values = st.one_of(st.none(), st.integers(-2**70, 2**70), st.floats(allow_nan=False))
# ... and values of the wrong type, for fields that may also go missing.
odd_values = st.one_of(typed_values, st.booleans(), st.text(max_size=8), st.just([]), st.just({}),
                       st.just([[[[1]]]]))
REQUIRED_KEYS = ("type", "step", "epoch")


@st.composite
def step_line(draw, wrong_types: bool):
    rec = dict(GOOD_STEP, step=draw(st.integers(-5, 10**6)), epoch=draw(st.integers(-2, 50)))
    keys = sorted(GOOD_STEP) if wrong_types else sorted(set(GOOD_STEP) - set(REQUIRED_KEYS) - {
        "grad_norm_by_layer", "grad_mean", "zero_grad_frac_by_layer", "step_skipped", "loss_finite", "grads_finite"})
    for key in draw(st.lists(st.sampled_from(keys), max_size=4)):
        if wrong_types and draw(st.booleans()):
            rec.pop(key, None)
        else:
            rec[key] = draw(odd_values if wrong_types else typed_values)
    return json.dumps(rec)


def raw_lines(wrong_types: bool):
    return st.one_of(
    step_line(wrong_types),
    st.just(HEADER),
    st.just('{"type":"epoch","epoch":0,"step":1,"train_loss":2.3,"train_acc":0.1,"test_loss":2.3,"test_acc":0.1}'),
    st.sampled_from(['{"type":"step","loss":NaN}', '{"type":"step","loss":Infinity}', "[1,2]", "null", "7",
                     '"text"', "{", "", "   ", '{"type":"header","version":99}', '{"type":"step","step":"0"}']),
    st.integers(1, 5000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 5000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.text(max_size=60),
    )


@st.composite
def metrics_bytes(draw, wrong_types: bool = False):
    lines = draw(st.lists(raw_lines(wrong_types), max_size=25))
    text = "\n".join(lines)
    if draw(st.booleans()) and text:
        text = text[: draw(st.integers(0, len(text)))]  # cut off anywhere
    data = text.encode("utf-8", errors="surrogatepass")
    if draw(st.booleans()):
        data += draw(st.binary(max_size=30))  # bytes that need not be UTF-8
    return data


def run_files(wrong_types: bool = False):
    return st.fixed_dictionaries(
        {"metrics.jsonl": metrics_bytes(wrong_types)},
        optional={"meta.json": st.one_of(st.binary(max_size=100), st.just(b'{"status":"complete"}'), st.just(b"[]")),
                  "checkpoint.pt": st.binary(max_size=300),
                  "summary.json": st.binary(max_size=50)})


def _check_reader(path: Path) -> None:
    try:
        run = load_run(path)
    except RunReadError as e:
        assert str(e)
        return
    diagnose(run)


@pytest.mark.slow  # 800 cases: 10-15 s of CPU each
@FUZZ
@given(files=run_files(), as_tarball=st.booleans())
def test_doctor_reader_only_reads_or_refuses(files, as_tarball):
    _read_generated_run(files, as_tarball)


@pytest.mark.slow  # 800 cases: 10-15 s of CPU each
@FUZZ
@given(files=run_files(wrong_types=True), as_tarball=st.booleans())
def test_doctor_reader_refuses_records_of_the_wrong_shape(files, as_tarball):
    _read_generated_run(files, as_tarball)


def _read_generated_run(files, as_tarball):
    with tempfile.TemporaryDirectory(prefix="breaklab-fuzz-") as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        for name, data in files.items():
            (run / name).write_bytes(data)
        if as_tarball:
            tgz = Path(tmp) / "run.tgz"
            tgz.write_bytes(_tarball([(tarfile.TarInfo(f"run/{k}"), v) for k, v in sorted(files.items())]))
            _check_reader(tgz)
        else:
            _check_reader(run)
        assert sorted(p.name for p in Path(tmp).iterdir()) == (["run", "run.tgz"] if as_tarball else ["run"])
