"""Hostile submissions against the grader's sandbox, end to end.

One real submission (huge_lr with the reference fix, made with `breaklab submit`'s code) and
copies of it whose fix.patch puts hostile code at the top of breaks/huge_lr.py (the one file of
this break the grader runs; code in trainer.py would be out of scope and never run): it loops forever,
allocates address space without bound, forks children and waits on them, writes a file outside
its folder (caught or not, in Python or from a shell), or connects to a socket of the grading
machine. All are graded in one Grader call (2 jobs) next to the real submission, but for the
endless loop, which is graded at the same time in a Grader of its own with a short wall-clock limit
(it is stopped only when the limit runs out, and the class need not wait for it). Each hostile
submission must be stopped (at its first run: the grader's probe of the patched hooks) and graded
0 with the sandbox's reason (in grade.json, grade.md and results.json), leave no process behind
and nothing outside its folder, and leave the real submission's grade untouched. A fix that merely fails (an ordinary exception) is not stopped: it
keeps the points that do not depend on running it.
"""
from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import submission_fixtures as fx

pytestmark = pytest.mark.slow  # these tests train (the training tier)

MARK = "breaklab-sandbox-test-4f2a"
OUTSIDE = Path("/tmp") / f"{MARK}-written-outside"
# Per re-run. A real 1-epoch re-run takes about 8 s on 2 idle cores (mostly importing torch) and
# over 60 s on a loaded machine; the limit leaves 15x the idle time.
TIMEOUT = 120
# The endless loop's limit: its first run (the probe of the hooks) never ends, whatever the limit.
LOOP_TIMEOUT = 15

OUTSIDE_CAUGHT = Path("/tmp") / f"{MARK}-written-outside-caught"
OUTSIDE_SHELL = Path("/tmp") / f"{MARK}-written-outside-shell"
OUTSIDE_FILES = (OUTSIDE, OUTSIDE_CAUGHT, OUTSIDE_SHELL)

HOSTILE = {
    "loops_forever": "import time as _time\nwhile True:\n    _time.sleep(1)\n",
    "allocates_without_bound": ("import mmap\n_blocks = []\nwhile True:\n"
                                "    _blocks.append(mmap.mmap(-1, 1 << 28))\n"),
    "forks": ("import os as _os, time as _time\nfor _ in range(64):\n    if _os.fork() == 0:\n"
              "        _time.sleep(3600)\n        _os._exit(0)\nwhile True:\n    _os.wait()\n"),
    "writes_outside": f"open({str(OUTSIDE)!r}, 'w').write('escaped')\nraise SystemExit(3)\n",
    # Hides the failed write and ends as if nothing happened.
    "writes_outside_quietly": (f"try:\n    open({str(OUTSIDE_CAUGHT)!r}, 'w').write('escaped')\n"
                               "except OSError:\n    raise SystemExit(0)\n"),
    # Around the Python-level guard: a shell does the write, the kernel refuses it.
    "writes_outside_from_a_shell": ("import subprocess as _sp\n_sp.run(['sh', '-c', 'echo escaped > "
                                    f"{OUTSIDE_SHELL}'], check=True)\n"),
    "connects": ("import socket as _socket\n_socket.create_connection(('127.0.0.1', PORT), timeout=5)"
                 ".sendall(b'" + MARK + "')\n"),
}
# What each one's grade must say, and whether it needs the kernel's isolation to be stopped.
REASONS = {
    "loops_forever": ("wall-clock limit", False),
    "allocates_without_bound": ("memory limit", False),
    "forks": ("process limit", False),
    "writes_outside": ("write outside its folder", False),
    "writes_outside_quietly": ("write outside its folder", False),
    "writes_outside_from_a_shell": ("write outside its folder", True),
    "connects": ("network connection", True),
}
# An honest fix that fails with an ordinary error: not the sandbox's business.
FAILS = "raise RuntimeError('my fix is not finished')\n"


