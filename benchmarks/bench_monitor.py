"""What breaklab.Monitor costs in a loop written the way people write it (not trainer.py's).

For each setup, the same training steps run bare and with the Monitor, side by side in one
process: rounds alternate the arms (rotating which goes first), each arm trains a fresh copy of
the model from the same seed on the same batches, and the medians are compared.

  MLP, SGD    784 -> 256 -> BatchNorm -> ReLU -> Dropout -> 10 (nn.Sequential), SGD + momentum
  MLP, Adam   the same MLP with Adam, as in examples/mnist_mlp.py
  CNN         pytorch/examples' MNIST Net (two convolutions, two linear layers), Adadelta,
              as in examples/mnist_cnn.py
  MLP, Adam, DataLoader   examples/mnist_mlp.py's loop as written: the MLP with Adam, each
              batch from a DataLoader over torchvision's MNIST (the bundled sample) with
              ToTensor and Normalize per image, inside the timed loop

Arms: bare (forward, loss, backward, optimizer step); + Monitor (before_step, after_step and
one JSON line per step, the forward hooks); + Monitor(warn=True) (the doctor's detectors
running as the records are written); + passes only: not the Monitor, but the passes over the
gradients and the parameters that exact per-step statistics cannot do without, in their
cheapest torch ops, and nothing else (no small statistics, no JSON, no hooks): a floor for any
Monitor built from eager torch ops (see floor_passes). In the first three setups the batches
are tensors already in memory, so the ratio is against the training step itself (the goal's
measure); the DataLoader setup shows the same absolute cost as a share of a loop that loads its
data the usual way. Wall time and the thread's CPU time are both reported (on a busy machine
another process stretches wall time much more than CPU time).

    python benchmarks/bench_monitor.py                   # 5 rounds, 1 thread
    python benchmarks/bench_monitor.py --rounds 1 --mlp-steps 20 --cnn-steps 4   # a smoke run
    python benchmarks/bench_monitor.py --compare-with e953123   # also the Monitor at a commit
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import module_at, table

import torch
import torch.nn.functional as F
from torch import nn

from breaklab import Monitor
from breaklab.canonical_setup import configure_determinism, load_dataset


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.1), nn.Linear(256, 10))


class Net(nn.Module):
    """pytorch/examples mnist/main.py's network."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


def flat_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), *mlp())


# name -> (model, optimizer, loss, data: "vectors" / "images" in memory, or "loader")
SETUPS = {
    "MLP, SGD": (mlp, lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), F.cross_entropy, "vectors"),
    "MLP, Adam": (mlp, lambda ps: torch.optim.Adam(ps, lr=1e-3), F.cross_entropy, "vectors"),
    "CNN, Adadelta": (Net, lambda ps: torch.optim.Adadelta(ps, lr=1.0), F.nll_loss, "images"),
    "MLP, Adam, DataLoader": (flat_mlp, lambda ps: torch.optim.Adam(ps, lr=1e-3), F.cross_entropy, "loader"),
}
IN_MEMORY_MLP = ("MLP, SGD", "MLP, Adam")
PASSES_ONLY = "+ passes only (floor)"


class LoaderBatches:
    """The first `steps` batches of examples/mnist_mlp.py's DataLoader, the same ones on every
    pass (the shuffle's generator is reseeded): loading them is part of each timed step."""

    def __init__(self, steps: int):
        from torch.utils.data import DataLoader
        from torchvision import datasets, transforms

        from breaklab.canonical_setup import unpacked_sample_root, verify_sample

        tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
        train_set = datasets.MNIST(str(unpacked_sample_root(verify_sample())), train=True, transform=tf)
        self.generator = torch.Generator()
        self.loader = DataLoader(train_set, batch_size=64, shuffle=True, generator=self.generator)
        self.steps = min(steps, len(self.loader))

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        self.generator.manual_seed(0)
        return itertools.islice(iter(self.loader), self.steps)

    def __getitem__(self, index: slice) -> "LoaderBatches":  # batches[:3], for the warm-up
        shorter = LoaderBatches.__new__(LoaderBatches)
        shorter.generator, shorter.loader = self.generator, self.loader
        shorter.steps = len(range(self.steps)[index])
        return shorter


