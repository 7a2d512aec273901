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
from breaklab.solutions.exercise_mutations import MEASURED_IN_COMBINATION, MUTATIONS

SPREAD_SEEDS = (1, 2, 3)
MAX_BUGS = 4


def with_seed(text: str, seed: int) -> str:
    if "\nSEED = 0\n" not in text:
        raise ValueError("the template's SEED line moved")
    return text.replace("\nSEED = 0\n", f"\nSEED = {seed}\n", 1)


def jobs_for(variant: Variant, combine: set[str], every_bug_up_to: int = 1,
             done: set[str] = frozenset()) -> dict[str, str]:
    """The clean script at seeds 0-3, every bug alone, every combination of 2-4 bugs of `combine`,
    and every combination of up to `every_bug_up_to` bugs of any kind, that can be combined; less
    the jobs in `done`."""
    from breaklab.exercises.generate import combinable

    clean = apply_mutations(variant, ()).text
    jobs = {f"clean-seed{s}": with_seed(clean, s) for s in (0, *SPREAD_SEEDS)}
    bugs = eligible(variant)
    for k in range(1, MAX_BUGS + 1):
        for combo in itertools.combinations(bugs, k):
            if k > 1 and k > every_bug_up_to and not set(combo) <= combine:
                continue
            if k > 2 and any(MUTATIONS[b].certain for b in combo):
                continue  # shows by construction; measured alone and in every pair
            if combinable(variant, combo):
                jobs[combo_key(combo)] = apply_mutations(variant, combo).text
    return {name: text for name, text in jobs.items() if name not in done}


def calibrate_variant(variant: Variant, workdir: Path, combine: set[str], every_bug_up_to: int,
                      stored: dict | None) -> dict:
    """Run what `stored` (this variant's entry of the calibration, or None) lacks; merge."""
    from breaklab.exercises.runner import run_direct

    start = time.perf_counter()
    stored = stored or {"clean": {}, "runs": {}, "seconds": 0.0}
    done = {f"clean-seed{s}" for s in stored["clean"]} | set(stored["runs"])
    outcomes = run_direct(workdir / variant.name, jobs_for(variant, combine, every_bug_up_to, done), timeout=6 * 3600)
    clean = {**stored["clean"], **{k.removeprefix("clean-seed"): o.to_json()
                                   for k, o in outcomes.items() if k.startswith("clean-seed")}}
    runs = {**stored["runs"], **{k: o.to_json() for k, o in outcomes.items() if not k.startswith("clean-seed")}}
    return {"clean": dict(sorted(clean.items())), "runs": runs,
            "seconds": round(stored["seconds"] + time.perf_counter() - start, 1)}


def main(argv=None) -> None:
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CALIBRATION)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--variants", nargs="*", default=[v.name for v in VARIANTS])
    parser.add_argument("--redo", action="store_true", help="measure again what is already stored")
    parser.add_argument("--every-bug-up-to", type=int, default=1, choices=range(1, MAX_BUGS + 1),
                        help="also measure every combination of up to this many bugs of any kind, not only "
                             "of MEASURED_IN_COMBINATION (2: every pair; 4: hours of CPU)")
    args = parser.parse_args(argv)
    combine = set(MEASURED_IN_COMBINATION)
    data = json.loads(args.out.read_text()) if args.out.is_file() else {}
    data["measured_with"] = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                             "machine": platform.machine(), "command": "python -m breaklab.solutions.exercise_calibrate"}
    data.setdefault("variants", {})
    todo = [Variant.parse(n) for n in args.variants]
    with tempfile.TemporaryDirectory(prefix="breaklab-calibrate-") as tmp:
        def one(variant: Variant) -> tuple[str, dict]:
            stored = None if args.redo else data["variants"].get(variant.name)
            return variant.name, calibrate_variant(variant, Path(tmp), combine, args.every_bug_up_to, stored)

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for name, result in pool.map(one, todo):
                data["variants"][name] = result
                data["variants"] = dict(sorted(data["variants"].items()))
                from breaklab.atomic import atomic_write_text
                atomic_write_text(args.out, json.dumps(data, indent=1, sort_keys=False) + "\n")
                print(f"{name}: {len(result['runs'])} runs, {result['seconds']} s", flush=True)


if __name__ == "__main__":
    main()
