"""Shared helpers of the benchmark scripts: the 60,000-image data set, timing, and a table.

Absolute seconds are noise on a shared machine, so every script runs the things it compares
side by side in one process, interleaves their repeats, and reports medians and ratios.
"""
from __future__ import annotations

import gzip
import os
import re
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python benchmarks/x.py` from the repository root
    sys.path.insert(0, str(ROOT))

SAMPLE_RAW = ROOT / "data" / "sample" / "MNIST" / "raw"
IDX_FILES = {  # name -> number of items in full MNIST
    "train-images-idx3-ubyte": 60_000,
    "train-labels-idx1-ubyte": 60_000,
    "t10k-images-idx3-ubyte": 10_000,
    "t10k-labels-idx1-ubyte": 10_000,
}


def full_mnist_root(data_dir: str | None) -> Path | None:
    """torchvision's root for full MNIST (DIR/MNIST/raw with the four IDX files), when present:
    --data-dir, else $BREAKLAB_MNIST_DIR."""
    for candidate in (data_dir, os.environ.get("BREAKLAB_MNIST_DIR")):
        if candidate and all((Path(candidate) / "MNIST" / "raw" / f).is_file() for f in IDX_FILES):
            return Path(candidate)
    return None


def _tile_idx(gz_path: Path, count: int) -> bytes:
    """An IDX file with the sample's items repeated up to `count` items (same dtype and shape)."""
    with gzip.open(gz_path, "rb") as f:
        raw = f.read()
    magic, n = struct.unpack(">II", raw[:8])
    ndim = magic & 0xFF
    header_len = 4 + 4 * ndim
    item = (len(raw) - header_len) // n
    body = raw[header_len:]
    reps = -(-count // n)
    tiled = (body * reps)[: count * item]
    dims = list(struct.unpack(f">{ndim}I", raw[4:header_len]))
    dims[0] = count
    return struct.pack(">I", magic) + struct.pack(f">{ndim}I", *dims) + tiled


def mnist_root(data_dir: str | None, workdir: Path) -> tuple[Path, str]:
    """(torchvision root, description): full MNIST when present, else the bundled sample tiled
    to 60,000 train / 10,000 test images, written as IDX files under `workdir`."""
    full = full_mnist_root(data_dir)
    if full is not None:
        return full, f"full MNIST from {full}"
    raw = workdir / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, count in IDX_FILES.items():
        (raw / name).write_bytes(_tile_idx(SAMPLE_RAW / f"{name}.gz", count))
    return workdir, (f"the bundled 4,000/1,000 sample tiled to {IDX_FILES['train-images-idx3-ubyte']:,}/"
                     f"{IDX_FILES['t10k-images-idx3-ubyte']:,} (full MNIST not found)")


def temp_workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="breaklab-bench-")


def interleaved(arms: dict[str, Callable[[], float]], repeats: int,
                log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict[str, list[float]]:
    """Run every arm once per round, rounds `repeats` times, rotating the order each round so no
    arm always runs first (or right after the same neighbour). Each arm returns its seconds."""
    names = list(arms)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            t = arms[name]()
            times[name].append(t)
            log(f"  round {r + 1}/{repeats}  {name:<28} {t:8.3f} s")
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_process(cmd: list[str], cwd: Path, env: dict | None = None,
                cpu: list[float] | None = None) -> float:
    """Run a command to its end; return its wall seconds, and append its CPU seconds (user +
    system, of it and every process it waited for) to `cpu`. On a busy shared machine other
    processes stretch wall time far more than CPU time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *map(line, rows)])


def module_at(commit: str, path: str):
    """The Python module in file `path` as it was at `commit`, loaded under a name of its own
    (to time an older version beside the current one in the same process)."""
    import importlib.util

    src = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    name = Path(path).stem + "_at_" + re.sub(r"\W", "_", commit)
    file = Path(tempfile.mkdtemp(prefix="breaklab-bench-")) / f"{name}.py"
    file.write_text(src)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
