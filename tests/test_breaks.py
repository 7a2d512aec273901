"""Each break really produces its symptom in the default run, and the clean run shows none.

Thresholds come from runs at seeds 0, 1 and 42 (3 epochs, bundled data, CPU, 1 thread) and keep a
wide margin; the measured values are in the comments.
"""
from __future__ import annotations

import math

import pytest

from breaklab.breaks import BREAK_NAMES, REGISTRY, get_break

pytestmark = pytest.mark.slow  # these tests train (the training tier)

LN10 = math.log(10)


def scattered_zero_frac(step: dict) -> float:
    """Exact-zero fc1.weight gradient entries outside whole dead rows (float16 underflow)."""
    return step["zero_grad_frac_by_layer"]["fc1.weight"] - step["dead_unit_frac"]


def mean(xs):
    return sum(xs) / len(xs)


def test_registry_has_the_seven_breaks_with_their_card():
    assert set(BREAK_NAMES) == {"label_permute", "huge_lr", "missing_zero_grad", "loss_sum",
                                "amp_no_scaling", "double_softmax", "eval_mode"}
    categories = {"data", "target", "objective", "numerics", "optimization", "mode"}
    for name in BREAK_NAMES:
        cls = REGISTRY[name]
        assert cls.category in categories
        assert cls.description and cls.symptom and cls.metric and cls.hook
        # Each break changes exactly one hook of the clean behaviour.
        overridden = [h for h in ("learning_rate", "use_grad_scaler", "set_mode", "targets",
                                  "zero_grad", "outputs", "loss") if h in vars(cls)]
        assert overridden == [cls.hook], name


def test_unknown_break_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown break .*valid breaks: none, "):
        get_break("nope")


@pytest.fixture(scope="module")
def clean(train_run):
    return train_run("none")


def test_clean_run_learns_and_shows_no_symptom(clean):
    # measured: test accuracy 0.940-0.951, last-20-step loss 0.08-0.10
    assert clean.epochs[-1]["test_acc"] >= 0.92
    assert abs(clean.steps[0]["loss"] - LN10) < 0.1
    assert mean(clean.series("loss")[-20:]) < 0.3
    assert all(clean.series("loss_finite"))
    assert max(scattered_zero_frac(s) for s in clean.steps) == 0.0
    assert clean.steps[-1]["bn_running_var_mean"] != 1.0
    assert abs(clean.steps[-1]["logit_rowsum_mean"] - 1.0) > 0.01
    assert clean.summary["symptoms"] == []


def test_label_permute_gives_chance_accuracy(train_run, clean):
    run = train_run("label_permute")
    # measured: test accuracy 0.083-0.130; last-20-step loss 2.35-2.36
    assert run.epochs[-1]["test_acc"] < 0.2
    assert abs(mean(run.series("loss")[-20:]) - LN10) < 0.25
    # The inputs are the same, only the labels moved: gradients stay healthy and finite.
    assert all(run.series("grads_finite"))


def test_huge_lr_makes_the_loss_blow_up_and_kills_relus(train_run, clean):
    run = train_run("huge_lr")
    assert run.steps[0]["lr"] == pytest.approx(100 * clean.steps[0]["lr"])
    # measured: the loss passes 1.5x its start at step 2 and peaks at 1.1e3-8.2e3 in 30 steps
    early = [l for l in run.series("loss")[:30] if l is not None]
    assert max(early) > 50 * run.steps[0]["loss"]
    first_rise = next(s["step"] for s in run.steps if s["loss"] is None or s["loss"] > 1.5 * run.steps[0]["loss"])
    assert first_rise <= 5
    # measured: every hidden unit dead at the end (BatchNorm keeps the loss finite: no NaN)
    assert run.steps[-1]["dead_unit_frac"] >= 0.9
    assert run.epochs[-1]["test_acc"] < 0.2


def test_missing_zero_grad_makes_the_gradient_norm_grow_every_step(train_run, clean):
    run = train_run("missing_zero_grad")
    gn = run.series("grad_norm")[:20]
    rises = sum(b > a for a, b in zip(gn, gn[1:]))
    # measured: 19 of 19 rises and 9.6-12x over 20 steps; clean: 8-9 rises, ~1x
    assert rises >= 17
    assert gn[-1] > 5 * gn[0]
    clean_gn = clean.series("grad_norm")[:20]
    assert sum(b > a for a, b in zip(clean_gn, clean_gn[1:])) <= 13
    assert max(l for l in run.series("loss") if l is not None) > 100


def test_loss_sum_scales_the_initial_loss_and_gradients_by_the_batch_size(train_run, clean):
    run = train_run("loss_sum")
    bs = run.steps[0]["batch_size"]
    assert bs == 64
    # measured: 147.2-147.6 = 64 x 2.30
    assert run.steps[0]["loss"] / bs == pytest.approx(LN10, abs=0.1)
    assert run.steps[0]["loss"] / clean.steps[0]["loss"] == pytest.approx(bs, rel=0.02)
    # Same weights and batch at step 0: the summed gradient is exactly the batch-size multiple.
    assert run.steps[0]["grad_norm"] / clean.steps[0]["grad_norm"] == pytest.approx(bs, rel=0.01)


def test_amp_without_scaler_underflows_gradients_to_exact_zeros(train_run):
    run = train_run("amp_no_scaling")
    scaled = train_run("none", amp=True)
    assert run.meta["amp"] is True and run.steps[0]["amp_scale"] == 1.0
    assert scaled.steps[0]["amp_scale"] > 1.0
    # measured: 11-15% scattered exact zeros in fc1.weight's gradient without the scaler,
    # <= 0.03% with it; no dead rows, no NaN.
    no_scaler = mean([scattered_zero_frac(s) for s in run.steps[-10:]])
    with_scaler = mean([scattered_zero_frac(s) for s in scaled.steps[-10:]])
    assert no_scaler > 0.05
    assert with_scaler < 0.005
    assert no_scaler > 20 * with_scaler
    assert run.steps[-1]["dead_unit_frac"] == 0.0
    assert all(run.series("loss_finite"))


def test_double_softmax_feeds_probabilities_and_floors_the_loss(train_run, clean):
    run = train_run("double_softmax")
    for s in run.steps:
        assert s["logit_rowsum_mean"] == pytest.approx(1.0, abs=1e-4)
        assert 0.0 <= s["logit_min"] and s["logit_max"] <= 1.0
    # measured: last-20-step loss 1.55 (floor ~1.46) while test accuracy is 0.92
    assert mean(run.series("loss")[-20:]) > 1.4
    assert run.epochs[-1]["test_acc"] > 0.8
    # Gradients are squashed: about 10x smaller than the clean run's at step 0.
    assert run.steps[0]["grad_norm"] < 0.25 * clean.steps[0]["grad_norm"]


def test_eval_mode_leaves_batchnorm_statistics_untouched(train_run, clean):
    run = train_run("eval_mode")
    for s in run.steps:
        assert s["bn_running_mean_abs"] == 0.0
        assert s["bn_running_var_mean"] == 1.0
    assert clean.steps[0]["bn_running_mean_abs"] > 0.0
    # measured: 24-34% of hidden units dead at the end (clean: 0)
    assert run.steps[-1]["dead_unit_frac"] > 0.1
    assert clean.steps[-1]["dead_unit_frac"] == 0.0


@pytest.mark.parametrize("name", BREAK_NAMES)
def test_summary_names_a_symptom_for_every_break(train_run, name):
    assert train_run(name).summary["symptoms"], name
