"""Measure every catalogue entry on the default run, and write README.md's break table from it.

    python -m breaklab.solutions.catalogue --seeds 42 0 1 --out solutions/catalogue.json
    python -m breaklab.solutions.catalogue --table solutions/catalogue.json      # the table from saved figures

Each entry trains in this process on the default run (3 epochs, bundled sample, batch 64, lr 0.1,
1 thread; figures off) beside its reference: the clean run of the same seed with the same
precision and clipping (an AMP entry is compared with the clean AMP run). FIGURES says which
measurements show each entry's symptom and how the table words them; a figure over several
seeds is printed as its range. The JSON keeps every seed's value.
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path
from typing import Any, Callable

Records = list[dict[str, Any]]
LN10 = math.log(10)


# ---------------------------------------------------------------------------------------------
# Measurements of one run against its reference
# ---------------------------------------------------------------------------------------------

def _steps(records: Records) -> Records:
    return [r for r in records if r.get("type") == "step"]


def _epochs(records: Records) -> Records:
    return [r for r in records if r.get("type") == "epoch"]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def measure(run: Records, ref: Records) -> dict[str, Any]:
    """Every figure the table can quote, for a run (`run`) and its clean reference (`ref`)."""
    st, ep, rst, rep = _steps(run), _epochs(run), _steps(ref), _epochs(ref)
    losses = [r["loss"] for r in st if r["loss"] is not None]
    fc1 = [r["grad_norm_by_layer"]["fc1.weight"] for r in st]
    norms = [r["grad_norm"] for r in st[:20]]
    first_diff = next((r["step"] for r, c in zip(st, rst) if {**r, "loss_graphs_alive": 0} != {**c, "loss_graphs_alive": 0}), None)
    early = [r["loss"] for r in st[:30] if r["loss"] is not None]
    bn = [r["bn_running_var_mean"] for r in st]
    frozen_from = next((i for i in range(1, len(bn)) if all(v == bn[i] for v in bn[i:])), None)
    out = {
        "acc": ep[-1]["test_acc"], "ref_acc": rep[-1]["test_acc"],
        "acc_epoch0": ep[0]["test_acc"], "ref_acc_epoch0": rep[0]["test_acc"],
        "train_acc": ep[-1]["train_acc"], "ref_train_acc": rep[-1]["train_acc"],
        "test_loss": ep[-1]["test_loss"], "train_loss": ep[-1]["train_loss"],
        "ref_test_loss": rep[-1]["test_loss"], "ref_train_loss": rep[-1]["train_loss"],
        "steps_per_epoch": ep[0]["step"],
        "loss0": st[0]["loss"], "ref_loss0": rst[0]["loss"],
        "loss_end": _mean([r["loss"] for r in st[-20:] if r["loss"] is not None]),
        "loss_min": min(losses) if losses else None, "loss_max": max(losses) if losses else None,
        "loss_peak30": max(early) if early else None,
        "rise_step": next((r["step"] for r in st[:30] if r["loss"] is None or r["loss"] > 1.5 * st[0]["loss"]), None),
        "first_nonfinite": next((r["step"] for r in st if not r["loss_finite"]), None),
        "first_skipped": next((r["step"] for r in st if r["step_skipped"]), None),
        "skipped": sum(r["step_skipped"] for r in st), "steps": len(st),
        "scale_end": st[-1]["amp_scale"],
        "gn0": st[0]["grad_norm"], "gn0_ratio": (st[0]["grad_norm"] / rst[0]["grad_norm"]
                                                  if st[0]["grad_norm"] is not None else None),
        "gn0_times_scale": st[0]["grad_norm"] * st[0]["amp_scale"] if st[0]["grad_norm"] is not None else None,
        "gn_rises20": sum(b > a for a, b in zip(norms, norms[1:])) if None not in norms else None,
        "gn_growth20": norms[-1] / norms[0] if None not in norms and norms[0] else None,
        "fc1_grad_max": max(fc1) if None not in fc1 else None, "fc1_grad_end": fc1[-1],
        "fc1_grad_zero_steps": sum(g == 0.0 for g in fc1),
        "other_grad_end": math.sqrt(sum(v ** 2 for k, v in st[-1]["grad_norm_by_layer"].items()
                                        if k != "fc1.weight" and v is not None)),
        "dead_end": st[-1]["dead_unit_frac"], "ref_dead_end": rst[-1]["dead_unit_frac"],
        "act_dead_end": st[-1]["act_first_dead_frac"],
        "scattered": _mean([r["zero_grad_frac_by_layer"]["fc1.weight"] - r["dead_unit_frac"] for r in st[-10:]]),
        "ref_scattered": _mean([r["zero_grad_frac_by_layer"]["fc1.weight"] - r["dead_unit_frac"] for r in rst[-10:]]),
        "lr_first": st[0]["lr"], "lr_max": max(r["lr"] for r in st), "lr_end": st[-1]["lr"],
        "ref_lr_max": max(r["lr"] for r in rst),
        "ur0": st[0]["update_ratio"], "ref_ur0": rst[0]["update_ratio"],
        "ur_mean": _mean([r["update_ratio"] for r in st if r["update_ratio"] is not None]),
        "ref_ur_mean": _mean([r["update_ratio"] for r in rst if r["update_ratio"] is not None]),
        "first_diff_step": first_diff,
        "bn_var_end": st[-1]["bn_running_var_mean"], "bn_mean_end": st[-1]["bn_running_mean_abs"],
        "bn_frozen_from": frozen_from,
        "logit_max": max((r["logit_max"] for r in st if r["logit_max"] is not None), default=None),
        "logit_min": min((r["logit_min"] for r in st if r["logit_min"] is not None), default=None),
        "rowsum_dev": max(abs(r["logit_rowsum_mean"] - 1) for r in st if r["logit_rowsum_mean"] is not None)
        if any(r["logit_rowsum_mean"] is not None for r in st) else None,
        "graphs_max": max(r.get("loss_graphs_alive", 0) for r in st),
        "test_bytes": ep[-1].get("test_autograd_bytes"),
    }
    if len(st) > 63 and st[62]["update_ratio"] and st[63]["update_ratio"] is not None:
        out["restart_ur_ratio"] = st[63]["update_ratio"] / st[62]["update_ratio"]
        out["ref_restart_ur_ratio"] = rst[63]["update_ratio"] / rst[62]["update_ratio"]
        out["restart_lr_logged"] = st[63]["lr"]
    return out


# ---------------------------------------------------------------------------------------------
# What the table says of each entry: (measured symptom, with {figures}; the metric field)
# ---------------------------------------------------------------------------------------------

FIGURES: dict[str, tuple[str, str]] = {
    "label_permute": ("loss over the last 20 steps {loss_end:.2f} (ln 10 = 2.30); test accuracy at chance ({acc:.3f})",
                      "`test_acc`, `loss`"),
    "huge_lr": ("loss passes 1.5x its start by step {rise_step:d} and peaks at {loss_peak30:.0f} in 30 steps; "
                "{dead_end:.0%} of ReLUs dead; accuracy {acc:.3f}. BatchNorm keeps it finite: no NaN",
                "`loss`, `dead_unit_frac`"),
    "missing_zero_grad": ("gradient norm rises at {gn_rises20:d} of the first 19 steps ({gn_growth20:.0f}x), then the "
                          "loss explodes to {loss_max:.0e}; accuracy {acc:.2f}", "`grad_norm`"),
    "loss_sum": ("initial loss {loss0:.1f} = 64 x 2.30; gradients {gn0_ratio:.1f}x the clean run's; accuracy {acc:.2f}",
                 "`loss`, `grad_norm`"),
    "amp_no_scaling": ("no NaN, accuracy {acc:.3f} (scaled: {ref_acc:.3f}); {scattered:.1%} of first-layer gradient "
                       "entries underflow to exactly 0 (with the scaler: {ref_scattered:.2%})", "`zero_grad_frac_by_layer`"),
    "double_softmax": ("outputs fed to the loss sum to 1; loss floors near {loss_end:.2f} while accuracy is {acc:.3f}; "
                       "gradients {gn0_ratio:.2f}x the clean run's", "`logit_rowsum_mean`, `loss`"),
    "eval_mode": ("accuracy {acc:.3f}, but BatchNorm's running variance stays exactly {bn_var_end:.0f} and "
                  "{dead_end:.0%} of hidden units die (clean: {ref_dead_end:.0%})", "`bn_running_var_mean`, `dead_unit_frac`"),
    # data
    "no_shuffle": ("every batch holds one class (the sample is sorted by digit): accuracy on the training batches "
                   "{train_acc:.4f}, below chance; batch loss as low as {loss_min:.0e} within a class; "
                   "test accuracy {acc:.3f}", "`train_acc`, `loss`"),
    "same_order_every_epoch": ("no harm: test accuracy {acc:.3f} (clean {ref_acc:.3f})", "`test_acc`"),
    "raw_test_inputs": ("test loss {test_loss:.2f} against a training loss of {train_loss:.2f} (clean: {ref_test_loss:.2f} "
                        "and {ref_train_loss:.2f}); test accuracy {acc:.3f} while training accuracy is {train_acc:.3f}",
                        "`test_loss`, `test_acc`"),
    "test_leak": ("test accuracy {acc:.3f}, above the clean run's {ref_acc:.3f} and above the training accuracy "
                  "{train_acc:.3f}; test loss {test_loss:.3f} below training loss {train_loss:.3f}; "
                  "{steps_per_epoch:d} steps per epoch instead of 63", "`test_acc`, `train_acc`"),
    "nan_inputs": ("loss non-finite from step {first_nonfinite:d} on (the first batch holding a bad image); every "
                   "weight NaN after it; test accuracy {acc:.3f}", "`loss_finite`"),
    "label_shift": ("training accuracy {train_acc:.3f} (on the shifted labels), test accuracy {acc:.3f}: below chance; "
                    "test loss {test_loss:.0f}", "`test_acc`, `train_acc`"),
    "one_hot_targets": ("no harm: the same loss to {loss_rel_dev:.0e} (relative), test accuracy {acc:.3f} (clean {ref_acc:.3f})",
                        "`loss`"),
    # objective
    "nll_on_logits": ("initial loss {loss0:.3f} (not ln 10 = 2.30); the loss falls without bound to {loss_min:.0e}, "
                      "logits reach {logit_max:.0e}; test accuracy {acc:.3f}", "`loss`, `logit_max`"),
    "mse_onehot": ("initial loss {loss0:.3f} (not ln 10 = 2.30); the outputs never pass {logit_max:.1f}; test "
                   "accuracy {acc:.3f} (clean {ref_acc:.3f})", "`loss`, `test_acc`"),
    "log_of_softmax": ("no harm in float32: the same loss to {loss_rel_dev:.0e} (relative), test accuracy {acc:.3f} "
                       "(clean {ref_acc:.3f})", "`loss`"),
    "log_softmax_before_ce": ("no harm: the same loss to {loss_rel_dev:.0e} (relative), test accuracy {acc:.3f}; the "
                              "logged outputs are log-probabilities (max {logit_max:.0f})", "`logit_max`"),
    # shapes
    "acc_broadcast": ("test accuracy exactly {acc:.3f} at every epoch while the test loss falls to {test_loss:.2f} "
                      "(clean {ref_test_loss:.2f}); training accuracy {train_acc:.1f}, above 1", "`test_acc`, `train_acc`"),
    "softmax_over_batch": ("initial loss {loss0:.2f} = ln 64 (not ln 10 = 2.30); training loss stays near "
                           "{loss_end:.1f}; test accuracy {acc:.3f} (clean {ref_acc:.3f})", "`loss`"),
    "loss_all_pairs": ("loss stays at {loss_end:.2f} = ln 10 and test accuracy at chance ({acc:.3f}); the first "
                       "gradient is {gn0_ratio:.2f}x the clean run's", "`loss`, `test_acc`"),
    # numerics
    "clip_before_unscale": ("gradient norm {gn0:.2e} at every step = clip norm 1.0 / loss scale {scale_end:.0f}; "
                            "loss stays at {loss_end:.2f}; test accuracy {acc:.3f}", "`grad_norm`, `amp_scale`"),
    "double_step_with_scaler": ("no harm here: steps {ur_ratio:.1f}x larger on average, test accuracy {acc:.3f} (AMP clean "
                                "{ref_acc:.3f}); no step is skipped, so no inf gradient is applied", "`update_ratio`"),
    "fp16_overflow": ("loss non-finite from step {first_nonfinite:d} (the largest logit passes 11.1: exp overflows "
                      "float16); the GradScaler skips {skipped:d} of {steps:d} steps and its scale falls to "
                      "{scale_end:.0f}; test accuracy {acc:.3f}", "`loss_finite`, `step_skipped`, `amp_scale`"),
    "log_of_softmax_amp": ("loss finite, but the GradScaler skips {skipped:d} of {steps:d} steps from step "
                           "{first_skipped:d} (NaN gradients) and its scale falls to {scale_end:.0f}; test accuracy "
                           "{acc:.3f} (AMP clean {ref_acc:.3f})", "`step_skipped`, `amp_scale`"),
    # optimization
    "tiny_lr": ("step 0 moves the weights by {ur0:.0e} of their norm (clean {ref_ur0:.0e}); loss still "
                "{loss_end:.2f} at the end; test accuracy {acc:.3f}", "`update_ratio`, `lr`"),
    "scheduler_not_stepped": ("logged learning rate {lr_max:g} at every step (the warmup's first value; clean peaks "
                              "at {ref_lr_max:.2f}); test accuracy {acc:.3f} (clean {ref_acc:.3f})", "`lr`"),
    "no_warmup": ("no harm at lr 0.1: first step {ur0_ratio:.0f}x larger, test accuracy {acc:.3f} (clean {ref_acc:.3f})",
                  "`lr`, `update_ratio`"),
    "accumulation_not_divided": ("no accuracy harm at lr 0.1: initial loss {loss0:.1f} = 4 x 2.30, gradients "
                                 "{gn0_ratio:.1f}x, {dead_end:.0%} of hidden units die; test accuracy {acc:.3f} "
                                 "(clean {ref_acc:.3f})", "`loss`, `grad_norm`"),
    "zero_init": ("every hidden unit is 0 for every input from step 0 (act_first_dead_frac {act_dead_end:.0f}); "
                  "loss stays {loss_end:.2f}; test accuracy {acc:.3f}", "`act_first_dead_frac`, `dead_unit_frac`"),
    "frozen_layer": ("fc1.weight's gradient is exactly 0 at all {fc1_grad_zero_steps:d} steps while no unit is "
                     "inactive (act_first_dead_frac {act_dead_end:.0f}); test accuracy {acc:.3f} (clean {ref_acc:.3f})",
                     "`grad_norm_by_layer`"),
    "layer_not_in_optimizer": ("fc1.weight's gradient is never cleared (zero_grad clears only the optimizer's "
                               "parameters): its norm grows to {fc1_grad_end:.0f} while the other layers' is "
                               "{other_grad_end:.2f}; test accuracy {acc:.3f} (clean {ref_acc:.3f})",
                               "`grad_norm_by_layer`"),
    # mode
    "eval_in_train_mode": ("no harm here: test accuracy {acc:.3f} (clean {ref_acc:.3f})", "`test_acc`"),
    "train_mode_not_restored": ("no harm here: BatchNorm's running statistics frozen after step {bn_frozen_from:d} "
                                "(the last step of epoch 1), training accuracy {train_acc:.3f} (no dropout), test accuracy {acc:.3f} "
                                "(clean {ref_acc:.3f})", "`bn_running_var_mean`"),
    # memory
    "loss_kept": ("up to {graphs_max:d} earlier steps' autograd graphs alive at once (clean: 0), about 8 kB each; "
                  "accuracy unchanged ({acc:.3f})", "`loss_graphs_alive`"),
    "eval_with_grad": ("autograd saves {test_bytes_mb:.1f} MB during each test pass (clean: 0), 10x on full "
                       "MNIST's test set; accuracy unchanged ({acc:.3f})", "`test_autograd_bytes`"),
    # checkpoint
    "resume_without_optimizer_state": ("the first step after the restart moves the weights {restart_ur_ratio:.2f}x as "
                                       "much as the step before (clean {ref_restart_ur_ratio:.2f}x): the optimizer "
                                       "ran at lr 0.01 and no momentum while the log says {restart_lr_logged:.3f}; "
                                       "metrics leave the uninterrupted run's at step {first_diff_step:d}",
                                       "`update_ratio`"),
    "resume_without_rng_state": ("metrics identical to the uninterrupted run's up to the restart, different from step "
                                 "{first_diff_step:d} on (dropout draws other numbers); test accuracy {acc:.3f} "
                                 "(uninterrupted {ref_acc:.3f})", "`loss`"),
}


def _derived(m: dict[str, Any], run: Records, ref: Records) -> dict[str, Any]:
    """Figures that need both runs' full records."""
    st, rst = _steps(run), _steps(ref)
    rel = [abs(a["loss"] - b["loss"]) / abs(b["loss"]) for a, b in zip(st, rst)
           if a["loss"] is not None and b["loss"]]
    m["loss_rel_dev"] = max(rel) if rel else None
    m["ur0_ratio"] = m["ur0"] / m["ref_ur0"] if m["ur0"] and m["ref_ur0"] else None
    m["ur_ratio"] = m["ur_mean"] / m["ref_ur_mean"] if m["ur_mean"] and m["ref_ur_mean"] else None
    m["test_bytes_mb"] = m["test_bytes"] / 1e6 if m["test_bytes"] is not None else None
    return m


