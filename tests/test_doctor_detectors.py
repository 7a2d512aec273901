"""The doctor's detectors for the whole catalogue, on synthetic metric records (fast: no
training), and one cheap trained run per precondition the metrics now measure (slow).

The synthetic run is a sound one-epoch run in schema 3; each test changes the fields one fault
changes and checks the verdict, and that a failed or unmeasured precondition gives no
catalogue name."""
from __future__ import annotations

import copy
import math

import pytest

from breaklab import rules
from breaklab.doctor import DETECTORS, Run, RunReadError, diagnose, validate_records

F32_MAX, F16_MAX, BF16_MAX = 3.4028234663852886e38, 65504.0, 3.3895313892515355e38  # torch.finfo(...).max
LAYERS = ("fc1.weight", "fc1.bias", "bn1.weight", "bn1.bias", "fc2.weight", "fc2.bias")
STEPS = 63


def clean_steps(n: int = STEPS) -> list[dict]:
    """A sound run as trainer.py logs it: the loss falls from ln 10, normal steps, every layer
    gets a gradient and moves, float32 without a GradScaler, nothing kept alive."""
    steps = []
    for i in range(n):
        loss = 0.3 + 2.0 * math.exp(-i / 12) + 0.02 * ((i * 7) % 5 - 2)
        lr = 0.1 * (i + 1) / 10 if i < 10 else 0.05 * (1 + math.cos(math.pi * (i - 10) / (n - 10)))
        norm = 1.7 - 0.005 * i + 0.1 * ((i * 3) % 4 - 1.5)
        steps.append({
            "type": "step", "step": i, "epoch": 0, "batch_size": 64, "lr": lr, "loss": loss,
            "grad_norm": norm, "grad_norm_pre_clip": norm, "grad_norm_carried": 0.0,
            "grad_norm_by_layer": {k: 0.5 for k in LAYERS}, "grad_mean": {k: 1e-3 for k in LAYERS},
            "zero_grad_frac": 0.0, "zero_grad_frac_by_layer": {k: 0.0 for k in LAYERS}, "dead_unit_frac": 0.0,
            "act_first_mean": 0.4, "act_first_var": 0.34, "act_first_dead_frac": 0.0,
            "act_last_mean": 0.0, "act_last_var": 4.0, "logit_min": -8.0 - i / 10, "logit_max": 9.0 + i / 10,
            "logit_rowsum_mean": -0.3, "update_ratio": 6e-4 if i == 0 else 7e-3,
            "update_norm_by_layer": {k: 1e-2 for k in LAYERS},
            "bn_running_mean_abs": 0.06 + i / 1000, "bn_running_var_mean": 1.05 + i / 1000, "amp_scale": 1.0,
            "grad_scaler_enabled": False, "forward_float_max": F32_MAX, "step_skipped": False,
            "loss_finite": True, "grads_finite": True, "loss_graphs_alive": 0})
    return steps


def clean_epochs(n: int = STEPS) -> list[dict]:
    return [{"type": "epoch", "epoch": 0, "step": n, "train_loss": 0.7, "train_acc": 0.79, "test_loss": 0.27,
             "test_acc": 0.92, "test_autograd_bytes": 0}]


def verdict(steps, epochs=None):
    return diagnose(Run("synthetic", steps, clean_epochs() if epochs is None else epochs))


def text_of(d) -> str:
    return " ".join(d.observations + [e for h in d.hypotheses for e in h.evidence]).lower()


def test_the_synthetic_clean_run_is_healthy():
    d = verdict(clean_steps())
    assert d.verdict == "healthy" and not d.hypotheses, (d.verdict, [h.name for h in d.hypotheses])


# -- 1. names the doctor used to get wrong ---------------------------------------------------

def frozen(steps, names=("fc1.weight", "fc1.bias")):
    for r in steps:
        for k in names:
            r["grad_norm_by_layer"][k] = 0.0
            r["update_norm_by_layer"][k] = 0.0
            r["zero_grad_frac_by_layer"][k] = 1.0
        r["dead_unit_frac"] = 1.0  # every gradient row of fc1 is zero: the old "100% dead ReLUs"
    return steps


