"""Hostile submissions against the grader's sandbox, end to end.

One real submission (huge_lr with the reference fix, made with `breaklab submit`'s code) and
copies of it whose fix.patch puts hostile code at the top of trainer.py: it loops forever,
allocates address space without bound, forks children and waits on them, writes a file outside
its folder, or connects to a socket of the grading machine. All are graded in one Grader call
(2 jobs) next to the real submission. Each hostile re-run must be stopped, cost the fixed run's
points with the sandbox's reason, leave no process behind, and leave the real submission's
grade untouched.
"""
from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

import submission_fixtures as fx

MARK = "breaklab-sandbox-test-4f2a"
OUTSIDE = Path("/tmp") / f"{MARK}-written-outside"
TIMEOUT = 30  # per re-run; a real 1-epoch re-run takes about 5-10 s here

HOSTILE = {
    "loops_forever": "while True:\n    pass\n",
    "allocates_without_bound": ("import mmap\n_blocks = []\nwhile True:\n"
                                "    _blocks.append(mmap.mmap(-1, 1 << 28))\n"),
    "forks": ("import os as _os, time as _time\nfor _ in range(8):\n    if _os.fork() == 0:\n"
              "        _time.sleep(3600)\n        _os._exit(0)\nwhile True:\n    _os.wait()\n"),
    "writes_outside": f"open({str(OUTSIDE)!r}, 'w').write('escaped')\nraise SystemExit(3)\n",
    "connects": ("import socket as _socket\n_socket.create_connection(('127.0.0.1', PORT), timeout=5)"
                 ".sendall(b'" + MARK + "')\n"),
}


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
    """A fix.patch that runs `code` when trainer.py is imported (before any training)."""
    trainer = scratch / "trainer.py"
    original = trainer.read_text()
    anchor = "import torch\n"
    trainer.write_text(original.replace(anchor, anchor + code, 1))
    patch = subprocess.run(["git", "diff", "--", "trainer.py"], cwd=scratch, capture_output=True,
                           check=True).stdout
    trainer.write_text(original)
    return patch


def own_processes() -> list[str]:
    """Command lines of live processes that belong to this test's grading."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "sandbox-grading" in cmd:
                found.append(cmd)
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    from grader.grade import Grader
    from solutions import fix_patch

    OUTSIDE.unlink(missing_ok=True)
    listener = Listener()
    good = fx.build("sandbox_ref", "huge_lr", patch=fix_patch("huge_lr"))
    scratch = fx.student_clone("sandbox_scratch")
    subs = {"good": good}
    for name, code in HOSTILE.items():
        patch = hostile_patch(scratch, code.replace("PORT", str(listener.port)))
        subs[name] = fx.repack(good, f"sandbox_{name}", lambda files, p=patch: files.__setitem__("fix.patch", p))
    out = tmp_path_factory.mktemp("sandbox-grading") / "graded"
    grader = Grader(repo=fx.workspace() / "course", out=out, plots=False, timeout=TIMEOUT)
    try:
        grades = grader.grade_all(list(subs.values()), jobs=2, formats=("json",))
    finally:
        listener.close()
    by_tarball = {g["tarball"]: g for g in grades}
    yield {k: by_tarball[p.name] for k, p in subs.items()}, listener, own_processes()
    OUTSIDE.unlink(missing_ok=True)


def criterion(grade: dict, name: str) -> dict:
    return next(c for c in grade["criteria"] if c["name"] == name)


@pytest.mark.parametrize("name,why", [
    ("loops_forever", "wall-clock limit"),
    ("allocates_without_bound", "MemoryError|mmap|Cannot allocate"),
    ("forks", "wall-clock limit"),
    ("connects", "ConnectionRefused|Network is unreachable|OSError|ConnectionError"),
])
def test_hostile_rerun_is_stopped_and_scores_nothing_for_the_fixed_run(graded, name, why):
    import re

    grades, _, _ = graded
    g = grades[name]
    if name == "connects" and not g["network_isolated"]:
        pytest.skip("no network namespace here (`unshare -rn` unavailable): the sandbox says so "
                    "in network_isolated and cannot stop connections")
    assert g["status"] == "graded", g.get("reason")
    for part in ("fixed_metrics", "fixed_checkpoint"):
        c = criterion(g, part)
        assert c["points"] == 0 and "could not be re-run" in c["reason"], c
        assert re.search(why, c["reason"]), c["reason"]
    recovery = next(c for c in g["criteria"] if c["group"] == "fix" and "recover" in c["name"])
    assert recovery["points"] == 0, recovery
    # The total: the grader keeps the points that do not depend on running the fix (the broken
    # re-run, the diagnosis, the write-up); it is well below the real submission's.
    assert g["score"] < grades["good"]["score"] - 25


def test_the_real_submission_and_the_grader_are_unaffected(graded):
    grades, _, leftovers = graded
    g = grades["good"]
    assert g["status"] == "graded" and g["score"] >= 95, [c for c in g["criteria"] if c["points"] < c["max"]]
    assert leftovers == [], "processes outlived their sandbox:\n" + "\n".join(leftovers)


def test_a_submission_cannot_reach_the_grading_machines_network(graded):
    grades, listener, _ = graded
    if not grades["connects"]["network_isolated"]:
        pytest.skip("no network namespace here (`unshare -rn` unavailable): the sandbox says so "
                    "in network_isolated and cannot stop connections")
    assert listener.connections == 0


@pytest.mark.xfail(strict=True, reason=(
    "the sandbox does not isolate the file system (grader/sandbox.py says so): code runs as the "
    "grading user and can write anywhere that user can; grade on a throw-away machine or container"))
def test_a_submission_cannot_write_outside_its_folder(graded):
    assert not OUTSIDE.exists()
