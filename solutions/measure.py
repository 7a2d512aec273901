"""Measure what the rubrics' recovery bars and the grader's tolerances rest on.

    python -m breaklab.solutions.measure --seeds 0 1 42 --epochs 1 3 --out measurements.json
    python -m breaklab.solutions.measure --only tiny_lr zero_init --seeds 42 --epochs 1   # some breaks only

For each seed and epoch count: the clean run, each break's broken run and its reference-fixed run
(fix.patch applied in a private checkout), and the clean run with 2 threads instead of 1 (the
nearest thing to "another machine" available here: same code, other floating-point reduction
order). Prints the test-accuracy gaps, which symptom checks fire, and the metric differences
between the 1- and 2-thread runs. solutions/MEASUREMENTS.md records one such output.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from breaklab.metric_log import read_metrics
from breaklab.rules import epoch_records
from breaklab.rules import step_records
from breaklab.grader import gitrepo
from breaklab.grader.recovery import SYMPTOM_CHECKS, fired_checks
from breaklab.grader.runs import RunSpec, train
from breaklab.solutions import fix_patch, names

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 42])
    ap.add_argument("--epochs", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", nargs="+", metavar="BREAK", help="measure these breaks only")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    selected = args.only or names()
    unknown = sorted(set(selected) - set(names()))
    if unknown:
        ap.error(f"no solution for {', '.join(unknown)}; breaks with one: {', '.join(names())}")

    base = gitrepo.resolve_commit(ROOT, "HEAD")
    with tempfile.TemporaryDirectory(prefix="breaklab-measure-") as tmp:
        tmp = Path(tmp)
        trees = {"base": gitrepo.checkout(ROOT, base, tmp / "base")}
        for name in selected:
            trees[name] = gitrepo.checkout(ROOT, base, tmp / f"fix-{name}")
            gitrepo.apply_patch(trees[name], fix_patch(name))
        jobs = []
        for seed in args.seeds:
            for ep in args.epochs:
                jobs.append(("clean", seed, ep, "base", RunSpec("none", seed, ep, 1)))
                jobs.append(("clean_2threads", seed, ep, "base", RunSpec("none", seed, ep, 2)))
                for name in selected:
                    jobs.append((f"broken:{name}", seed, ep, "base", RunSpec(name, seed, ep, 1)))
                    jobs.append((f"fixed:{name}", seed, ep, name, RunSpec(name, seed, ep, 1)))

        def run(job):
            label, seed, epochs, tree, spec = job
            folder = tmp / "runs" / f"{label.replace(':', '-')}-{seed}-{epochs}"
            res = train(trees[tree], spec, folder, "run")
            if not res.ok:
                raise RuntimeError(f"{label} seed {seed}: {res.sandbox.why()}")
            return job, read_metrics(res.folder / "metrics.jsonl"), res.checkpoint_sha()

        with ThreadPoolExecutor(args.jobs) as pool:
            done = list(pool.map(run, jobs))
    runs = {(j[0], j[1], j[2]): (rec, sha) for j, rec, sha in done}
    report = summarize(runs, args.seeds, args.epochs, selected)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def _acc(records) -> float:
    return epoch_records(records)[-1]["test_acc"]


def summarize(runs, seeds, epochs, selected=None) -> dict:
    out: dict = {"per_break": {}, "environment_proxy": {}}
    for name in selected or names():
        rows = []
        for seed in seeds:
            for epochs in epochs:
                clean, clean_sha = runs[("clean", seed, epochs)]
                broken, _ = runs[(f"broken:{name}", seed, epochs)]
                fixed, fixed_sha = runs[(f"fixed:{name}", seed, epochs)]
                rows.append({
                    "seed": seed, "epochs": epochs,
                    "clean_acc": round(_acc(clean), 4),
                    "broken_acc": round(_acc(broken), 4),
                    "fixed_acc": round(_acc(fixed), 4),
                    "fixed_minus_clean": round(_acc(fixed) - _acc(clean), 4),
                    "fixed_checkpoint_equals_clean": fixed_sha == clean_sha,
                    "checks_broken": fired_checks(broken, SYMPTOM_CHECKS),
                    "checks_fixed": fired_checks(fixed, SYMPTOM_CHECKS),
                })
        out["per_break"][name] = rows
    for seed in seeds:
        for epochs in epochs:
            one, sha1 = runs[("clean", seed, epochs)]
            two, sha2 = runs[("clean_2threads", seed, epochs)]
            s1, s2 = step_records(one), step_records(two)
            rel = [abs(a["loss"] - b["loss"]) / max(abs(a["loss"]), 1e-12) for a, b in zip(s1, s2)]
            out["environment_proxy"][f"seed{seed}_epochs{epochs}"] = {
                "same_checkpoint": sha1 == sha2,
                "max_rel_loss_diff_first_10_steps": max(rel[:10]),
                "max_rel_loss_diff_all_steps": max(rel),
                "test_acc_diff": abs(_acc(one) - _acc(two)),
            }
    gaps = [abs(r["fixed_minus_clean"]) for rows in out["per_break"].values() for r in rows]
    out["max_abs_fixed_minus_clean"] = max(gaps)
    out["max_env_test_acc_diff"] = max(v["test_acc_diff"] for v in out["environment_proxy"].values())
    return out


if __name__ == "__main__":
    main()
