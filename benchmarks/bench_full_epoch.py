"""One full-size epoch (60,000 images) as whole processes: `./demo_run.sh` against the
pytorch/examples way of training MNIST (benchmarks/examples_mnist.py: a DataLoader over
torchvision's MNIST with per-sample transforms, the same MLP).

Whole processes, because that is what a person waits for: the imports, reading the data, the
epoch, the test pass and whatever else each one does (demo_run.sh: every per-batch diagnostic,
checkpoint, summary, report.png and the tarball). The examples-style process runs twice: with
torch's own thread count, as pytorch/examples does, and with 1 thread like the trainer. The first
is the comparison a person meets, but on a machine whose cores other processes are using, its
threads wait on each other and it can take several times as long; the second compares the same
work. `import torch, torchvision` is timed beside them as the floor of all. Each command runs in a fresh folder, rounds interleave, medians are
reported, as wall time and as CPU time (user + system of the process and its children: on a busy
shared machine other processes stretch wall time far more than CPU time). One untimed run of
each comes first, so files are in the page cache and caches are filled, as on any run but the
first.

Full MNIST is used when --data-dir (or $BREAKLAB_MNIST_DIR) holds it; otherwise the bundled sample
is tiled to 60,000/10,000 images and written as IDX files, as in bench_epoch.py.

    python benchmarks/bench_full_epoch.py --repeats 3
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from _common import ROOT, interleaved, median, mnist_root, run_process, table, temp_workdir

PY = sys.executable


def fresh(parent: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix="run-", dir=parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data-dir", help="torchvision root of full MNIST (DIR/MNIST/raw)")
    ap.add_argument("--images", type=int, default=60_000,
                    help="tile the sample to this many training images (ignored with full MNIST)")
    args = ap.parse_args()

    import _common
    _common.IDX_FILES.update({"train-images-idx3-ubyte": args.images, "train-labels-idx1-ubyte": args.images})
    env = {**os.environ, "PYTHON": PY, "PYTHONPATH": str(ROOT)}
    with temp_workdir() as tmp:
        tmp = Path(tmp)
        root, what = mnist_root(args.data_dir, tmp / "data")
        demo = ["bash", str(ROOT / "demo_run.sh"), "7", "none", "--data", "mnist", "--data-dir", str(root),
                "--epochs", "1"]
        examples = [PY, str(ROOT / "benchmarks" / "examples_mnist.py"), "--data-dir", str(root), "--epochs", "1"]
        for cmd in (demo, examples):  # untimed: page cache and caches filled
            run_process(cmd, fresh(tmp), env)
        cpu: dict[str, list[float]] = {}
        arms = {
            f"./demo_run.sh (1 epoch, {args.images:,} images)": demo,
            "examples-style process, 1 thread": examples + ["--threads", "1"],
            "examples-style process, torch's threads": examples,
            "import torch, torchvision": [PY, "-c", "import torch, torchvision"],
        }
        times = interleaved({name: (lambda name=name, cmd=cmd: run_process(cmd, fresh(tmp), env, cpu.setdefault(name, [])))
                             for name, cmd in arms.items()}, args.repeats)

    wall = {k: median(v) for k, v in times.items()}
    cpu_s = {k: median(v) for k, v in cpu.items()}
    demo_name, ex1, ex_default = list(arms)[:3]
    rows = [[k, f"{wall[k]:.2f}", f"{wall[ex1] / wall[k]:.2f}x", f"{wall[ex_default] / wall[k]:.2f}x",
             f"{cpu_s[k]:.2f}", f"{cpu_s[ex1] / cpu_s[k]:.2f}x", f"{cpu_s[ex_default] / cpu_s[k]:.2f}x"]
            for k in arms]
    import torch

    print(f"data: {what}; median of {args.repeats} interleaved rounds, each in a fresh folder; torch's "
          f"own thread count here: {torch.get_num_threads()}")
    print(table(rows, ["process", "wall s", "examples (1 thread) / this", "examples (torch's) / this",
                       "CPU s", "examples (1 thread) / this", "examples (torch's) / this"]))
    for name in (ex1, ex_default):
        ratio, cpu_ratio = wall[name] / wall[demo_name], cpu_s[name] / cpu_s[demo_name]
        print(f"goal: demo_run.sh at least 2.5x faster than the {name}: "
              f"{'met' if ratio >= 2.5 else 'NOT met'} ({ratio:.2f}x wall, {cpu_ratio:.2f}x CPU time)")


if __name__ == "__main__":
    main()
