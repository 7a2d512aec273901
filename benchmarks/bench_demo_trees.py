"""`./demo_run.sh 42 huge_lr` of several source trees against `import torch, torchvision`, all in the
same interleaved rounds (CPU seconds of each process and its children).

bench_demo_overhead.py measures one tree; comparing two of its runs compares two stretches of a
shared machine's load as well, which moves the demo's ratio by more than a change of a few tenths
of a second is worth. Here every round runs each tree's demo next to the import, in a rotating
order, each in a fresh folder. A tree is a folder with the project's files (a `git archive` of
a commit, or a worktree); its demo_run.sh runs with PYTHONPATH set to it.

    git archive 78aa8ec | tar -x -C /tmp/before
    python benchmarks/bench_demo_trees.py --repeats 9 before=/tmp/before after=.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from _common import interleaved, run_process, table, temp_workdir

PY = sys.executable
FLOOR = "import torch, torchvision"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", nargs="+", metavar="LABEL=FOLDER", help="a name and a source tree")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    trees = {}
    for spec in args.trees:
        label, _, folder = spec.partition("=")
        if not folder or not (Path(folder) / "demo_run.sh").is_file():
            ap.error(f"{spec}: give LABEL=FOLDER, FOLDER holding demo_run.sh")
        trees[label] = Path(folder).resolve()
    cpu: dict[str, list[float]] = {FLOOR: [], **{label: [] for label in trees}}
    with temp_workdir() as tmp:
        def fresh() -> Path:
            return Path(tempfile.mkdtemp(dir=tmp))

        arms = {FLOOR: lambda: run_process([PY, "-c", "import torch, torchvision"], fresh(), dict(os.environ), cpu[FLOOR])}
        for label, root in trees.items():
            env = {**os.environ, "PYTHON": PY, "PYTHONPATH": str(root)}
            arms[label] = (lambda root=root, env=env, label=label:
                           run_process(["bash", str(root / "demo_run.sh"), "42", "huge_lr"], fresh(), env, cpu[label]))
        wall = interleaved(arms, args.repeats)
    floor = statistics.median(cpu[FLOOR])
    rows = [[name, f"{statistics.median(cpu[name]):.2f}", f"{statistics.median(cpu[name]) / floor:.2f}x",
             f"{min(cpu[name]):.2f}", f"{statistics.median(wall[name]):.2f}"] for name in arms]
    print(f"{args.repeats} interleaved rounds; CPU seconds (median, min) and wall seconds (median)")
    print(table(rows, ["command", "CPU s", "vs import", "min CPU s", "wall s"]))


if __name__ == "__main__":
    main()
