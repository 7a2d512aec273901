"""Measure what the generator may produce: `python -m breaklab.solutions.exercise_calibrate`.

For every variant it runs the clean script at seeds 0-3 (seed 0 is the one every exercise uses;
1-3 give the seed-to-seed spread the check's tolerance comes from), every bug alone, and every
combination of 2-4 bugs the variant admits, all at seed 0, and records what each run showed:
the doctor's verdict and findings and the test accuracy. breaklab/exercises/calibration.json
holds the result; the generator reads it to refuse combinations that cancel out and to grade
bugs easy (accuracy visibly off) or hard (only the measurements show them).

A combination of three or four bugs that holds a bug whose symptom shows by construction
(Mutation.certain: shuffled labels leave every model at chance) is not run; that bug is measured
alone and in every pair. It takes about 15 minutes of CPU (320 trainings); --jobs 2 runs two
processes side by side, and a variant already in the output file is kept unless --redo.
"""
from __future__ import annotations

import itertools
import json
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from breaklab.exercises.generate import CALIBRATION, apply_mutations, combo_key, eligible  # noqa: F401
from breaklab.exercises.variants import VARIANTS, Variant
from breaklab.solutions.exercise_mutations import MUTATIONS

SPREAD_SEEDS = (1, 2, 3)
MAX_BUGS = 4


def with_seed(text: str, seed: int) -> str:
    if "\nSEED = 0\n" not in text:
        raise ValueError("the template's SEED line moved")
    return text.replace("\nSEED = 0\n", f"\nSEED = {seed}\n", 1)


def jobs_for(variant: Variant) -> dict[str, str]:
    clean = apply_mutations(variant, ()).text
    jobs = {f"clean-seed{s}": with_seed(clean, s) for s in (0, *SPREAD_SEEDS)}
    bugs = eligible(variant)
    for k in range(1, MAX_BUGS + 1):
        for combo in itertools.combinations(bugs, k):
            if k > 2 and any(MUTATIONS[b].certain for b in combo):
                continue  # shows by construction; measured alone and in every pair
            jobs[combo_key(combo)] = apply_mutations(variant, combo).text
    return jobs


def calibrate_variant(variant: Variant, workdir: Path) -> dict:
    from breaklab.exercises.runner import run_direct

    start = time.perf_counter()
    outcomes = run_direct(workdir / variant.name, jobs_for(variant), timeout=6 * 3600)
    clean = {s: outcomes[f"clean-seed{s}"].to_json() for s in (0, *SPREAD_SEEDS)}
    runs = {k: o.to_json() for k, o in outcomes.items() if not k.startswith("clean-seed")}
    return {"clean": clean, "runs": runs, "seconds": round(time.perf_counter() - start, 1)}


def main(argv=None) -> None:
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CALIBRATION)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--variants", nargs="*", default=[v.name for v in VARIANTS])
    parser.add_argument("--redo", action="store_true")
    args = parser.parse_args(argv)
    data = json.loads(args.out.read_text()) if args.out.is_file() else {}
    data["measured_with"] = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                             "machine": platform.machine(), "command": "python -m breaklab.solutions.exercise_calibrate"}
    data.setdefault("variants", {})
    todo = [Variant.parse(n) for n in args.variants if args.redo or n not in data["variants"]]
    with tempfile.TemporaryDirectory(prefix="breaklab-calibrate-") as tmp:
        def one(variant: Variant) -> tuple[str, dict]:
            return variant.name, calibrate_variant(variant, Path(tmp))

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for name, result in pool.map(one, todo):
                data["variants"][name] = result
                data["variants"] = dict(sorted(data["variants"].items()))
                from breaklab.atomic import atomic_write_text
                atomic_write_text(args.out, json.dumps(data, indent=1, sort_keys=False) + "\n")
                print(f"{name}: {len(result['runs'])} runs, {result['seconds']} s", flush=True)


if __name__ == "__main__":
    main()
