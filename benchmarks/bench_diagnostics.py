"""What each per-step diagnostic costs, as a share of the bare training step.

It runs the trainer's own step (model.train(), zero_grad, forward, cross-entropy, backward,
optimizer step: the same MLP, optimizer and batch size) on the bundled sample, and on every step
times, on that step's real gradients and activations, each group of statistics of
breaklab.diagnostics.StepDiagnostics, the trainer's two calls as a whole (before_step and
after_step, with their one host synchronisation) and the JSON line the MetricLogger writes.
On CPU every torch op finishes before it returns, so the time around a call is its cost; it is
the CPU time of this thread (1 torch thread does all the work in it), which another process's work
on a busy shared machine stretches much less than wall time. Medians over steps.

    python benchmarks/bench_diagnostics.py                     # 400 steps, 1 thread
    python benchmarks/bench_diagnostics.py --compare-with adc69ac   # also time an older diagnostics.py
"""
from __future__ import annotations

import argparse
import io
import time

from _common import median, module_at, table

import torch
import torch.nn.functional as F

from breaklab import trainer
from breaklab.diagnostics import StepDiagnostics
from breaklab.metric_log import dumps
from breaklab.canonical_setup import configure_determinism, load_dataset, minibatches, seed_everything


def clock(fn):
    t0 = time.thread_time()
    result = fn()
    return time.thread_time() - t0, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the trainer's default is 1)")
    ap.add_argument("--compare-with", metavar="COMMIT",
                    help="also time StepDiagnostics from breaklab/diagnostics.py at this commit")
    args = ap.parse_args()

    configure_determinism(args.threads)
    seed_everything(42)
    data = load_dataset("sample")
    model = trainer.MLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    diag, parts = StepDiagnostics(model), StepDiagnostics(model)
    old = None
    if args.compare_with:
        old = module_at(args.compare_with, "breaklab/diagnostics.py").StepDiagnostics(model)
    # (statistics, label of its before_step, label of its after_step), timed in turns
    versions = [(diag, "ALL: trainer's before_step()", "ALL: trainer's after_step() (+ 1 sync)")]
    if old is not None:
        versions.append((old, "ALL, older diagnostics.py: before_step()", "ALL, older diagnostics.py: after_step()"))
    sink = io.StringIO()
    t: dict[str, list[float]] = {}

    def note(name: str, seconds: float) -> None:
        t.setdefault(name, []).append(seconds)

    step, epoch = 0, 0
    while step < args.steps:
        for idx in minibatches(len(data.y_train), 64, 42, epoch):
            if step == args.steps:
                break
            x, y = data.x_train[idx], data.y_train[idx]
            t0 = time.thread_time()
            model.train()
            opt.zero_grad(set_to_none=True)
            logits, hidden = model(x, return_hidden=True)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            fwd_bwd = time.thread_time() - t0

            with torch.no_grad():
                dt, mags = clock(parts.gradient_magnitudes)
                note("|g| written into one matrix", dt)
                note("grad norms (L2, mean |g|, per layer)", clock(lambda: parts.grad_norms(mags))[0])
                # last: zero_counts overwrites the |g| matrix
                note("zero fractions (per layer, dead units)", clock(lambda: parts.zero_counts(mags))[0])
                note("rows summed per parameter (one index_add)", clock(parts.per_parameter)[0])
                note("parameter snapshot (+ its norm, for update ratio)", clock(parts.snapshot_params)[0])
            # With --compare-with, the two versions take turns going first: the second finds the
            # gradients and parameters in cache (measured: about 25 us a step of difference).
            order = 1 if step % 2 == 0 else -1
            for version, before_label, _ in versions[::order]:
                note(before_label, clock(version.before_step)[0])

            opt_step, _ = clock(opt.step)
            note("bare step (fwd, bwd, SGD step)", fwd_bwd + opt_step)

            with torch.no_grad():
                note("update ratio", clock(parts.update_norm)[0])
                note("activation + output stats", clock(lambda: parts.activation_stats(hidden, logits))[0])
                note("BatchNorm running stats", clock(parts.batchnorm_stats)[0])
            kw = dict(loss=loss, outputs=logits, hidden=hidden, scale=1.0, step_skipped=False)
            records = {}
            for version, _, after_label in versions[::order]:
                dt, records[after_label] = clock(lambda version=version: version.after_step(**kw))
                note(after_label, dt)
            record = records["ALL: trainer's after_step() (+ 1 sync)"]
            note("JSON line (MetricLogger)", clock(lambda: sink.write(dumps(
                {"type": "step", "step": step, "epoch": epoch, "batch_size": len(idx), "lr": 0.1, **record}) + "\n"))[0])
            step += 1
        epoch += 1

    def summarise(stat) -> dict[str, float]:
        v = {k: stat(xs) for k, xs in t.items()}
        v["ALL: diagnostics + JSON line"] = (v["ALL: trainer's before_step()"]
                                             + v["ALL: trainer's after_step() (+ 1 sync)"]
                                             + v["JSON line (MetricLogger)"])
        if old is not None:
            v["ALL, older diagnostics.py: + JSON line"] = (v.pop("ALL, older diagnostics.py: before_step()")
                                                           + v.pop("ALL, older diagnostics.py: after_step()")
                                                           + v["JSON line (MetricLogger)"])
        return v

    # The 10th percentile is what a step costs when nothing else on the machine gets in the way.
    med, p10 = summarise(median), summarise(lambda xs: sorted(xs)[len(xs) // 10])
    bare, bare10 = med["bare step (fwd, bwd, SGD step)"], p10["bare step (fwd, bwd, SGD step)"]
    rows = [[name, f"{v * 1e6:.0f}", f"{100 * v / bare:.1f}%", f"{p10[name] * 1e6:.0f}",
             f"{100 * p10[name] / bare10:.1f}%"] for name, v in med.items()]
    print(f"per step, CPU time of {args.steps} steps, batch 64, MLP 784-256-10, {args.threads} thread(s), "
          f"bundled sample, torch {torch.__version__}")
    print(table(rows, ["part", "median us", "share of bare step", "10th pct us", "share of bare step"]))


if __name__ == "__main__":
    main()
