"""Measure how far the same run's metrics move between CPU capabilities (the grader's cross-CPU
tolerance rests on this).

    python -m solutions.measure_cpu --seeds 0 1 --epochs 1 3 --out solutions/cpu_capabilities.json

(about 1.5 hours on 2 busy cores: 108 trainings.)

A student's laptop and the grading machine can run different CPU kernels (AVX-512, AVX2, or
none): the same code and seed then give other bits. torch picks its kernels from
ATEN_CPU_CAPABILITY, so every capability this CPU supports can be measured on one machine. For
each seed and epoch count this trains the clean run, the clean run with AMP (what the reference
fix of amp_no_scaling trains) and every break, once per capability, and records per metric the
largest relative difference between capabilities, step by step, plus the final test accuracy and
loss. Seed 42 is left out on purpose: the tests grade seed-42 submissions against the tolerance
taken from these seeds.

It ends by applying the grader's rule for runs from another machine (grader/rubric.py
`metrics_within_tolerance`) to every honest case the data holds: a run made under one capability
(the student's), re-run under a second (the grader's) and a third (the grader's second re-run).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from itertools import combinations, permutations
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"clean": ["--break", "none"], "clean_amp": ["--break", "none", "--amp"],
           **{name: ["--break", name] for name in ("amp_no_scaling", "double_softmax", "eval_mode", "huge_lr",
                                                   "label_permute", "loss_sum", "missing_zero_grad")}}


def supported_capabilities() -> list[str]:
    """default always; avx2 and avx512 when the CPU has them (what torch itself would pick)."""
    from breaklab.grader.runs import cpu_capabilities

    return cpu_capabilities()


def relative(a: float | None, b: float | None) -> float:
    if a is None or b is None:
        return 0.0 if a is b else math.inf
    if not (math.isfinite(a) and math.isfinite(b)):
        return 0.0 if a == b else math.inf
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def flat(record: dict) -> dict[str, float | None]:
    out = {}
    for k, v in record.items():
        if isinstance(v, dict):
            out.update({f"{k}.{sub}": x for sub, x in v.items() if x is None or isinstance(x, (int, float))})
        elif v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)):
            out[k] = v
    return out


def run(folder: Path, cap: str, seed: int, epochs: int, args: list[str]) -> list[dict]:
    env = {**os.environ, "ATEN_CPU_CAPABILITY": cap, "PYTHONHASHSEED": "0"}
    subprocess.run([sys.executable, str(ROOT / "trainer.py"), "--seed", str(seed), "--epochs", str(epochs),
                    "--out", str(folder), "--quiet", *args], check=True, env=env, capture_output=True)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["env"]["cpu_capability"].lower() == cap.lower(), (cap, meta["env"]["cpu_capability"])
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    caps = supported_capabilities()
    jobs = [(c, s, e, cap) for c in CONFIGS for s in args.seeds for e in args.epochs for cap in caps]
    with tempfile.TemporaryDirectory(prefix="breaklab-measure-cpu-") as tmp:
        def one(job):
            c, s, e, cap = job
            return job, run(Path(tmp) / f"{c}-{s}-{e}-{cap}", cap, s, e, CONFIGS[c])
        with ThreadPoolExecutor(args.jobs) as pool:
            results = dict(pool.map(one, jobs))

    rows = []
    for c in CONFIGS:
        for s in args.seeds:
            for e in args.epochs:
                for cap_a, cap_b in combinations(caps, 2):
                    ra, rb = results[(c, s, e, cap_a)], results[(c, s, e, cap_b)]
                    sa = [flat(r) for r in ra if r.get("type") == "step"]
                    sb = [flat(r) for r in rb if r.get("type") == "step"]
                    ea = [r for r in ra if r.get("type") == "epoch"][-1]
                    eb = [r for r in rb if r.get("type") == "epoch"][-1]
                    by_field: dict[str, float] = {}
                    loss_by_step = []
                    for x, y in zip(sa, sb):
                        for k in x:
                            by_field[k] = max(by_field.get(k, 0.0), relative(x.get(k), y.get(k)))
                        loss_by_step.append(relative(x.get("loss"), y.get("loss")))
                    rows.append({"config": c, "seed": s, "epochs": e, "pair": [cap_a, cap_b],
                                 "identical": ra == rb,
                                 "loss_rel_first10": max(loss_by_step[:10]),
                                 "loss_rel_all": max(loss_by_step),
                                 "loss_rel_by_step": loss_by_step,
                                 "test_acc_abs": abs(ea["test_acc"] - eb["test_acc"]),
                                 "test_loss_rel": relative(ea["test_loss"], eb["test_loss"]),
                                 "field_rel_max": by_field})
    report = {"capabilities": caps, "seeds": args.seeds, "epochs": args.epochs, "rows": [compact(r) for r in rows]}
    for r in rows:
        worst = sorted(r["field_rel_max"].items(), key=lambda kv: -kv[1])[:3]
        print(f"{r['config']:18s} seed {r['seed']} ep {r['epochs']} {r['pair'][0]:>7s}/{r['pair'][1]:<7s} "
              f"identical {str(r['identical']):5s} loss<=10 {r['loss_rel_first10']:.2e} all {r['loss_rel_all']:.2e} "
              f"acc {r['test_acc_abs']:.3f} test_loss {r['test_loss_rel']:.2e} worst "
              + ", ".join(f"{k} {v:.2e}" for k, v in worst))
    print(summary(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


def compact(row: dict) -> dict:
    """A row as recorded: the first 10 steps' loss differences, the 3 fields that moved most."""
    out = {k: v for k, v in row.items() if k not in ("loss_rel_by_step", "field_rel_max")}
    out["loss_rel_first_steps"] = row["loss_rel_by_step"][:10]
    out["field_rel_max"] = dict(sorted(row["field_rel_max"].items(), key=lambda kv: -kv[1])[:3])
    return out


def summary(report: dict) -> str:
    """The numbers the grader's tolerance rests on, and its rule applied to every honest case."""
    from breaklab.grader.rubric import ENV_ACC_TOL, ENV_LOSS_RTOL, ENV_LOSS_STEPS

    rows, caps = report["rows"], report["capabilities"]
    pair = {}
    for r in rows:
        a, b = r["pair"]
        key = (r["config"], r["seed"], r["epochs"])
        pair[key + (a, b)] = pair[key + (b, a)] = r
    first = max(max(r["loss_rel_first_steps"][:ENV_LOSS_STEPS]) for r in rows)
    acc = {}
    for r in rows:
        acc[r["config"]] = max(acc.get(r["config"], 0.0), r["test_acc_abs"])
    keys = sorted({(r["config"], r["seed"], r["epochs"]) for r in rows})
    total = verified = 0
    for key in keys:
        for sub, native, alt in permutations(caps, 3):
            s_n, n_a = pair[key + (sub, native)], pair[key + (native, alt)]
            early = max(s_n["loss_rel_first_steps"][:ENV_LOSS_STEPS]) <= ENV_LOSS_RTOL
            stable = n_a["test_acc_abs"] == 0
            total += 1
            verified += early and (not stable or s_n["test_acc_abs"] <= ENV_ACC_TOL)
    return (f"first {ENV_LOSS_STEPS} losses: at most {first:.2e} apart (relative); final test accuracy apart by at "
            f"most: " + ", ".join(f"{c} {v:.3f}" for c, v in acc.items()) +
            f"\nthe grader's rule verifies {verified} of {total} honest (student, grader, second re-run) cases")


if __name__ == "__main__":
    main()