def floor_passes(params: list[torch.Tensor]):
    """(before_step, after_step) doing only what exact per-step gradient and update statistics
    need to read and write, each in the cheapest eager torch op measured: the gradients' L2
    norms (one read), |g| written once and summed (mean |g|; a row of the first layer sums to 0
    exactly when the unit is dead), its bits clamped and summed (the exact zeros), the
    parameters copied into the same buffer and their norm, and after the step each parameter's
    update norm (a subtraction in place and a norm). The statistics are computed and thrown
    away; no small tensors, no host synchronisation, no JSON. It even does a little less than
    the statistics need: the other parameters' |g| sums and zero counts are taken together, not
    per parameter. Tried and slower inside the step, all exact: the first layer's |g| only read
    (BLAS sasum, numpy's count of nonzero bits, L1 and L0 norms), numpy for the small
    parameters, the first layer in cache-sized blocks of rows."""
    sizes = [p.numel() for p in params]
    scratch = torch.empty(sum(sizes))
    views = [v.view_as(p) for v, p in zip(scratch.split(sizes), params)]
    first_rows = views[0].view(params[0].shape[0], -1)  # the optimizer's first parameter: layer 1's weight
    rest = scratch[sizes[0]:]

    def before() -> None:
        grads = [p.grad for p in params]
        torch._foreach_norm(grads)
        for g, v in zip(grads, views):
            torch.abs(g, out=v)
        first_rows.sum(dim=1)
        rest.sum()
        scratch.view(torch.int32).clamp_max_(1).sum(dtype=torch.int32)
        torch._foreach_copy_(views, params)
        torch.linalg.vector_norm(scratch)

    def after() -> None:
        torch._foreach_sub_(views, params)
        torch._foreach_norm(views)

    return before, after


