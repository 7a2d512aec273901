"""The recovery rules (breaklab/rules.py, RECOVERY_RULES): each reads its symptom from metrics
records and nothing else. These tests feed synthetic records made to sit on either side of each
threshold; tests/test_solutions.py checks the rubrics that name them on trained runs.
"""
from __future__ import annotations

import pytest

from breaklab import rules
from breaklab.grader.recovery import SYMPTOM_CHECKS, fired_checks


def step(i: int, epoch: int = 0, **fields) -> dict:
    return {"type": "step", "step": i, "epoch": epoch, "loss": 2.3, "lr": 0.1 * (i + 1) / 60,
            "update_ratio": 1e-3, "loss_graphs_alive": 0, "step_skipped": False, **fields}


def epoch(e: int = 0, **fields) -> dict:
    return {"type": "epoch", "epoch": e, "train_loss": 0.5, "test_loss": 0.3, "train_acc": 0.8,
            "test_acc": 0.9, "test_autograd_bytes": 0, **fields}


def sound_run(n: int = 40, epochs: int = 2) -> list[dict]:
    """A run the recovery rules should pass: loss falling from ln 10, lr moving, nothing kept."""
    per = n // epochs
    return ([step(i, i // per, loss=2.3 - 0.04 * i) for i in range(n)]
            + [epoch(e, train_acc=0.85 + 0.05 * e, test_acc=0.9 + 0.02 * e) for e in range(epochs)])


def fires(name: str, records: list[dict]) -> bool:
    return fired_checks(records, [name]) == [name]


def test_recovery_rules_are_symptom_checks_and_stay_out_of_the_summary_rules():
    assert set(rules.RECOVERY_RULES) <= set(SYMPTOM_CHECKS)
    assert not set(rules.RECOVERY_RULES) & set(rules.RULES)


@pytest.mark.parametrize("name", sorted(rules.RECOVERY_RULES))
def test_no_recovery_rule_fires_on_a_sound_run(name):
    assert not fires(name, sound_run())


def test_each_recovery_rule_fires_on_its_symptom_and_not_just_below_the_threshold():
    run = sound_run()
    # a negative loss
    assert fires("loss_negative", [*run, step(99, loss=-0.01)])
    assert not fires("loss_negative", [*run, step(99, loss=0.0)])
    # an initial loss far below ln 10
    assert fires("initial_loss_far_below_ln10", [step(0, loss=0.12), *run[1:]])
    assert not fires("initial_loss_far_below_ln10", [step(0, loss=rules.INITIAL_LOSS_FLOOR + 0.01), *run[1:]])
    # earlier graphs alive at one step
    assert fires("earlier_graphs_alive", [*run, step(99, loss_graphs_alive=1)])
    # autograd bytes in one test pass
    assert fires("test_pass_records_graph", [*run, epoch(2, test_autograd_bytes=8)])
    # skipped steps: more than half, not half
    half = [step(i, step_skipped=i % 2 == 0) for i in range(40)]
    assert not fires("most_steps_skipped", half)
    assert fires("most_steps_skipped", [*half, step(40, step_skipped=True)])
    # a constant learning rate, over enough steps
    flat = [step(i, lr=0.01) for i in range(rules.LR_CONSTANT_MIN_STEPS)]
    assert fires("lr_never_changes", flat)
    assert not fires("lr_never_changes", flat[:-1])
    assert not fires("lr_never_changes", [*flat[:-1], step(99, lr=0.02)])
    # the test pass worse than training on loss and on accuracy, both
    worse = dict(train_loss=0.3, test_loss=0.8, train_acc=0.8, test_acc=0.73)
    assert fires("test_worse_than_train", [*run, epoch(2, **worse)])
    assert not fires("test_worse_than_train", [*run, epoch(2, **{**worse, "test_loss": 0.29})])
    assert not fires("test_worse_than_train", [*run, epoch(2, **{**worse, "test_acc": 0.76})])
    # the first step of an epoch tiny next to the one before it
    resumed = [step(i, i // 20, update_ratio=1e-3) for i in range(40)]
    resumed[20] = step(20, 1, update_ratio=3.9e-5)
    assert fires("update_collapses_at_epoch_start", resumed)
    resumed[20] = step(20, 1, update_ratio=0.9e-3)
    assert not fires("update_collapses_at_epoch_start", resumed)
    # ... and only where an epoch starts
    resumed[10] = step(10, 0, update_ratio=1e-6)
    assert not fires("update_collapses_at_epoch_start", resumed)


def test_recovery_rules_read_missing_values_as_not_measured():
    bare = [{"type": "step", "step": i} for i in range(30)] + [{"type": "epoch"}]
    assert fired_checks(bare, list(rules.RECOVERY_RULES)) == []
    assert fired_checks([], list(rules.RECOVERY_RULES)) == []
