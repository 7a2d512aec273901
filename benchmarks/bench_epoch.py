"""One training epoch of trainer.py (every per-step diagnostic on) against two baselines.

  (a) bare:       the same MLP, optimizer and batch size, in-memory tensors indexed by a seeded
                  permutation, no diagnostics, no logging: the floor for this model.
  (b) dataloader: the pytorch/examples mnist/main.py style: a DataLoader over
                  torchvision.datasets.MNIST with ToTensor + Normalize applied per sample
                  (num_workers=0, as that script uses on CPU), the same MLP.

"Epoch" is one training pass over the 60,000 training images. For the trainer it is timed around
the loop inside train() (via the MetricLogger's progress wrapper, the real code path); the whole
train() call (data loading, the test pass, the checkpoint, the summary) is reported separately.
Runs interleave and the medians are compared, side by side in one process. Besides wall time,
each arm's CPU time (of the one thread that does all the work, with 1 torch thread) is measured:
another process's work on a busy shared machine stretches wall time, much less CPU time.

    python benchmarks/bench_epoch.py                 # 3 interleaved repeats, 1 thread
    python benchmarks/bench_epoch.py --images 2000 --repeats 1   # a quick smoke run
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _common import interleaved, median, mnist_root, table, temp_workdir

import torch
import torch.nn.functional as F

from breaklab import trainer
from breaklab.diagnostics import StepDiagnostics
from breaklab.metric_log import MetricLogger
from breaklab.canonical_setup import MNIST_MEAN, MNIST_STD, configure_determinism, load_dataset


class TimedLogger(MetricLogger):
    """The trainer's own logger, which also notes how long the batches loop took (wall and
    thread CPU time), and each iteration of it (from one batch handed out to the next)."""

    loop_seconds: list[float] = []
    loop_cpu_seconds: list[float] = []
    step_seconds: list[list[float]] = []

    def progress(self, batches, *, total, desc):
        steps: list[float] = []
        t0 = last = time.perf_counter()
        c0 = time.thread_time()
        for batch in super().progress(batches, total=total, desc=desc):
            yield batch
            now = time.perf_counter()
            steps.append(now - last)
            last = now
        TimedLogger.loop_cpu_seconds.append(time.thread_time() - c0)
        TimedLogger.loop_seconds.append(time.perf_counter() - t0)
        TimedLogger.step_seconds.append(steps)


class NoDiagnostics(StepDiagnostics):
    """For the split only: the first step's record, reused, so the loop, its hooks and the JSON
    line stay and the statistics go. Shows what the rest of the loop costs."""

    cached = None

    def before_step(self) -> None:
        if NoDiagnostics.cached is None:
            super().before_step()

    def after_step(self, **kw):
        if NoDiagnostics.cached is None:
            NoDiagnostics.cached = super().after_step(**kw)
        return NoDiagnostics.cached


def trainer_epoch(root: Path, out: Path, threads: int, whole: list[float], steps: list[float],
                  cpu: list[float], diagnostics: bool = True) -> float:
    cfg = trainer.Config(data="mnist", data_dir=str(root), epochs=1, out=str(out), quiet=True,
                         threads=threads, seed=42)
    trainer.MetricLogger = TimedLogger
    trainer.StepDiagnostics = StepDiagnostics if diagnostics else NoDiagnostics
    try:
        t0 = time.perf_counter()
        trainer.train(cfg)
        whole.append(time.perf_counter() - t0)
    finally:
        trainer.MetricLogger = MetricLogger
        trainer.StepDiagnostics = StepDiagnostics
    steps.extend(TimedLogger.step_seconds[-1])
    cpu.append(TimedLogger.loop_cpu_seconds[-1])
    return TimedLogger.loop_seconds[-1]


def _timed_sgd_epoch(batches, seed: int, steps: list[float], cpu: list[float]) -> float:
    """The plain pytorch/examples step over (inputs, labels) batches: the loop both baselines
    share, so they differ only in where their batches come from."""
    torch.manual_seed(seed)
    model = trainer.MLP()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    t0 = last = time.perf_counter()
    c0 = time.thread_time()
    for data, target in batches:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(data.flatten(1)), target)
        loss.backward()
        opt.step()
        now = time.perf_counter()
        steps.append(now - last)
        last = now
    cpu.append(time.thread_time() - c0)
    return time.perf_counter() - t0


def bare_epoch(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, steps: list[float],
               cpu: list[float]) -> float:
    """(a) in-memory tensors indexed by a seeded permutation."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    return _timed_sgd_epoch(((x[idx], y[idx]) for idx in order.split(batch_size)), seed, steps, cpu)