def memory_batches(data, steps: int, source: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`steps` batches of 64 from the bundled sample's training set, in memory, in a seeded
    shuffled order (reshuffled after each pass): flat vectors, or 1 x 28 x 28 images."""
    g = torch.Generator().manual_seed(0)
    order = torch.cat([torch.randperm(len(data.y_train), generator=g)
                       for _ in range(-(-steps * 64 // len(data.y_train)))])
    x_all = data.x_train.view(-1, 1, 28, 28) if source == "images" else data.x_train
    return [(x_all[i], data.y_train[i]) for i in order[:steps * 64].split(64)]


def run_arm(setup: str, batches, arm: str, workdir: Path, old_monitor=None) -> tuple[float, float]:
    """(wall seconds, thread CPU seconds) of the training steps of one arm."""
    make_model, make_opt, loss_fn, _ = SETUPS[setup]
    torch.manual_seed(0)
    model = make_model()
    optimizer = make_opt(model.parameters())
    mon = floor = None
    if arm == PASSES_ONLY:
        floor = floor_passes([p for g in optimizer.param_groups for p in g["params"]])
    elif arm != "bare":
        make = old_monitor if arm.startswith("+ Monitor at") else Monitor
        mon = make(model, optimizer, out=workdir / arm.replace(" ", "_"), warn=arm.endswith("warn=True)"))
    model.train()
    t0, c0 = time.perf_counter(), time.thread_time()
    for x, y in batches:
        optimizer.zero_grad()
        output = model(x)
        loss = loss_fn(output, y)
        loss.backward()
        if mon is not None:
            mon.before_step()
        elif floor is not None:
            with torch.no_grad():
                floor[0]()
        optimizer.step()
        if mon is not None:
            mon.after_step(loss, outputs=output, targets=y)
        elif floor is not None:
            with torch.no_grad():
                floor[1]()
    wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    if mon is not None:
        mon.close()
    return wall, cpu


def monitor_at(commit: str):
    """breaklab.Monitor as monitor.py and diagnostics.py were at `commit` (the rest of the
    package as it is now), to compare before and after a change in the same run."""
    diagnostics = module_at(commit, "breaklab/diagnostics.py")
    monitor = module_at(commit, "breaklab/monitor.py")
    for name in ("StepDiagnostics", "forward_float_max", "finite_or_none"):
        if hasattr(monitor, name) and hasattr(diagnostics, name):
            setattr(monitor, name, getattr(diagnostics, name))
    return monitor.Monitor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mlp-steps", type=int, default=300)
    ap.add_argument("--cnn-steps", type=int, default=30)
    ap.add_argument("--loader-steps", type=int, default=60,
                    help="steps of the DataLoader setup (at most 62: one pass over the bundled sample)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compare-with", metavar="COMMIT",
                    help="also time the Monitor as monitor.py and diagnostics.py were at this commit")
    args = ap.parse_args()

    configure_determinism(args.threads)
    data = load_dataset("sample")
    arms = ["bare", "+ Monitor", "+ Monitor(warn=True)", PASSES_ONLY]
    old_monitor = None
    if args.compare_with:
        old_monitor = monitor_at(args.compare_with)
        arms.insert(2, f"+ Monitor at {args.compare_with}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="breaklab-bench-monitor-") as tmp:
        for setup, (_, _, _, source) in SETUPS.items():
            if source == "loader":
                batches = LoaderBatches(args.loader_steps)
                steps = len(batches)
            else:
                steps = args.cnn_steps if source == "images" else args.mlp_steps
                batches = memory_batches(data, steps, source)
            run_arm(setup, batches[:3], "+ Monitor", Path(tmp))  # warm-up: first-call costs out of the rounds
            times: dict[str, list[tuple[float, float]]] = {a: [] for a in arms}
            for r in range(args.rounds):
                for arm in arms[r % len(arms):] + arms[:r % len(arms)]:
                    times[arm].append(run_arm(setup, batches, arm, Path(tmp), old_monitor))
                    print(f"  {setup:<21} round {r + 1}/{args.rounds}  {arm:<24} {times[arm][-1][0]:7.3f} s",
                          file=sys.stderr)
            bare_wall = statistics.median(w for w, _ in times["bare"])
            bare_cpu = statistics.median(c for _, c in times["bare"])
            for arm in arms:
                wall = statistics.median(w for w, _ in times[arm])
                cpu = statistics.median(c for _, c in times[arm])
                rows.append([setup, arm, f"{1000 * wall / steps:.2f}", f"{wall / bare_wall:.2f}x",
                             f"{1000 * cpu / steps:.2f}", f"{cpu / bare_cpu:.2f}x"])
    print(f"breaklab.Monitor overhead: {args.rounds} rounds, {args.threads} thread(s), batch 64, "
          f"{args.mlp_steps} MLP / {args.cnn_steps} CNN / {args.loader_steps} DataLoader steps per round, medians")
    print(table(rows, ["model", "arm", "ms/step", "vs bare", "CPU ms/step", "CPU vs bare"]))

    def ratios(setups, arm):
        return [float(r[3][:-1]) for r in rows if r[0] in setups and r[1] == arm]
    monitor, floors = ratios(IN_MEMORY_MLP, "+ Monitor"), ratios(IN_MEMORY_MLP, PASSES_ONLY)
    print(f"goal: Monitor within 1.3x of the bare MLP step: {'met' if max(monitor) <= 1.3 else 'not met'} "
          f"({min(monitor):.2f}x-{max(monitor):.2f}x wall, batches in memory)")
    print(f"floor: the passes alone are {min(floors):.2f}x-{max(floors):.2f}x of the bare MLP step "
          f"(an eager-torch Monitor with exact per-step statistics cannot be faster)")
    loader = ratios(("MLP, Adam, DataLoader",), "+ Monitor")
    print(f"in examples/mnist_mlp.py's loop (DataLoader, per-image transforms): Monitor {loader[0]:.2f}x wall")


if __name__ == "__main__":
    main()
