"""MetricLogger.records: the records of metrics.jsonl, as read_metrics parses the file, kept in
memory so that the end of a run need not read the file back."""
from __future__ import annotations

import pytest

from breaklab.metric_log import MetricLogger, read_metrics

STEP = {"type": "step", "step": 0, "epoch": 0, "batch_size": 64, "lr": 0.01, "loss": 2.302585092994046,
        "grad_norm": None, "grad_norm_by_layer": {"fc1.weight": 1e-40, "fc1.bias": -0.0},
        "step_skipped": False, "loss_finite": True, "amp_scale": 65536.0, "logit_min": -3.4028234663852886e38}


def log_run(path, keep_lines=None, steps=3):
    logger = MetricLogger(path, keep_lines=keep_lines, show_progress=False)
    for i in range(steps):
        logger.log_step({**STEP, "step": i, "loss": STEP["loss"] / (i + 1)})
    logger.log_epoch({"type": "epoch", "epoch": 0, "step": steps, "train_loss": 0.1 + 0.2, "test_acc": 1 / 3})
    logger.close()
    return logger


def test_records_equal_what_read_metrics_parses(tmp_path):
    logger = log_run(tmp_path / "metrics.jsonl")
    assert logger.records == read_metrics(tmp_path / "metrics.jsonl")
    assert [r["type"] for r in logger.records] == ["header", "step", "step", "step", "epoch"]


def test_records_of_a_resumed_run_include_the_kept_lines(tmp_path):
    first = tmp_path / "first.jsonl"
    log_run(first)
    kept = first.read_text().splitlines()
    resumed = log_run(tmp_path / "metrics.jsonl", keep_lines=kept, steps=2)
    assert resumed.records == read_metrics(tmp_path / "metrics.jsonl")
    assert len(resumed.records) == len(kept) + 3


@pytest.mark.slow
def test_a_training_run_keeps_the_records_it_wrote(tmp_path, monkeypatch):
    from breaklab import trainer

    loggers = []

    class Kept(MetricLogger):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            loggers.append(self)

    monkeypatch.setattr(trainer, "MetricLogger", Kept)
    for name, kw in (("amp", dict(amp=True, break_name="huge_lr")), ("plain", {})):
        trainer.train(trainer.Config(out=str(tmp_path / name), quiet=True, epochs=1, seed=3, **kw))
        assert loggers[-1].records == read_metrics(tmp_path / name / "metrics.jsonl")
