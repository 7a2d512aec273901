"""What each part of breaklab.Monitor costs inside the training step, not beside it.

bench_diagnostics.py times each group of statistics around its own call. Inside a training step
a part also costs what it does to the rest of the step (the cache it takes from the forward
pass, the backward pass and the optimizer), so here each part is measured by its absence: the
user-style MLP loop of bench_monitor.py runs bare, with the whole Monitor, and with the Monitor
minus one part at a time (that part's method replaced, in this process only, by one that does
nothing or returns the last real result), side by side, the arms rotating, medians of the
thread's CPU time. "saves" is what the step gets back without that part.

The parts: the gradient statistics (|g|, norms, zero counts, per-parameter sums), the update
ratio (the parameter snapshot and the update norms), both of them (they share a scratch
buffer, so only without both does the step get that buffer's share of the cache back: the two
save more together than apart), the activation and output statistics,
the BatchNorm statistics, the record's Python (record() in breaklab.diagnostics), the train
accuracy's bookkeeping, and the JSON line (encoding and writing).

    python benchmarks/bench_monitor_parts.py                  # MLP with SGD, 5 rounds
    python benchmarks/bench_monitor_parts.py --optimizer adam --rounds 3
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import bench_monitor
from _common import table

from breaklab.monitor import Monitor
from breaklab.canonical_setup import configure_determinism, load_dataset
from breaklab.diagnostics import StepDiagnostics
from breaklab.metric_log import MetricLogger


def _last_record(original):
    """record() the first time, then the same dict again: the record's Python left out."""
    kept: dict = {}

    def record(self, values, **kwargs):
        if "record" not in kept:
            kept["record"] = original(self, values, **kwargs)
        return dict(kept["record"])
    return record


# part -> [(class, method name, replacement)]
PARTS = {
    "gradient statistics": [
        (StepDiagnostics, "gradient_magnitudes", lambda self: self._grad_matrix),
        (StepDiagnostics, "grad_norms", lambda self, mags: None),
        (StepDiagnostics, "zero_counts", lambda self, mags: None),
        (StepDiagnostics, "per_parameter", lambda self: None)],
    "update ratio": [
        (StepDiagnostics, "snapshot_params", lambda self: None),
        (StepDiagnostics, "update_norm", lambda self: None)],
    # the two share one scratch buffer: without both, the step also gets its cache back
    "gradient statistics and update ratio": [],  # filled in below
    "activation + output stats": [(StepDiagnostics, "activation_stats", lambda self, hidden, outputs: None)],
    "BatchNorm stats": [(StepDiagnostics, "batchnorm_stats", lambda self: None)],
    "record's Python": [(StepDiagnostics, "record", _last_record(StepDiagnostics.record))],
    "train accuracy bookkeeping": [(Monitor, "_count_correct", lambda self, outputs, targets, classes_dim: None)],
    "JSON line": [(MetricLogger, "write", lambda self, record: self._records.append(record))],
}
PARTS["gradient statistics and update ratio"] = PARTS["gradient statistics"] + PARTS["update ratio"]


def run_arm(setup: str, batches, arm: str, workdir: Path) -> float:
    """Thread CPU seconds per step of one arm: "bare", "+ Monitor" or "- <part>"."""
    replaced = PARTS.get(arm[2:], []) if arm.startswith("- ") else []
    originals = [(cls, name, cls.__dict__[name]) for cls, name, _ in replaced]
    for cls, name, replacement in replaced:
        setattr(cls, name, replacement)
    try:  # bench_monitor's own loop, with the Monitor or bare
        _, cpu = bench_monitor.run_arm(setup, batches, "bare" if arm == "bare" else "+ Monitor", workdir)
        return cpu / len(batches)
    finally:
        for cls, name, original in originals:
            setattr(cls, name, original)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    configure_determinism(args.threads)
    setup = {"sgd": "MLP, SGD", "adam": "MLP, Adam"}[args.optimizer]
    batches = bench_monitor.memory_batches(load_dataset("sample"), args.steps, "vectors")
    arms = ["bare", "+ Monitor"] + [f"- {part}" for part in PARTS]
    times: dict[str, list[float]] = {a: [] for a in arms}
    with tempfile.TemporaryDirectory(prefix="breaklab-bench-parts-") as tmp:
        run_arm(setup, batches[:3], "+ Monitor", Path(tmp))  # warm-up: first-call costs out of the rounds
        for r in range(args.rounds):
            for arm in arms[r % len(arms):] + arms[:r % len(arms)]:
                times[arm].append(run_arm(setup, batches, arm, Path(tmp)))
            print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr)
    bare = statistics.median(times["bare"])
    whole = statistics.median(times["+ Monitor"])
    rows = []
    for arm in arms:
        t = statistics.median(times[arm])
        rows.append([arm, f"{1e6 * t:.0f}", f"{t / bare:.2f}x",
                     "" if arm in ("bare", "+ Monitor") else f"{1e6 * (whole - t):.0f}"])
    print(f"breaklab.Monitor's parts inside the step: {setup}, batch 64, {args.steps} steps, {args.rounds} "
          f"rounds, {args.threads} thread(s), medians of thread CPU time")
    print(table(rows, ["arm", "us/step", "vs bare", "saves us/step"]))
    print(f"the whole Monitor: {1e6 * (whole - bare):.0f} us a step over the bare step ({whole / bare:.2f}x)")


if __name__ == "__main__":
    main()