class Listener:
    """A TCP socket on the grading machine's loopback: a submission must not reach it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


def hostile_patch(scratch: Path, code: str) -> bytes:
    """A fix.patch that runs `code` when breaks/huge_lr.py is imported (by the grader's probe of
    the hooks first, then by the fixed run)."""
    module = scratch / "breaks" / "huge_lr.py"
    original = module.read_text()
    anchor = "from breaklab.breaks.base import Break\n"
    assert anchor in original
    module.write_text(original.replace(anchor, anchor + code, 1))
    patch = subprocess.run(["git", "diff", "--", "breaks/huge_lr.py"], cwd=scratch, capture_output=True,
                           check=True).stdout
    module.write_text(original)
    return patch


def own_processes(out: Path) -> list[str]:
    """Command lines of live processes that belong to this test's grading (its own output
    folder: other test sessions on the machine may be grading at the same time)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(out) in cmd:
                found.append(cmd)
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    from breaklab.grader.grade import Grader

    for path in OUTSIDE_FILES:
        path.unlink(missing_ok=True)
    listener = Listener()
    good = fx.repack(fx.reference("huge_lr"), "sandbox_ref", fx.as_student("sandbox-ref"))
    scratch = fx.student_clone("sandbox_scratch")
    subs = {"good": good}
    for name, code in {**HOSTILE, "fails": FAILS}.items():
        patch = hostile_patch(scratch, code.replace("PORT", str(listener.port)))
        subs[name] = fx.repack(good, f"sandbox_{name}", lambda files, p=patch: files.__setitem__("fix.patch", p))
    folder = tmp_path_factory.mktemp("sandbox-grading")
    outs = {name: folder / ("graded-loop" if name == "loops_forever" else "graded") for name in subs}
    loop = Grader(repo=fx.workspace() / "course", out=outs["loops_forever"], plots=False, timeout=LOOP_TIMEOUT)
    rest = Grader(repo=fx.workspace() / "course", out=outs["good"], plots=False, timeout=TIMEOUT)
    formats = ("json", "csv", "gradescope")
    try:
        with ThreadPoolExecutor(1) as beside:
            looped = beside.submit(loop.grade_all, [subs["loops_forever"]], 1, formats)
            grades = rest.grade_all([p for k, p in subs.items() if k != "loops_forever"], jobs=2, formats=formats)
            grades += looped.result()
    finally:
        listener.close()
    by_tarball = {g["tarball"]: g for g in grades}
    outside = [p for p in OUTSIDE_FILES if p.exists()]
    left = own_processes(outs["good"]) + own_processes(outs["loops_forever"])
    yield {k: by_tarball[p.name] for k, p in subs.items()}, listener, left, outs, outside
    for path in OUTSIDE_FILES:
        path.unlink(missing_ok=True)


def criterion(grade: dict, name: str) -> dict:
    return next(c for c in grade["criteria"] if c["name"] == name)


