"""Grading throughput: seconds per submission and submissions per hour, for each --jobs.

It makes N real submissions the way a student does (a clone of this repository at HEAD, the
reference fix applied, the reference write-up, `breaklab submit`'s own code), then grades the
same tarballs once per --jobs value with grader.grade.Grader, into fresh output folders (no
re-run is shared between the measurements). Building the submissions is not timed. Every grading
re-runs the submission's broken and fixed training and a clean reference run in the sandbox, so
this is dominated by training and the torch import. The machine's load average before and after
is printed: on a shared machine the absolute seconds say as much about the neighbours as about
the grader.

    python benchmarks/bench_grading.py                          # 4 submissions, --jobs 1 and 2
    python benchmarks/bench_grading.py --breaks huge_lr loss_sum --jobs 1 2 4
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, table

DEFAULT_BREAKS = ["huge_lr", "loss_sum", "label_permute", "double_softmax"]


def make_submission(work: Path, break_name: str, seed: int, epochs: int) -> Path:
    from breaklab.submission import SubmitOptions, build_submission
    from breaklab.solutions import fix_patch, writeup

    tree = work / "students" / break_name
    subprocess.run(["git", "clone", "-q", str(work / "course"), str(tree)], check=True)
    subprocess.run(["git", "apply", "-"], cwd=tree, input=fix_patch(break_name), check=True)
    report = work / "reports" / f"{break_name}.md"
    report.parent.mkdir(exist_ok=True)
    report.write_text(writeup(break_name))
    path, _ = build_submission(SubmitOptions(seed=seed, break_name=break_name, report=report, evidence=(),
                                             student=f"bench-{break_name.replace('_', '-')}", epochs=epochs,
                                             repo=tree, tarball=work / "subs" / f"{break_name}.tgz"))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--breaks", nargs="+", default=DEFAULT_BREAKS)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="the --jobs values to measure")
    args = ap.parse_args()
    from breaklab.grader.grade import Grader

    work = Path(tempfile.mkdtemp(prefix="breaklab-bench-grading-"))
    try:
        subprocess.run(["git", "clone", "-q", str(ROOT), str(work / "course")], check=True)
        print(f"building {len(args.breaks)} submissions (not timed) ...", file=sys.stderr)
        subs = [make_submission(work, b, 42, args.epochs) for b in args.breaks]
        rows, per = [], {}
        load_before = os.getloadavg()
        for jobs in args.jobs:
            grader = Grader(repo=work / "course", out=work / f"graded-{jobs}", plots=False)
            t0 = time.perf_counter()
            grades = grader.grade_all(subs, jobs=jobs, formats=("json", "csv"))
            seconds = time.perf_counter() - t0
            per[jobs] = seconds / len(subs)
            statuses = sorted({g["status"] for g in grades})
            rows.append([str(jobs), f"{seconds:.1f}", f"{per[jobs]:.1f}", f"{3600 / per[jobs]:.0f}",
                         ", ".join(statuses)])
        load_after = os.getloadavg()
        print(f"{len(subs)} submissions ({', '.join(args.breaks)}), {args.epochs} epoch(s) each, "
              f"re-runs of each one's broken and fixed training and one clean run shared by all; {os.cpu_count()} CPU(s), "
              f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
        print(table(rows, ["--jobs", "total s", "s / submission", "submissions / hour", "statuses"]))
        first = args.jobs[0]
        for jobs in args.jobs[1:]:
            print(f"--jobs {jobs} speed-up over --jobs {first}: {per[first] / per[jobs]:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