# ---------------------------------------------------------------------------------------------
# Training and the table
# ---------------------------------------------------------------------------------------------

def reference_options(name: str) -> dict[str, Any]:
    """The clean run an entry is compared with: the same precision and clipping."""
    from breaklab.breaks import REGISTRY

    cls = REGISTRY[name]
    opts: dict[str, Any] = {}
    if cls.needs_amp:
        opts["amp"] = True
    if cls.needs_clip_grad:
        opts["clip_grad"] = cls.needs_clip_grad
    return opts


def train_records(folder: Path, break_name: str, seed: int, epochs: int, **options) -> Records:
    from breaklab.metric_log import read_metrics
    from breaklab.trainer import Config, train

    train(Config(break_name=break_name, seed=seed, epochs=epochs, out=str(folder), quiet=True, **options))
    return read_metrics(folder / "metrics.jsonl")


def measure_all(names: list[str], seeds: list[int], epochs: int, log: Callable[[str], None] = print) -> dict[str, Any]:
    import breaklab.plots

    breaklab.plots.write_report = lambda *a, **k: None  # the figures are not measured here
    result: dict[str, Any] = {"seeds": seeds, "epochs": epochs, "entries": {}}
    refs: dict[tuple, Records] = {}
    with tempfile.TemporaryDirectory(prefix="breaklab-catalogue-") as tmp:
        for name in names:
            per_seed = {}
            for seed in seeds:
                opts = reference_options(name)
                key = (seed, tuple(sorted(opts.items())))
                if key not in refs:
                    refs[key] = train_records(Path(tmp) / f"ref-{len(refs)}", "none", seed, epochs, **opts)
                run = train_records(Path(tmp) / f"{name}-{seed}", name, seed, epochs)
                per_seed[str(seed)] = _derived(measure(run, refs[key]), run, refs[key])
                log(f"{name} seed {seed}: test accuracy {per_seed[str(seed)]['acc']:.3f}")
            result["entries"][name] = per_seed
    return result