def isolated(grade: dict) -> bool:
    return grade["sandbox"]["file_system_isolated"] and grade["sandbox"]["network_isolated"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_submission_is_stopped_and_graded_zero_with_the_reason(graded, name):
    from breaklab.grader.report import md

    grades, _, _, outs, _ = graded
    g, out = grades[name], outs[name]
    why, needs_kernel = REASONS[name]
    if needs_kernel and not isolated(g):
        pytest.skip("no mount and network namespaces here: " + "; ".join(g["sandbox"]["notes"]))
    assert g["status"] == "stopped", (g["status"], g.get("reason"), g["criteria"])
    assert g["score"] == 0 and all(c["points"] == 0 for c in g["criteria"])
    assert "stopped by the sandbox" in g["reason"] and why in g["reason"], g["reason"]
    stopped = [r for r in g["reruns"].values() if r and r["stopped_by_sandbox"]]
    assert stopped and not stopped[0]["ok"]
    # The reason is in every output.
    folder = out / g["submission"]
    assert json.loads((folder / "grade.json").read_text())["reason"] == g["reason"]
    assert md(g["reason"]) in (folder / "grade.md").read_text()  # escaped there (grader/report.py)
    assert g["reason"] in json.loads((folder / "results.json").read_text())["output"]
    row = next(r for r in csv.DictReader((out / "grades.csv").open()) if r["submission"] == g["submission"])
    assert row["status"] == "stopped" and float(row["score"]) == 0 and row["reason"] == g["reason"]


@pytest.mark.slow
def test_an_honest_fix_that_fails_keeps_its_partial_credit(graded):
    grades, _, _, _, _ = graded
    g = grades["fails"]
    assert g["status"] == "graded" and g["reason"] is None, g.get("reason")
    assert g["reruns"]["fixed"]["stopped_by_sandbox"] is None
    assert "my fix is not finished" in criterion(g, "fixed_metrics")["reason"]
    assert criterion(g, "recovers")["points"] == 0
    # The broken re-run, the diagnosis and the write-up still count.
    assert g["groups"]["diagnostics"]["points"] > 0 and g["groups"]["explanation"]["points"] > 0
    assert 0 < g["score"] < grades["good"]["score"] - 25


@pytest.mark.slow
def test_the_real_submission_and_the_grader_are_unaffected(graded):
    grades, _, leftovers, _, _ = graded
    g = grades["good"]
    assert g["status"] == "graded" and g["score"] >= 95, [c for c in g["criteria"] if c["points"] < c["max"]]
    assert g["reruns"]["fixed"]["stopped_by_sandbox"] is None
    assert leftovers == [], "processes outlived their sandbox:\n" + "\n".join(leftovers)


@pytest.mark.slow
def test_a_submission_cannot_reach_the_grading_machines_network(graded):
    grades, listener, _, _, _ = graded
    if not grades["connects"]["network_isolated"]:
        pytest.skip("no network namespace here (`unshare` unavailable): the grade says so in its "
                    "sandbox notes, and only Python-level connections are refused")
    assert listener.connections == 0


@pytest.mark.slow
def test_a_submission_cannot_write_outside_its_folder(graded):
    grades, _, _, _, outside = graded
    if not grades["writes_outside_from_a_shell"]["sandbox"]["file_system_isolated"]:
        pytest.skip("no mount namespace here: the grade says so in its sandbox notes, and only "
                    "Python-level writes are refused")
    assert outside == []


# ---------------------------------------------------------------------------------------------
# The sandbox alone (no training): each guard, and the fallback where the kernel offers none
# ---------------------------------------------------------------------------------------------

def test_the_file_system_is_read_only_outside_the_work_folder(tmp_path):
    from breaklab.grader.sandbox import fs_isolation_available, run_sandboxed

    if not fs_isolation_available():
        pytest.skip("no mount namespace on this machine")
    work, beside = tmp_path / "work", tmp_path / "beside"
    work.mkdir()
    script = (f'echo in > in.txt && echo tmp > "$TMPDIR/t" && echo null > /dev/null && '
              f'(echo out > "{beside}") 2>/dev/null; echo "beside=$?"; (echo x > /tmp/{MARK}-sh) 2>/dev/null; '
              f'echo "tmp=$?"; cat /proc/self/status | grep CapEff; (mount -o remount,rw /) 2>/dev/null; echo "mount=$?"')
    res = run_sandboxed(["sh", "-c", script], cwd=work, timeout=30)
    assert res.returncode == 0 and res.fs_isolated, res.stderr
    assert (work / "in.txt").read_text() == "in\n"
    assert "beside=0" not in res.stdout and "tmp=0" not in res.stdout and "mount=0" not in res.stdout
    assert "CapEff:\t0000000000000000" in res.stdout
    assert not beside.exists() and not Path(f"/tmp/{MARK}-sh").exists()
    # A shell's refused write shows up in its stderr: a violation only when the run then fails.
    assert res.violation is None


def test_without_kernel_isolation_python_writes_and_connections_are_still_refused(tmp_path, monkeypatch):
    from breaklab.grader import sandbox

    monkeypatch.setattr(sandbox, "isolation_flags", lambda: None)
    monkeypatch.setattr(sandbox, "_network_only_available", lambda: False)
    assert any("file system not isolated" in n for n in sandbox.isolation_notes())
    target = tmp_path / "outside.txt"
    work = tmp_path / "work"
    work.mkdir()
    res = sandbox.run_sandboxed(["python3", "-c", f"open({str(target)!r}, 'w').write('x')"], cwd=work, timeout=30)
    assert not res.fs_isolated and not target.exists()
    assert res.violation and "write outside its folder" in res.violation and str(target) in res.violation
    res = sandbox.run_sandboxed(["python3", "-c", "import socket; socket.create_connection(('127.0.0.1', 9), 2)"],
                                cwd=work, timeout=30)
    assert res.violation and "network connection" in res.violation
    res = sandbox.run_sandboxed(["python3", "-c", "open('inside.txt', 'w').write('x'); raise SystemExit(4)"],
                                cwd=work, timeout=30)
    assert res.returncode == 4 and res.violation is None and (work / "inside.txt").is_file()


def test_process_limit_and_escaped_children(tmp_path):
    from breaklab.grader.sandbox import MAX_PROCESSES, run_sandboxed

    res = run_sandboxed(["sh", "-c", f"for i in $(seq {MAX_PROCESSES + 8}); do sleep 30 & done; wait"],
                        cwd=tmp_path, timeout=20)
    assert res.violation and "process limit" in res.violation and not res.timed_out
    # A child that leaves the process group (setsid) still dies with the run when isolated.
    res = run_sandboxed(["python3", "-c", "import os, time\nif os.fork() == 0:\n    os.setsid(); "
                         f"time.sleep(60)\nprint('{MARK}-setsid')"], cwd=tmp_path, timeout=20)
    assert res.ok
    if res.fs_isolated:
        assert not any(f"{MARK}-setsid" in p or "time.sleep(60)" in p for p in all_processes())


def all_processes() -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
    return found
