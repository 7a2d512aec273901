"""What breaklab.Monitor costs in a loop written the way people write it (not trainer.py's).

For each model, the same training steps run bare and with the Monitor, side by side in one
process: rounds alternate the arms (rotating which goes first), each arm trains a fresh copy of
the model from the same seed on the same in-memory batches, and the medians are compared.

  MLP, SGD    784 -> 256 -> BatchNorm -> ReLU -> Dropout -> 10 (nn.Sequential), SGD + momentum
  MLP, Adam   the same MLP with Adam, as in examples/mnist_mlp.py
  CNN         pytorch/examples' MNIST Net (two convolutions, two linear layers), Adadelta,
              as in examples/mnist_cnn.py

Arms: bare (forward, loss, backward, optimizer step); + Monitor (before_step, after_step and
one JSON line per step, the forward hooks); + Monitor(warn=True) (the doctor's detectors
running as the records are written). The batches are tensors already in memory, so the ratio
is against the training step itself: with a DataLoader's per-sample transforms (examples/) the
same absolute cost is a smaller share. Wall time and the thread's CPU time are both reported
(on a busy machine another process stretches wall time much more than CPU time).

    python benchmarks/bench_monitor.py                   # 5 rounds, 1 thread
    python benchmarks/bench_monitor.py --rounds 1 --mlp-steps 20 --cnn-steps 4   # a smoke run
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import table

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


SETUPS = {
    "MLP, SGD": (mlp, lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), F.cross_entropy, False),
    "MLP, Adam": (mlp, lambda ps: torch.optim.Adam(ps, lr=1e-3), F.cross_entropy, False),
    "CNN, Adadelta": (Net, lambda ps: torch.optim.Adadelta(ps, lr=1.0), F.nll_loss, True),
}


def run_arm(setup: str, batches, arm: str, workdir: Path) -> tuple[float, float]:
    """(wall seconds, thread CPU seconds) of the training steps of one arm."""
    make_model, make_opt, loss_fn, _ = SETUPS[setup]
    torch.manual_seed(0)
    model = make_model()
    optimizer = make_opt(model.parameters())
    mon = None if arm == "bare" else Monitor(model, optimizer, out=workdir / arm.replace(" ", "_"),
                                             warn=arm.endswith("warn=True)"))
    model.train()
    t0, c0 = time.perf_counter(), time.thread_time()
    for x, y in batches:
        optimizer.zero_grad()
        output = model(x)
        loss = loss_fn(output, y)
        loss.backward()
        if mon is not None:
            mon.before_step()
        optimizer.step()
        if mon is not None:
            mon.after_step(loss, outputs=output, targets=y)
    wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    if mon is not None:
        mon.close()
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mlp-steps", type=int, default=300)
    ap.add_argument("--cnn-steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    configure_determinism(args.threads)
    data = load_dataset("sample")
    arms = ["bare", "+ Monitor", "+ Monitor(warn=True)"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="breaklab-bench-monitor-") as tmp:
        for setup, (_, _, _, images) in SETUPS.items():
            steps = args.cnn_steps if images else args.mlp_steps
            g = torch.Generator().manual_seed(0)
            order = torch.cat([torch.randperm(len(data.y_train), generator=g) for _ in range(-(-steps * 64 // 4000))])
            x_all = data.x_train.view(-1, 1, 28, 28) if images else data.x_train
            batches = [(x_all[i], data.y_train[i]) for i in order[:steps * 64].split(64)]
            run_arm(setup, batches[:3], "+ Monitor", Path(tmp))  # warm-up: first-call costs out of the rounds
            times: dict[str, list[tuple[float, float]]] = {a: [] for a in arms}
            for r in range(args.rounds):
                for arm in arms[r % len(arms):] + arms[:r % len(arms)]:
                    times[arm].append(run_arm(setup, batches, arm, Path(tmp)))
                    print(f"  {setup:<14} round {r + 1}/{args.rounds}  {arm:<22} {times[arm][-1][0]:7.3f} s",
                          file=sys.stderr)
            bare_wall = statistics.median(w for w, _ in times["bare"])
            bare_cpu = statistics.median(c for _, c in times["bare"])
            for arm in arms:
                wall = statistics.median(w for w, _ in times[arm])
                cpu = statistics.median(c for _, c in times[arm])
                rows.append([setup, arm, f"{1000 * wall / steps:.2f}", f"{wall / bare_wall:.2f}x",
                             f"{1000 * cpu / steps:.2f}", f"{cpu / bare_cpu:.2f}x"])
    print(f"breaklab.Monitor overhead: {args.rounds} rounds, {args.threads} thread(s), batch 64, "
          f"{args.mlp_steps} MLP / {args.cnn_steps} CNN steps per round, medians")
    print(table(rows, ["model", "arm", "ms/step", "vs bare", "CPU ms/step", "CPU vs bare"]))
    mlp_ratio = min(float(r[3][:-1]) for r in rows if r[0].startswith("MLP") and r[1] == "+ Monitor")
    worst = max(float(r[3][:-1]) for r in rows if r[0].startswith("MLP") and r[1] == "+ Monitor")
    print(f"goal: Monitor within 1.3x of the bare MLP step: {'met' if worst <= 1.3 else 'not met'} "
          f"({mlp_ratio:.2f}x-{worst:.2f}x wall)")


if __name__ == "__main__":
    main()
