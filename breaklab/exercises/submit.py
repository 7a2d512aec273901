"""`breaklab submit --exercise DIR`: pack an exercise's edited train.py, its run and the report.

The tarball holds
    manifest.json       every other file's SHA-256, the exercise's name (its folder's), the
                        student id and the environment (python, torch, CPU capability...)
    train.py            the learner's script, as edited
    report.md           the learner's report (reports/TEMPLATE.md filled in)
    run/                what the script recorded when submit ran it (metrics.jsonl, meta.json,
                        summary.json)
    commands.txt        the command that made the run
    evidence/           optional files that show a symptom
The run is made here, from a private copy of the script, the way the grader re-makes it in its
sandbox, so what is submitted is what ran; the same script gives the same bytes. The grader
trusts none of it: it re-runs train.py itself and judges every bug with its own runs and the
instructor's key (breaklab/grader/exercise.py).
"""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Callable

from breaklab.exercises.generate import SCRIPT_NAME
from breaklab.submission import SubmitError, _read_evidence, _sha, check_report

FORMAT, VERSION = "breaklab-exercise-submission", 1
RUN_FOLDER = "run"
RUN_FILES = ("metrics.jsonl", "meta.json", "summary.json")
REQUIRED_FILES = ("train.py", "report.md", "commands.txt", f"{RUN_FOLDER}/metrics.jsonl")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # the exercise's folder name (a roster name)
MAX_SCRIPT_BYTES = 256 << 10


def default_name(exercise: str, student: str | None) -> str:
    return f"exercise_{exercise}" + (f"_{student}" if student else "")


def build_exercise_submission(folder: Path, report: Path, evidence: tuple[Path, ...] = (),
                              student: str | None = None, tarball: Path | None = None, timeout: float = 1800,
                              progress: Callable[[str], None] = lambda s: None,
                              warn: Callable[[str], None] = lambda s: None) -> tuple[Path, str]:
    """Run FOLDER/train.py in a private folder, pack it with its run and the report; write the
    tarball and its .sha256; return (path, SHA-256). SubmitError says what to change."""
    from breaklab.grader.intake import STUDENT
    from breaklab.tarballs import write_tarball

    folder = Path(folder)
    if student is not None and not STUDENT.match(student):
        raise SubmitError("--student: use 1 to 64 letters, digits, '.', '_' or '-'")
    exercise = folder.resolve().name
    if not NAME.match(exercise):
        raise SubmitError(f"--exercise {folder}: the folder's name {exercise!r} names the exercise; keep the "
                          f"name `exercise new` gave it (letters, digits, _ . -)")
    script_path = folder / SCRIPT_NAME
    if not script_path.is_file():
        raise SubmitError(f"--exercise {folder}: no {SCRIPT_NAME} there; pass the folder `breaklab exercise new` "
                          f"wrote")
    script = script_path.read_bytes()
    if len(script) > MAX_SCRIPT_BYTES:
        raise SubmitError(f"{script_path} is over {MAX_SCRIPT_BYTES >> 10} KiB: submit the exercise's script")
    try:
        script.decode("utf-8")
    except UnicodeDecodeError:
        raise SubmitError(f"{script_path} is not UTF-8 text") from None
    report_text, warnings = check_report(Path(report))
    for w in warnings:
        warn(w)
    files = _read_evidence(evidence)

    progress(f"run: {script_path} as edited (python {SCRIPT_NAME}, in a private copy)")
    members = {"train.py": script, "report.md": report_text.encode("utf-8"),
               "commands.txt": f"# in the exercise folder\npython {SCRIPT_NAME}\n".encode()}
    members.update(_run(script.decode("utf-8"), timeout))
    members.update({f"evidence/{k}": v for k, v in files.items()})
    manifest = {"format": FORMAT, "version": VERSION, "exercise": exercise, "student": student,
                "env": environment(), "command": f"python {SCRIPT_NAME}",
                "files": {k: _sha(v) for k, v in sorted(members.items())}}
    members["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    name = default_name(exercise, student)
    tarball = Path(tarball or f"{name}.tgz")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    digest = write_tarball(tarball, members, name)
    summary = json.loads(members.get(f"{RUN_FOLDER}/summary.json", b"{}") or b"{}")
    acc = summary.get("test_acc") if isinstance(summary, dict) else None
    progress(f"run: test accuracy {'unknown' if acc is None else f'{acc:.3f}'}")
    return tarball, digest


def _run(script: str, timeout: float) -> dict[str, bytes]:
    """The script's run files, made in a private folder (run/NAME -> bytes)."""
    from breaklab import untrusted
    from breaklab.exercises.runner import run_direct

    with tempfile.TemporaryDirectory(prefix="breaklab-exercise-submit-") as tmp:
        outcome = run_direct(Path(tmp), {"submitted": script}, timeout=timeout)["submitted"]
        if not outcome.ok:
            raise SubmitError(f"train.py did not run to the end ({outcome.error}); run `python train.py` in the "
                              f"exercise folder to see the error")
        run_files, problems = untrusted.read_folder_files(Path(tmp) / "submitted" / RUN_FOLDER,
                                                          {name: untrusted.MAX_MEMBER for name in RUN_FILES})
    if problems or "metrics.jsonl" not in run_files:
        raise SubmitError("train.py recorded no measurements: keep its `monitor` lines "
                          + (f"({problems[0]})" if problems else ""))
    return {f"{RUN_FOLDER}/{name}": data for name, data in run_files.items()}


def environment() -> dict:
    """The environment the run was made in (what tells another CPU's bits from a changed run)."""
    from breaklab.canonical_setup import environment_info

    return environment_info("cpu", 1)