def test_a_frozen_layer_is_no_gradient_never_updated_not_dead_units():
    d = verdict(frozen(clean_steps()))
    assert d.verdict == "frozen_layer", [h.name for h in d.hypotheses]
    words = text_of(d)
    assert "no gradient" in words and "never updated" in words
    assert "dead relu" not in words  # dead units come from activations only, and they are alive


def test_a_layer_left_out_of_the_optimizer_has_a_gradient_and_never_moves():
    steps = clean_steps()
    for i, r in enumerate(steps):
        r["update_norm_by_layer"]["fc1.weight"] = r["update_norm_by_layer"]["fc1.bias"] = 0.0
        r["grad_norm_by_layer"]["fc1.weight"] = 0.3 * (i + 1)  # never cleared: it grows
        r["grad_norm_by_layer"]["fc1.bias"] = 1e-9 * (i + 1)  # before BatchNorm: all but zero
        r["grad_norm_carried"] = 0.3 * i
    d = verdict(steps)
    assert d.verdict == "layer_not_in_optimizer", [h.name for h in d.hypotheses]
    assert "missing_zero_grad" not in [h.name for h in d.hypotheses]


def test_dead_units_come_from_activations_and_all_dead_from_step_0_is_the_initialisation():
    steps = frozen(clean_steps(), ("fc1.weight", "fc1.bias", "bn1.weight", "bn1.bias", "fc2.weight"))
    for r in steps:
        r["act_first_dead_frac"], r["loss"] = 1.0, 2.30 + 0.01 * (r["step"] % 3)
    d = verdict(steps, [{**clean_epochs()[0], "train_acc": 0.09, "test_acc": 0.1, "test_loss": 2.3}])
    assert d.verdict == "zero_init", [h.name for h in d.hypotheses]


def test_no_shuffle_is_not_label_permute():
    steps = clean_steps()
    for r in steps:  # one class per batch: alternately near 0 and far above ln 10
        r["loss"] = 1e-5 if r["step"] % 9 == 4 else 3.2
    steps[0]["loss"] = 2.3  # the first batch: an untrained model, ln 10
    d = verdict(steps, [{**clean_epochs()[0], "train_acc": 0.16, "test_acc": 0.1, "test_loss": 2.7}])
    assert d.verdict == "no_shuffle", [h.name for h in d.hypotheses]


def test_loss_kept_is_not_healthy():
    steps = clean_steps()
    for r in steps:
        r["loss_graphs_alive"] = r["step"]
    assert verdict(steps).verdict == "loss_kept"


def test_evaluation_with_autograd_is_named_from_the_epoch_record():
    assert verdict(clean_steps(), [{**clean_epochs()[0], "test_autograd_bytes": 6_300_000}]).verdict == "eval_with_grad"


def test_conflicting_evidence_gives_unknown_with_both_hypotheses():
    steps = clean_steps()
    for r in steps:
        r["loss_graphs_alive"] = r["step"]
    d = verdict(steps, [{**clean_epochs()[0], "test_autograd_bytes": 6_300_000}])
    assert d.verdict == "unknown" and d.confidence == 0.0
    assert {h.name for h in d.hypotheses} == {"loss_kept", "eval_with_grad"}
    assert "conflicting evidence" in d.observations[0]


def test_a_failed_precondition_gives_unknown_not_a_name():
    # parameters that never move, one without and one with a gradient: neither frozen nor left out
    steps = frozen(clean_steps(), ("fc1.weight",))
    for r in steps:
        r["update_norm_by_layer"]["fc2.weight"] = 0.0
    d = verdict(steps)
    assert d.verdict in ("unknown", "healthy")
    assert d.verdict == "healthy" or not d.hypotheses or d.confidence == 0.0


# -- 2. preconditions measured, not assumed --------------------------------------------------

