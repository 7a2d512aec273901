"""One seed in, bit-identical metrics and checkpoint out; resume gives the same final bytes."""
from __future__ import annotations

import pytest

import functools
import hashlib

from breaklab.run_summary import train_and_summarize
from breaklab.trainer import Config

# The figure's bytes are checked in tests/test_plots.py; here the files training writes.
train = functools.partial(train_and_summarize, figure=False)

pytestmark = pytest.mark.slow  # these tests train (the training tier)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(out, **kw):
    train(Config(out=str(out), quiet=True, epochs=2, **kw))
    return out


def test_same_seed_gives_identical_bytes(tmp_path):
    a = run(tmp_path / "a", seed=7)
    b = run(tmp_path / "b", seed=7)
    for name in ("metrics.jsonl", "checkpoint.pt", "checkpoint.pt.sha256", "summary.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_another_seed_gives_other_bytes(tmp_path):
    a = run(tmp_path / "a", seed=7)
    c = run(tmp_path / "c", seed=8)
    assert sha(a / "checkpoint.pt") != sha(c / "checkpoint.pt")
    assert (a / "metrics.jsonl").read_bytes() != (c / "metrics.jsonl").read_bytes()


def test_resume_gives_the_same_final_checkpoint_and_metrics(tmp_path):
    straight = tmp_path / "straight"
    train(Config(out=str(straight), quiet=True, epochs=3, seed=3))
    part = tmp_path / "part"
    train(Config(out=str(part), quiet=True, epochs=3, seed=3, stop_after=1))
    assert sha(part / "checkpoint.pt") != sha(straight / "checkpoint.pt")
    resumed = tmp_path / "resumed"
    train(Config(out=str(resumed), quiet=True, epochs=3, seed=3, resume=str(part / "checkpoint.pt")))
    assert sha(resumed / "checkpoint.pt") == sha(straight / "checkpoint.pt")
    assert (resumed / "metrics.jsonl").read_bytes() == (straight / "metrics.jsonl").read_bytes()


def test_resume_with_a_break_and_amp_is_also_exact(tmp_path):
    kw = dict(epochs=2, seed=5, break_name="label_permute", amp=True)
    straight, part, resumed = tmp_path / "s", tmp_path / "p", tmp_path / "r"
    train(Config(out=str(straight), quiet=True, **kw))
    train(Config(out=str(part), quiet=True, stop_after=1, **kw))
    train(Config(out=str(resumed), quiet=True, resume=str(part / "checkpoint.pt"), **kw))
    assert sha(resumed / "checkpoint.pt") == sha(straight / "checkpoint.pt")