def dataloader_epoch(root: Path, batch_size: int, seed: int, steps: list[float], cpu: list[float]) -> float:
    """(b) a DataLoader over torchvision's MNIST with ToTensor + Normalize per sample."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])
    ds = datasets.MNIST(str(root), train=True, download=False, transform=transform)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=0,
                        generator=torch.Generator().manual_seed(seed))
    return _timed_sgd_epoch(loader, seed, steps, cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median reported)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for every arm (the trainer's default is 1)")
    ap.add_argument("--data-dir", help="torchvision root of full MNIST (DIR/MNIST/raw)")
    ap.add_argument("--images", type=int, default=60_000,
                    help="tile the sample to this many training images (ignored with full MNIST)")
    args = ap.parse_args()

    import _common
    _common.IDX_FILES.update({"train-images-idx3-ubyte": args.images, "train-labels-idx1-ubyte": args.images})
    configure_determinism(args.threads)  # the same torch settings for all three arms
    with temp_workdir() as tmp:
        tmp = Path(tmp)
        root, what = mnist_root(args.data_dir, tmp / "data")
        data = load_dataset("mnist", str(root))
        x, y = data.x_train, data.y_train
        batch_size = trainer.Config.batch_size
        whole: list[float] = []
        steps: dict[str, list[float]] = {"t": [], "n": [], "a": [], "b": []}
        cpu: dict[str, list[float]] = {"t": [], "n": [], "a": [], "b": []}
        print(f"data: {what}; {len(y)} training images, batch {batch_size}, "
              f"{torch.get_num_threads()} thread(s), torch {torch.__version__}", file=sys.stderr)
        times = interleaved({
            "trainer (all diagnostics)": lambda: trainer_epoch(root, tmp / "run", args.threads, whole, steps["t"],
                                                               cpu["t"]),
            "trainer, statistics off": lambda: trainer_epoch(root, tmp / "run0", args.threads, [], steps["n"],
                                                             cpu["n"], diagnostics=False),
            "(a) bare in-memory loop": lambda: bare_epoch(x, y, batch_size, 42, steps["a"], cpu["a"]),
            "(b) DataLoader + transforms": lambda: dataloader_epoch(root, batch_size, 42, steps["b"], cpu["b"]),
        }, args.repeats)

    n_steps = len(steps["a"]) // args.repeats
    t = median(times["trainer (all diagnostics)"])
    a = median(times["(a) bare in-memory loop"])
    b = median(times["(b) DataLoader + transforms"])
    n = median(times["trainer, statistics off"])
    # The median step is robust to a neighbour's burst of work on a shared machine; x steps.
    ts, ns, as_, bs = (median(steps[k]) * n_steps for k in ("t", "n", "a", "b"))
    tc, nc, ac, bc = (median(cpu[k]) for k in ("t", "n", "a", "b"))
    w = median(whole)

    def row(name: str, wall: float, step: float | None, cpu_s: float | None) -> list[str]:
        cells = [name, f"{wall:.3f}", f"{wall / a:.2f}x", f"{b / wall:.1f}x"]
        if step is None:
            return cells + [""] * 5
        return cells + [f"{step:.3f}", f"{step / as_:.2f}x", f"{cpu_s:.3f}", f"{cpu_s / ac:.2f}x", f"{bc / cpu_s:.1f}x"]

    rows = [
        row("trainer, training pass", t, ts, tc),
        row("trainer, statistics off (split only)", n, ns, nc),
        row("(a) bare in-memory loop", a, as_, ac),
        row("(b) DataLoader + transforms", b, bs, bc),
        row("trainer, whole train() call", w, None, None),
    ]
    print(f"one epoch, {len(y)} images ({what}), batch {batch_size}, {n_steps} steps, {args.threads} "
          f"thread(s), median of {args.repeats} interleaved repeats")
    print(table(rows, ["loop", "epoch s", "vs (a)", "(b) / this", "median step x steps", "vs (a)",
                       "CPU s", "vs (a)", "(b) / this"]))
    print(f"goal: trainer within 1.3x of (a): {'met' if t / a <= 1.3 else 'NOT met'} "
          f"({t / a:.2f}x epoch, {ts / as_:.2f}x median step, {tc / ac:.2f}x CPU time); >= 8x faster than (b): "
          f"{'met' if b / t >= 8 else 'NOT met'} ({b / t:.1f}x epoch, {bs / ts:.1f}x median step, "
          f"{bc / tc:.1f}x CPU time)")


if __name__ == "__main__":
    main()
