"""The benchmark scripts still run (on a tiny workload; the figures themselves are in
benchmarks/README.md). bench_demo_overhead.py, bench_full_epoch.py and bench_grading.py take
minutes and are not run here."""
from __future__ import annotations

import pytest

import subprocess
import sys
from pathlib import Path

pytestmark = pytest.mark.slow  # these tests train (the training tier)

ROOT = Path(__file__).resolve().parent.parent


def bench(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_bench_epoch_runs_all_arms_side_by_side():
    out = bench("benchmarks/bench_epoch.py", "--images", "1000", "--repeats", "1")
    for arm in ("trainer, training pass", "statistics off", "(a) bare in-memory loop",
                "(b) DataLoader + transforms", "whole train() call"):
        assert arm in out
    assert "goal: trainer within 1.3x of (a)" in out


def test_bench_diagnostics_times_each_group():
    out = bench("benchmarks/bench_diagnostics.py", "--steps", "20")
    for part in ("grad norms", "zero fractions", "update ratio", "activation + output stats",
                 "ALL: diagnostics + JSON line"):
        assert part in out


def test_bench_monitor_parts_takes_each_part_away_in_turn():
    out = bench("benchmarks/bench_monitor_parts.py", "--steps", "8", "--rounds", "1")
    rows = {line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ")}
    for arm in ("bare", "+ Monitor", "- gradient statistics", "- update ratio",
                "- gradient statistics and update ratio", "- activation + output stats",
                "- BatchNorm stats", "- record's Python", "- train accuracy bookkeeping", "- JSON line"):
        assert arm in rows, arm
    assert "the whole Monitor:" in out
