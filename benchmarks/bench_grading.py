"""Grading throughput: seconds per submission with --jobs 1 and --jobs 2.

It makes N real submissions the way a student does (a clone of this repository at HEAD, the
reference fix applied, the reference write-up, `breaklab submit`'s own code), then grades the
same tarballs twice with grader.grade.Grader, once with 1 job and once with 2, into fresh output
folders. Building the submissions is not timed. Every grading re-runs the submission's broken
and fixed training in the sandbox, so this is dominated by training and the torch import.

    python benchmarks/bench_grading.py                  # 4 submissions
    python benchmarks/bench_grading.py --breaks huge_lr loss_sum
"""
from __future__ import annotations

import argparse
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
    args = ap.parse_args()
    from breaklab.grader.grade import Grader

    work = Path(tempfile.mkdtemp(prefix="breaklab-bench-grading-"))
    try:
        subprocess.run(["git", "clone", "-q", str(ROOT), str(work / "course")], check=True)
        print(f"building {len(args.breaks)} submissions (not timed) ...", file=sys.stderr)
        subs = [make_submission(work, b, 42, args.epochs) for b in args.breaks]
        rows, per = [], {}
        for jobs in (1, 2):
            grader = Grader(repo=work / "course", out=work / f"graded-{jobs}", plots=False)
            t0 = time.perf_counter()
            grades = grader.grade_all(subs, jobs=jobs, formats=("json",))
            seconds = time.perf_counter() - t0
            per[jobs] = seconds / len(subs)
            statuses = sorted({g["status"] for g in grades})
            rows.append([str(jobs), f"{seconds:.1f}", f"{per[jobs]:.1f}", ", ".join(statuses)])
        print(f"{len(subs)} submissions ({', '.join(args.breaks)}), {args.epochs} epoch(s) each, "
              f"re-runs of the broken and the fixed training per submission")
        print(table(rows, ["--jobs", "total s", "s / submission", "statuses"]))
        print(f"--jobs 2 speed-up: {per[1] / per[2]:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