def underflowing(steps, autocast=F16_MAX, scaler=False):
    for r in steps:
        r["zero_grad_frac_by_layer"]["fc1.weight"] = 0.12
        r["forward_float_max"], r["grad_scaler_enabled"] = autocast, scaler
    return steps


def test_amp_no_scaling_needs_float16_measured_in_use_and_no_scaler():
    assert verdict(underflowing(clean_steps())).verdict == "amp_no_scaling"
    assert verdict(underflowing(clean_steps(), autocast=F32_MAX)).verdict != "amp_no_scaling"  # float32
    assert verdict(underflowing(clean_steps(), autocast=BF16_MAX)).verdict != "amp_no_scaling"
    old = underflowing(clean_steps())
    for r in old:  # a run from before the fields existed: float16 not measured
        del r["forward_float_max"], r["grad_scaler_enabled"]
    assert verdict(old).verdict != "amp_no_scaling"


def test_float16_steps_skipped_with_a_finite_loss_need_float16_and_a_scaler():
    def skipping(autocast, scaler):
        steps = clean_steps()
        for r in steps:
            r["forward_float_max"], r["grad_scaler_enabled"] = autocast, scaler
            r["amp_scale"] = 65536.0 / 2 ** min(r["step"] // 2, 16)
            if r["step"] >= 10 and r["step"] % 5:
                r["step_skipped"], r["grads_finite"], r["update_ratio"] = True, False, 0.0
        return steps

    assert verdict(skipping(F16_MAX, True)).verdict == "log_of_softmax_amp"
    assert verdict(skipping(F32_MAX, True)).verdict != "log_of_softmax_amp"


def scaled_float16(skipped: int, autocast=F16_MAX) -> list[dict]:
    """A run under autocast with a GradScaler whose loss stays finite, `skipped` of its steps
    skipped (spread from step 10 on)."""
    steps = clean_steps()
    for r in steps:
        r["forward_float_max"], r["grad_scaler_enabled"], r["amp_scale"] = autocast, True, 65536.0
    for i in range(skipped):
        r = steps[10 + i * (STEPS - 10) // skipped]
        r["step_skipped"], r["grads_finite"], r["update_ratio"] = True, False, 0.0
    return steps


def fewest_skips_of_a_near_miss() -> int:
    return math.floor(rules.FLOAT16_SKIPPED_STEP_NEAR_MISS * STEPS) + 1


def test_a_healthy_run_with_a_near_miss_is_healthy_with_a_low_confidence():
    near_miss = fewest_skips_of_a_near_miss()
    below_rule = math.ceil(rules.FLOAT16_SKIPPED_STEP_SHARE * STEPS) - 1
    assert near_miss <= below_rule
    for skipped in (near_miss, below_rule):
        d = verdict(scaled_float16(skipped))
        assert (d.verdict, d.calibrated_as) == ("healthy", "healthy:near_miss"), skipped
        assert d.confidence < 0.7, d.confidence
        assert f"skipped {skipped} of {STEPS} steps" in d.observations[0] and "near miss" in d.observations[0]
        assert "breaklab triage" in d.next_check
    for steps in (scaled_float16(0), scaled_float16(near_miss - 1), clean_steps(),
                  scaled_float16(near_miss, autocast=F32_MAX)):  # as sound runs skip; or not float16
        d = verdict(steps)
        assert (d.verdict, d.calibrated_as) == ("healthy", "healthy"), [h.name for h in d.hypotheses]
        assert d.confidence >= 0.85 and not d.observations, (d.confidence, d.observations)
    assert verdict(scaled_float16(below_rule + 1)).verdict == "log_of_softmax_amp"


def test_healthy_confidence_comes_from_the_calibration_table(monkeypatch):
    from breaklab import doctor

    monkeypatch.setattr(doctor, "_PRECISION", {"healthy": 0.97, "healthy:near_miss": 0.2})
    assert verdict(clean_steps()).confidence == 0.97
    assert verdict(scaled_float16(fewest_skips_of_a_near_miss())).confidence == 0.2
    monkeypatch.setattr(doctor, "_PRECISION", {})  # no table: the defaults
    assert verdict(clean_steps()).confidence == doctor.HEALTHY_KINDS["healthy"]


def test_nonfinite_loss_in_float16_is_overflow_only_when_float16_is_measured():
    def overflow(autocast):
        steps = clean_steps()
        for r in steps:
            r["forward_float_max"], r["grad_scaler_enabled"] = autocast, True
            if r["step"] >= 13:
                r.update(loss=None, loss_finite=False, grads_finite=False, step_skipped=True)
        return steps

    assert verdict(overflow(F16_MAX)).verdict == "fp16_overflow"
    assert verdict(overflow(F32_MAX)).verdict not in ("fp16_overflow", "healthy")


def test_nonfinite_activations_from_a_finite_step_are_the_inputs():
    steps = clean_steps()
    for r in steps[20:]:
        r.update(loss=None, loss_finite=False, grads_finite=False, act_first_mean=None, act_first_var=None)
    assert verdict(steps).verdict == "nan_inputs"


def test_missing_zero_grad_is_found_through_clipping():
    steps = clean_steps()
    for r in steps:  # clipped at 1.0: the applied norm is flat, what .grad held before backward is not
        r["grad_norm_pre_clip"] = 1.8 + 0.5 * min(r["step"], 1)
        r["grad_norm"] = 1.0
        r["grad_norm_carried"] = 1.0 if r["step"] else 0.0
    d = verdict(steps)
    assert d.verdict == "missing_zero_grad", [h.name for h in d.hypotheses]


def test_gradient_growth_is_read_before_clipping():
    steps = clean_steps()
    for r in steps:  # an older run without grad_norm_carried: growth before clipping, capped after
        del r["grad_norm_carried"]
        r["grad_norm_pre_clip"] = 1.8 * (1 + r["step"] / 2)
        r["grad_norm"] = 1.0
    assert verdict(steps).verdict == "missing_zero_grad"
    for r in steps:
        del r["grad_norm_pre_clip"]  # only the clipped norm: no growth to see, no name
    assert verdict(steps).verdict != "missing_zero_grad"


def test_a_float16_probability_of_exactly_zero_is_a_value_not_missing():
    steps = clean_steps()
    for r in steps:  # softmax outputs under float16: the smallest rounds to exactly 0.0
        r.update(logit_min=0.0, logit_max=0.97, logit_rowsum_mean=1.0, forward_float_max=F16_MAX,
                 grad_scaler_enabled=True, amp_scale=65536.0)
        r["loss"] = max(r["loss"], 1.55)
    assert verdict(steps).verdict == "double_softmax"


def test_clipping_before_unscaling_needs_a_scaler_measured():
    def scaled(enabled):
        steps = clean_steps()
        for r in steps:
            r.update(grad_norm=1.0 / 65536, amp_scale=65536.0, grad_scaler_enabled=enabled, forward_float_max=F16_MAX,
                     update_ratio=1e-7, loss=2.30)
        return steps

    assert verdict(scaled(True), [{**clean_epochs()[0], "train_acc": 0.12, "test_acc": 0.14}]).verdict \
        == "clip_before_unscale"
    assert verdict(scaled(False), [{**clean_epochs()[0], "train_acc": 0.12, "test_acc": 0.14}]).verdict \
        != "clip_before_unscale"


# -- the other catalogue entries' signatures ------------------------------------------------

@pytest.mark.parametrize("name, change, epochs", [
    ("nll_on_logits", lambda r: r.update(loss=0.02 - 50.0 * r["step"]), None),
    ("mse_onehot", lambda r: r.update(loss=0.12 - 0.0012 * r["step"]), None),
    ("softmax_over_batch", lambda r: r.update(loss=4.16 - 0.03 * r["step"]), None),
    ("tiny_lr", lambda r: r.update(update_ratio=2e-5, loss=2.30 - 0.0006 * r["step"]),
     {"train_acc": 0.15, "test_acc": 0.2, "test_loss": 2.26}),
    ("acc_broadcast", lambda r: None, {"train_acc": 7.03, "test_acc": 0.1}),
    ("label_shift", lambda r: None, {"train_acc": 0.79, "test_acc": 0.012, "test_loss": 13.4}),
])
def test_catalogue_signatures(name, change, epochs):
    steps = clean_steps()
    for r in steps:
        change(r)
    d = verdict(steps, [{**clean_epochs()[0], **(epochs or {})}])
    assert d.verdict == name, (d.verdict, [h.name for h in d.hypotheses])


def test_a_constant_learning_rate_alone_is_not_a_fault():
    steps = clean_steps()
    for r in steps:  # an unstepped schedule and a loop without one log the same
        r["lr"] = 0.01
    assert verdict(steps).verdict == "healthy"


def test_a_step_that_shrinks_at_an_epoch_boundary_is_a_lost_optimizer_state():
    steps = clean_steps(126)
    for r in steps:
        r["epoch"] = r["step"] // 63
    steps[63]["update_ratio"] = 2e-4
    d = verdict(steps, clean_epochs(126) * 2)
    assert d.verdict == "resume_without_optimizer_state", [h.name for h in d.hypotheses]


def test_labels_without_signal_are_split_by_the_gradient_that_reaches_the_first_layer():
    def stuck(first_layer_share, batchnorm=True):
        steps = clean_steps()
        for r in steps:
            r.update(loss=2.33 + 0.02 * (r["step"] % 3), logit_min=-1.0, logit_max=1.0)
            if not batchnorm:
                r.update(bn_running_mean_abs=None, bn_running_var_mean=None)
            r["grad_norm_by_layer"]["fc1.weight"] = first_layer_share * r["grad_norm_by_layer"]["fc2.weight"]
        return verdict(steps, [{**clean_epochs()[0], "train_acc": 0.1, "test_acc": 0.11, "test_loss": 2.4}])

    assert stuck(0.6).verdict == "label_permute"   # each example pulls toward its own label
    assert stuck(0.03).verdict == "loss_all_pairs"  # one gradient for every example: BatchNorm removes it
    # Without BatchNorm (no running statistics logged) the split's precondition fails: neither name.
    for share in (0.6, 0.03):
        d = stuck(share, batchnorm=False)
        assert d.verdict == "unknown" and {h.name for h in d.hypotheses} == {"label_permute", "loss_all_pairs"}


def test_every_detector_is_documented_and_new_fields_are_validated():
    for detector in DETECTORS:
        doc = detector.__doc__ or ""
        assert "rules." in doc or ("Threshold" in doc and "Measured" in doc), detector.__name__
    bad = copy.deepcopy(clean_steps(1))
    bad[0]["forward_float_max"] = "float16"
    with pytest.raises(RunReadError, match="forward_float_max"):
        validate_records(bad, "x")
    bad[0]["forward_float_max"], bad[0]["grad_scaler_enabled"] = F16_MAX, "yes"
    with pytest.raises(RunReadError, match="grad_scaler_enabled"):
        validate_records(bad, "x")


# -- slow: one trained epoch per measured precondition ---------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Five 1-epoch runs, trained once for the module."""
    from breaklab.doctor import load_run
    from breaklab.trainer import Config, train

    configs = {"amp_no_scaling": dict(break_name="amp_no_scaling"),
               "amp_clean": dict(amp=True),
               "missing_zero_grad_clip": dict(break_name="missing_zero_grad", clip_grad=1.0),
               "frozen_layer": dict(break_name="frozen_layer"),
               "layer_not_in_optimizer": dict(break_name="layer_not_in_optimizer")}
    runs = {}
    for name, cfg in configs.items():
        out = tmp_path_factory.mktemp(name)
        train(Config(seed=4, epochs=1, out=str(out), quiet=True, **cfg))
        runs[name] = load_run(out, model=False)
    return runs


@pytest.mark.slow
def test_float16_and_the_scaler_are_measured_per_step(trained):
    unscaled, scaled = trained["amp_no_scaling"].steps, trained["amp_clean"].steps
    assert {r["forward_float_max"] for r in unscaled} == {F16_MAX} == {r["forward_float_max"] for r in scaled}
    assert {r["grad_scaler_enabled"] for r in unscaled} == {False}
    assert {r["grad_scaler_enabled"] for r in scaled} == {True}
    assert diagnose(trained["amp_no_scaling"]).verdict == "amp_no_scaling"
    assert diagnose(trained["amp_clean"]).verdict == "healthy"


@pytest.mark.slow
def test_missing_zero_grad_with_clipping_is_found_from_the_norm_before_clipping(trained):
    run = trained["missing_zero_grad_clip"]
    assert all(r["grad_norm"] <= 1.0 + 1e-4 for r in run.steps)  # clipping caps the applied norm
    assert max(r["grad_norm_pre_clip"] for r in run.steps) > 1.5
    assert all(r["grad_norm_carried"] > 0.5 for r in run.steps[1:])
    assert diagnose(run).verdict == "missing_zero_grad"


@pytest.mark.slow
def test_parameters_that_never_move_are_measured_per_layer(trained):
    for name in ("frozen_layer", "layer_not_in_optimizer"):
        run = trained[name]
        assert all(r["update_norm_by_layer"]["fc1.weight"] == 0.0 for r in run.steps)
        assert all(r["update_norm_by_layer"]["fc2.weight"] > 0 for r in run.steps)
        d = diagnose(run)
        assert d.verdict == name, [h.name for h in d.hypotheses]
        assert "dead relu" not in text_of(d)


# -- the calibration script (no training) ------------------------------------------------------

def test_calibration_and_held_out_sets_are_disjoint_and_docs_are_rewritten_between_markers(tmp_path):
    from breaklab import doctor_calibration as cal

    jobs = cal.plan(["label_permute", "scheduler_not_stepped"], ["ooc_x", "ooc_heavy_dropout"])
    cal_keys = {(seed, json_key(cfg)) for split, _, cfg, seed, _ in jobs if split == "calibration"}
    held_keys = {(seed, json_key(cfg)) for split, _, cfg, seed, _ in jobs if split == "held-out"}
    assert cal_keys and held_keys and not cal_keys & held_keys
    assert {s for s, _ in cal_keys}.isdisjoint({s for s, _ in held_keys})
    late = [j for j in jobs if j[0] == "calibration" and j[4] in cal.LATE_OUT_OF_CATALOGUE]
    assert late and all(seed >= cal.LATE_SINCE_SEED for _, _, _, seed, _ in late)
    assert cal.expected_verdict("scheduler_not_stepped", {}) == "healthy"  # not visible in one run
    assert cal.expected_verdict("log_of_softmax", {"amp": True}) == "log_of_softmax_amp"
    doc = tmp_path / "DOCTOR.md"
    doc.write_text(f"before\n{cal.BEGIN}\nold\n{cal.END}\nafter\n")
    cal.write_docs(doc, "| new |")
    assert doc.read_text() == f"before\n{cal.BEGIN}\n| new |\n{cal.END}\nafter\n"


def test_healthy_verdicts_are_calibrated_per_kind():
    from breaklab import doctor_calibration as cal

    def outcome(entry, expected, verdict, kind):
        return cal.Outcome("calibration", "default", 0, entry, expected, verdict, 0.9, 0.0, kind)

    outcomes = [*(outcome("none", "healthy", "healthy", "healthy") for _ in range(8)),
                outcome("log_of_softmax_amp", "log_of_softmax_amp", "healthy", "healthy:near_miss"),
                outcome("ooc_x", "", "healthy", "healthy"),  # outside the catalogue: no name is right
                outcome("huge_lr", "huge_lr", "huge_lr", "huge_lr"),
                outcome("none", "healthy", "unknown", "unknown")]
    assert cal.precision_table(outcomes) == {"healthy": round(10 / 11, 3), "healthy:near_miss": 0.333,
                                             "huge_lr": round(2 / 3, 3)}


def json_key(cfg: dict) -> str:
    import json

    return json.dumps(cfg, sort_keys=True)
