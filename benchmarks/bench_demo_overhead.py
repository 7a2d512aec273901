"""`./demo_run.sh 42 huge_lr` against `import torch, torchvision` alone, and where the gap goes.

The import is the floor of any run (it is most of the time of a short one). The rest is the
project's own overhead: training, the test pass, checkpoints, the end-of-run summary and
report.png, and the second process that packs the tarball. Each command runs in a fresh temporary
folder (demo_run.sh writes runs/ and the tarball into the current folder), rounds interleave,
medians are reported, as wall time and as CPU time (user + system of the process and its
children: on a busy shared machine other processes stretch wall time far more). Then one
attributed run: `python -X importtime` for the imports, and the CPU time of each phase of the
trainer, timed by wrapping the trainer's own functions.

    python benchmarks/bench_demo_overhead.py            # 3 interleaved rounds
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import ROOT, interleaved, median, run_process, table, temp_workdir

PY = sys.executable


def fresh(parent: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix="run-", dir=parent))


def attribute_phases() -> None:
    """Child mode: one trainer run like demo_run.sh's, with the trainer's phases timed."""
    sys.path.insert(0, str(ROOT))
    t_start = time.process_time()
    from breaklab import run_summary, trainer  # noqa: imports torch
    import breaklab.plots
    from breaklab.commands.train import build_command
    from breaklab.diagnostics import StepDiagnostics

    phases: Counter = Counter()

    def timed(fn, name):
        def wrapper(*a, **kw):
            t0 = time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                phases[name] += time.process_time() - t0
        return wrapper

    for name in ("configure_determinism", "load_dataset", "evaluate", "save_checkpoint",
                 "git_commit", "environment_info"):
        setattr(trainer, name, timed(getattr(trainer, name), name))
    run_summary.read_metrics = timed(run_summary.read_metrics, "read_metrics")
    breaklab.plots.write_report = timed(breaklab.plots.write_report, "write_report (report.png)")
    StepDiagnostics.before_step = timed(StepDiagnostics.before_step, "diagnostics")
    StepDiagnostics.after_step = timed(StepDiagnostics.after_step, "diagnostics")
    t_imported = time.process_time()
    t0 = time.process_time()
    try:
        build_command()(args=["--seed", "42", "--break", "huge_lr", "--out", "run", "--quiet"],
                                standalone_mode=False)
    finally:
        total = time.process_time() - t0
    named = sum(phases.values())
    phases["training steps, summary, files (the rest of train())"] = total - named
    phases["import breaklab.trainer (torch, click, breaklab)"] = t_imported - t_start
    print(json.dumps(dict(phases)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--attribute", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.attribute:
        attribute_phases()
        return

    with temp_workdir() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "PYTHON": PY, "PYTHONPATH": str(ROOT)}
        demo = str(ROOT / "demo_run.sh")
        pack_src = fresh(tmp)
        run_process(["bash", demo, "42", "huge_lr"], pack_src, env)  # a finished run for the pack-only arm
        commands = {
            "import torch, torchvision": ([PY, "-c", "import torch, torchvision"], ROOT),
            "./demo_run.sh 42 huge_lr": (["bash", demo, "42", "huge_lr"], None),
            "  trainer.py step alone": ([PY, str(ROOT / "trainer.py"), "--seed", "42", "--break", "huge_lr",
                                         "--out", "runs/huge_lr_42", "--quiet"], None),
            "  pack step alone": ([PY, "-m", "breaklab.commands.pack", "runs/huge_lr_42", "--tarball", "x.tgz"], pack_src),
            "import torch": ([PY, "-c", "import torch"], ROOT),
        }
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        times = interleaved({name: (lambda name=name, cmd=cmd, cwd=cwd: run_process(cmd, cwd or fresh(tmp), env, cpu[name]))
                             for name, (cmd, cwd) in commands.items()}, args.repeats)
        med = {k: median(v) for k, v in times.items()}
        med_cpu = {k: median(v) for k, v in cpu.items()}
        base, base_cpu = med["import torch, torchvision"], med_cpu["import torch, torchvision"]
        rows = [[k, f"{v:.2f}", f"{v / base:.2f}x", f"{med_cpu[k]:.2f}", f"{med_cpu[k] / base_cpu:.2f}x"]
                for k, v in med.items()]
        print(f"median of {args.repeats} interleaved rounds, each in a fresh folder")
        print(table(rows, ["command", "wall s", "vs import", "CPU s", "vs import"]))
        demo_name = "./demo_run.sh 42 huge_lr"
        print(f"goal: demo_run.sh within 1.25x of `import torch, torchvision`: "
              f"{'met' if med[demo_name] <= 1.25 * base else 'NOT met'} ({med[demo_name] / base:.2f}x wall, "
              f"{med_cpu[demo_name] / base_cpu:.2f}x CPU time); gap {med[demo_name] - base:.2f} s wall, "
              f"{med_cpu[demo_name] - base_cpu:.2f} s CPU")

        # One attributed run: imports by top-level package, then the trainer's phases.
        proc = subprocess.run([PY, "-X", "importtime", __file__, "--attribute"], cwd=fresh(tmp),
                              capture_output=True, text=True, check=True)
    tops: Counter = Counter()
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s+(\S+)", line)
        if m:  # self time, summed by top-level package (the compiler stack apart): each module once
            compiler = m[2].startswith(("torch._dynamo", "torch._inductor"))
            tops["torch._dynamo + torch._inductor" if compiler else m[2].split(".")[0]] += int(m[1]) / 1e6
    phases = json.loads(proc.stdout.strip().splitlines()[-1])
    print("\none trainer run (as in demo_run.sh), attributed (imports: wall seconds of -X importtime; "
          "phases: CPU seconds):")
    rows = [[f"import {k} (its own modules)", f"{v:.2f}"] for k, v in tops.most_common(8) if v >= 0.02]
    rows += [[k, f"{v:.2f}"] for k, v in sorted(phases.items(), key=lambda kv: -kv[1])]
    print(table(rows, ["where", "seconds"]))
    print("(an import made inside a phase, e.g. torch._dynamo inside configure_determinism or the "
          "optimizer's construction, matplotlib inside write_report, counts both in its import row "
          "and in that phase)")

if __name__ == "__main__":
    main()