def _fmt(values: list[Any], spec: str) -> str:
    """One figure over the seeds: a single value when they agree, else the range."""
    if any(v is None for v in values):
        return "/".join("-" if v is None else format(v, spec) for v in values)
    texts = [format(v, spec) for v in values]
    if len(set(texts)) == 1:
        return texts[0]
    lo, hi = format(min(values), spec), format(max(values), spec)
    return lo if lo == hi else f"{lo} to {hi}" if spec.endswith("e") or lo.startswith("-") else f"{lo}-{hi}"


def symptom_text(name: str, per_seed: dict[str, dict[str, Any]]) -> str:
    import string

    template, _ = FIGURES[name]
    parts = []
    for literal, field, spec, _ in string.Formatter().parse(template):
        parts.append(literal)
        if field is not None:
            parts.append(_fmt([m[field] for m in per_seed.values()], spec or "g"))
    return "".join(parts)


# How the table is made: README.md prints this above the table. It names solutions/, which a
# course kit does not have, so it goes fenced: `breaklab kit` drops the fenced passage.
MADE_BY = """<!-- instructor-only -->

The table is written by `python -m breaklab.solutions.catalogue --table solutions/catalogue.json`
from the figures that `python -m breaklab.solutions.catalogue --out solutions/catalogue.json`
measures; both print this passage, fenced, above the table.
<!-- /instructor-only -->"""


