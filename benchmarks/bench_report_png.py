"""CPU time of drawing report.png (`breaklab.plots.write_report`) in fresh processes that look like
the trainer's at the end of a run, and where it goes.

The trainer draws report.png last, with torch, the trainer and an optimizer's torch._dynamo already
imported: a heap of about 300,000 objects, which every garbage collection during the drawing
walks. Each repeat is such a process: it imports the same, builds an optimizer, then times
write_report (matplotlib's import included) and, apart, the same steps one by one (import,
building the figure, drawing it, encoding the PNG) on a second copy. Minimum and median of the
repeats, CPU seconds.

    python benchmarks/bench_report_png.py --repeats 3            # trains a huge_lr run first
    python benchmarks/bench_report_png.py --run runs/huge_lr_42    # an existing run folder
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, table

PY = sys.executable


def child(run: str, out: str) -> None:
    """One fresh process: the trainer's imports, then write_report, then its steps one by one."""
    import time

    sys.path.insert(0, str(ROOT))
    import importlib

    import torch

    for module in ("breaklab.trainer", "breaklab.run_summary"):  # what the trainer process holds
        importlib.import_module(module)
    from breaklab import plots

    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # imports torch._dynamo, as training does
    cpu = time.process_time
    t0 = cpu()
    plots.write_report(run, Path(out) / "report.png")
    whole = cpu() - t0
    report = plots.prepare_report(run)  # matplotlib is imported now: the steps below exclude it
    # with the garbage collector as write_report has it (switched off while drawing, where it is)
    with getattr(plots, "_no_garbage_collection", contextlib.nullcontext)():
        t1 = cpu()
        fig = plots.report_figure(report.run, report.diagnosis, report.reference, report.reference_label,
                                  report.name, report.reference_note)
        t2 = cpu()
        fig.canvas.draw()
        t3 = cpu()
        plots._png(fig)  # draws again (cheaper: ticks and fonts are made) and encodes
        t4 = cpu()
    print(json.dumps({"write_report": whole, "second figure: build": t2 - t1,
                      "second figure: draw": t3 - t2, "second figure: draw again + PNG": t4 - t3}))


def train_one(folder: Path) -> Path:
    out = folder / "huge_lr_42"
    subprocess.run([PY, str(ROOT / "trainer.py"), "--seed", "42", "--break", "huge_lr", "--out", str(out),
                    "--quiet"], check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, help="a run folder [default: train huge_lr, seed 42, into a temporary folder]")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="breaklab-bench-") as tmp:
        run = args.run or train_one(Path(tmp))
        results: dict[str, list[float]] = {}
        for r in range(args.repeats):
            proc = subprocess.run([PY, __file__, "--child", str(run), tmp], capture_output=True, text=True, check=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
            for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items():
                results.setdefault(k, []).append(v)
            print(f"  repeat {r + 1}/{args.repeats}  write_report {results['write_report'][-1]:.3f} s CPU",
                  file=sys.stderr)
    print(f"{run}: CPU seconds over {args.repeats} fresh processes")
    print(table([[k, f"{min(v):.3f}", f"{statistics.median(v):.3f}"] for k, v in results.items()],
                ["step", "min", "median"]))


if __name__ == "__main__":
    main()
