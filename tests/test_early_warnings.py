"""Early warnings: the doctor's detectors on the records as they are written. The fast tests
feed made-up records (no training); the slow one replays trainer.py's runs."""
from __future__ import annotations

import math

import pytest

from breaklab.early_warnings import EarlyWarnings, observe_all, parse_stop_on


def step(i: int, *, loss: float = 2.3, grad_norm: float = 1.0, update_ratio: float = 0.002, **kw) -> dict:
    record = {"type": "step", "step": i, "epoch": 0, "batch_size": 64, "lr": 0.1, "loss": loss,
              "grad_norm": grad_norm, "zero_grad_frac_by_layer": {"fc1.weight": 0.0, "fc1.bias": 0.0},
              "grad_norm_by_layer": {"fc1.weight": grad_norm}, "dead_unit_frac": 0.0,
              "update_ratio": update_ratio, "bn_running_mean_abs": 0.1 * (i + 1), "bn_running_var_mean": 1.5,
              "amp_scale": 1.0, "loss_finite": math.isfinite(loss), "grads_finite": True}
    record.update(kw)
    return record


def test_accumulating_gradients_warn_once_at_step_19_with_the_evidence():
    warner = EarlyWarnings()
    lines = []
    for i in range(40):  # the norm grows like a running sum: the missing zero_grad signature
        lines += [(i, line) for line in warner.observe(step(i, loss=2.3 - 0.01 * i, grad_norm=1.0 + i))]
    assert len(lines) == 1
    at, line = lines[0]
    assert at == 19 and line.startswith("step 19: global gradient norm rose in 19 of the first 19 steps")
    assert "likely missing_zero_grad" in line


def test_a_healthy_history_warns_nothing_and_a_nan_loss_warns_once():
    warner = EarlyWarnings()
    assert not [w for i in range(50) for w in warner.observe(step(i, loss=2.3 - 0.02 * i,
                                                                  grad_norm=1.0 + 0.1 * math.sin(i)))]
    lines = warner.observe(step(50, loss=math.nan)) + warner.observe(step(51, loss=math.nan))
    assert lines == ["step 50: loss became non-finite at step 50"]


def test_late_steps_are_checked_every_16_steps_or_10_percent():
    warner = EarlyWarnings()
    checked = []
    original = warner._check
    warner._check = lambda s: checked.append(s) or original(s)
    for i in range(1000):
        warner.observe(step(i, loss=2.0))
    assert checked[:32] == list(range(32))
    assert len(checked) < 100
    # (steps count from 0: the check after step a comes when a + 1 steps have been seen)
    assert all(b - a == max(16, (a + 1) // 10) for a, b in zip(checked[31:], checked[32:]))


def test_stop_on_names_and_any():
    assert parse_stop_on(None) is None and parse_stop_on(False) is None
    assert parse_stop_on(True) == {"any"} and parse_stop_on("huge_lr") == {"huge_lr"}
    with pytest.raises(ValueError, match="unknown finding"):
        parse_stop_on(["huge_lr", "nope"])
    warner = EarlyWarnings(stop_on="nonfinite_loss")
    warner.observe(step(0))
    assert warner.stop is None
    warner.observe(step(1, loss=math.inf))
    assert warner.stop is not None and warner.stop.name == "nonfinite_loss" and warner.stop.step == 1


@pytest.mark.slow
@pytest.mark.parametrize("break_name,first_warning", [("missing_zero_grad", "missing_zero_grad"),
                                                      ("huge_lr", "huge_lr"), ("loss_sum", "loss_sum"),
                                                      ("none", None)])
def test_trainer_runs_replayed_warn_with_the_doctors_verdict(train_run, break_name, first_warning):
    run = train_run(break_name, epochs=1, seed=5)
    lines = observe_all(run.records)
    if first_warning is None:
        assert lines == []
    else:
        assert f"likely {first_warning}" in lines[0]
        assert all(f"likely {first_warning}" not in line for line in lines[1:])  # once per finding
