"""Run several training scripts one after another in one Python process, and read what they
measured.

`import torch` costs 4-8 s, a training of the exercise script 2-4 s: one process that runs every
script in turn (each in its own folder, with `runpy`) is several times faster than one process
per script. Each script seeds its own RNGs, so its measurements do not depend on what ran before
it in the process (tests/test_exercises.py checks it).

`breaklab exercise check` runs the learner's code in the grader's sandbox
(breaklab/grader/sandbox.py); the calibration runs the generator's own scripts directly.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import breaklab

# The breaklab package's parent folder: the script imports breaklab (Monitor, the data's folder)
# from there, whatever PYTHONPATH the sandbox gives it.
PACKAGE_PARENT = str(Path(breaklab.__file__).resolve().parent.parent)
SCRIPT = "train.py"
RUN_FOLDER = "run"  # the script's OUT_DIR

DRIVER = r'''
import atexit, contextlib, gc, json, os, runpy, sys, traceback
atexit.register(gc.freeze)  # no collection over torch's objects at exit (breaklab/process_gc.py)
gc.disable()  # nor while torch is imported: its modules are frozen after
import torch, torch._dynamo
gc.freeze()
gc.enable()
sys.path.insert(0, {parent!r})
base = os.path.dirname(os.path.abspath(__file__))
for name in json.loads(open(os.path.join(base, "jobs.json")).read()):
    folder = os.path.join(base, name)
    os.chdir(folder)
    status = {{"ok": False, "error": None}}
    with open("output.txt", "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            runpy.run_path({script!r}, run_name="__main__")
            status["ok"] = True
        except SystemExit as e:
            status["ok"] = e.code in (None, 0)
            status["error"] = None if status["ok"] else "exit status " + str(e.code)
        except BaseException as e:
            status["error"] = traceback.format_exception_only(type(e), e)[-1].strip()[:500]
            traceback.print_exc()
    with open("status.json", "w") as f:
        f.write(json.dumps(status))
'''


@dataclass
class Outcome:
    """What one script's run showed."""

    name: str
    ok: bool
    error: str | None = None
    verdict: str | None = None          # the doctor's verdict on the run's metrics
    findings: list[str] = field(default_factory=list)  # the doctor's hypotheses, by name
    test_acc: float | None = None
    epochs: int = 0
    steps: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "error": self.error, "verdict": self.verdict, "findings": self.findings,
                "test_acc": self.test_acc, "epochs": self.epochs, "steps": self.steps}


def prepare(workdir: Path, scripts: dict[str, str], parent: str = PACKAGE_PARENT) -> list[str]:
    """Write each script into workdir/NAME/train.py and the driver that runs them (importing
    breaklab from `parent`); return argv."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name, text in scripts.items():
        folder = workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SCRIPT).write_text(text)
    (workdir / "jobs.json").write_text(json.dumps(list(scripts)))
    driver = workdir / "driver.py"
    driver.write_text(DRIVER.format(parent=parent, script=SCRIPT))
    return [sys.executable, "-s", str(driver)]


def run_direct(workdir: Path, scripts: dict[str, str], timeout: float = 1800) -> dict[str, Outcome]:
    """Run the scripts in a plain subprocess (the generator's own scripts: trusted)."""
    argv = prepare(workdir, scripts)
    subprocess.run(argv, cwd=workdir, timeout=timeout, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return {name: read_outcome(workdir, name) for name in scripts}


def run_in_sandbox(workdir: Path, scripts: dict[str, str], timeout: float):
    """Run the scripts in the grader's sandbox; return (outcomes, the sandbox's result). The
    sandbox hides this breaklab (and its answers): the scripts import a private, read-only copy of
    the code they need, beside workdir."""
    from breaklab.grader.runs import passed_through_env
    from breaklab.grader.sandbox import run_sandboxed

    course = course_copy(workdir.parent / f"{workdir.name}-course")
    argv = prepare(workdir, scripts, parent=str(course))
    # The CPU capability chosen for this process (ATEN_CPU_CAPABILITY) holds for the scripts too,
    # as for a break's re-runs: a submission and its re-run compute with the same kernels.
    result = run_sandboxed(argv, cwd=workdir, timeout=timeout, env=passed_through_env(), readable=[course])
    return {name: read_outcome(workdir, name) for name in scripts}, result


# What an exercise script imports (breaklab.Monitor and what it loads, the root modules the
# package maps in) and the bundled data it reads; never solutions/.
COURSE_PARTS = ("breaklab", "breaks", "grader", "canonical_setup.py", "trainer.py", "data")


def course_copy(dest: Path) -> Path:
    """A copy of COURSE_PARTS from this breaklab's root into dest (a new folder)."""
    import shutil

    root = Path(PACKAGE_PARENT)
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "solutions")
    for part in COURSE_PARTS:
        source = root / part
        if source.is_dir():
            shutil.copytree(source, dest / part, symlinks=True, ignore=ignore)
        elif source.is_file():
            shutil.copy2(source, dest / part)
    return dest


def read_outcome(workdir: Path, name: str) -> Outcome:
    """The status the driver wrote and the doctor's reading of the run's metrics."""
    from breaklab.doctor import RunReadError, diagnose, load_run

    from breaklab import untrusted

    folder = workdir / name
    # Read without following links: the script may have planted one (breaklab.untrusted).
    files, problems = untrusted.read_folder_files(folder, {"status.json": 1 << 16})
    try:
        status = json.loads(files["status.json"])
        if not isinstance(status, dict):
            raise ValueError("not an object")
    except (KeyError, ValueError):
        why = problems[0] if problems else "stopped by a limit, or it ended the process"
        return Outcome(name, False, f"the run did not finish ({why})")
    if not status.get("ok"):
        return Outcome(name, False, status.get("error") or "failed")
    try:
        run = load_run(folder / RUN_FOLDER)
    except RunReadError as e:
        return Outcome(name, False, f"no readable measurements in {RUN_FOLDER}/ ({e})")
    dx = diagnose(run)
    last = run.epochs[-1] if run.epochs else {}
    return Outcome(name, True, None, dx.verdict, [h.name for h in dx.hypotheses], last.get("test_acc"),
                   len(run.epochs), len(run.steps))