def table(measured: dict[str, Any]) -> str:
    from breaklab.breaks import REGISTRY

    seeds = ", ".join(str(s) for s in measured["seeds"])
    lines = [f"| break | category | kind | what changes | measured symptom (seeds {seeds}) | metric |",
             "|---|---|---|---|---|---|"]
    for name in [n for n in REGISTRY if n in measured["entries"]]:  # the catalogue's order
        cls, per_seed = REGISTRY[name], measured["entries"][name]
        kind = "control" if cls.control else "bug"
        lines.append(f"| `{name}` | {cls.category} | {kind} | {cls.description} | "
                     f"{symptom_text(name, per_seed)} | {FIGURES[name][1]} |")
    return "\n".join(lines)


def _rounded(obj: Any) -> Any:
    """Figures to 6 significant digits: the table quotes at most 4."""
    if isinstance(obj, float):
        return float(f"{obj:.6g}")
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    return obj


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 0, 1])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--only", nargs="+", help="measure these entries only")
    ap.add_argument("--out", type=Path, help="write the figures (JSON) here")
    ap.add_argument("--table", type=Path, help="print the table from figures saved earlier; train nothing")
    args = ap.parse_args()
    if args.table:
        print(MADE_BY, "", table(json.loads(args.table.read_text())), sep="\n")
        return
    from breaklab.breaks import BREAK_NAMES
    from breaklab.canonical_setup import configure_determinism

    configure_determinism(1)
    measured = measure_all(args.only or BREAK_NAMES, args.seeds, args.epochs)
    if args.out:
        args.out.write_text(json.dumps(_rounded(measured), indent=1, sort_keys=True) + "\n")
    print(MADE_BY, "", table(measured), sep="\n")


if __name__ == "__main__":
    main()
