"""breaklab.Monitor: layer discovery on several kinds of model (fast), the records it writes,
and the same bytes as trainer.py on trainer.py's own model and loop (slow: it trains)."""
from __future__ import annotations

from breaklab import METRICS_SCHEMA_VERSION

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_import_breaklab_stays_free_of_torch_and_monitor_is_lazy():
    code = ("import sys, breaklab; assert 'torch' not in sys.modules, 'import breaklab imported torch'; "
            "print(sorted(n for n in ('Monitor', 'TrainingStopped', 'EarlyWarnings') if n in dir(breaklab) "
            "or n in vars(breaklab)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"  # not imported yet: __getattr__ imports them when asked
    from breaklab import EarlyWarnings, Monitor, TrainingStopped
    from breaklab.monitor import Monitor as defined

    assert Monitor is defined and TrainingStopped.__name__ == "TrainingStopped" and EarlyWarnings
    with pytest.raises(ImportError):
        from breaklab import NoSuchThing  # noqa: F401


# -- layer discovery: one forward pass, no training ------------------------------------------

def _watched(model, x):
    import torch

    from breaklab.layers import ForwardWatch, discover

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    watch = ForwardWatch(model)
    out = model(x)
    watch.remove()
    return discover(model, optimizer, watch), out


def test_discovers_trainer_mlp_like_trainer_names_it():
    import torch

    from breaklab.trainer import MLP

    torch.manual_seed(0)
    layers, _ = _watched(MLP(), torch.randn(8, 784))
    assert layers.first == "fc1" and layers.first_weight == "fc1.weight"
    assert layers.activation == "input of drop"  # relu(bn1(fc1(x))), the tensor trainer.py calls hidden
    assert layers.last == "fc2"
    assert [n for n, _ in layers.batchnorms] == ["bn1"]
    assert [n for n, _ in layers.parameters] == [n for n, _ in MLP().named_parameters()]


def test_discovers_a_cnn_with_functional_activations_by_call_order():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16 * 4 * 4, 10)      # defined first, runs last
            self.conv1 = nn.Conv2d(1, 8, 3)
            self.bn = nn.BatchNorm2d(8)
            self.conv2 = nn.Conv2d(8, 16, 3)

        def forward(self, x):
            x = F.relu(self.bn(self.conv1(x)))
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            return self.fc(torch.flatten(x, 1))

    layers, _ = _watched(Net(), torch.randn(4, 1, 12, 12))
    assert layers.first == "conv1" and layers.unit_dim == 1
    assert layers.activation == "input of conv2"
    assert layers.last == "fc"
    assert layers.parameters[0][0] == "conv1.weight"  # the first layer's weight is written first
    assert [n for n, _ in layers.batchnorms] == ["bn"]


def test_discovers_a_sequential_mlp_and_skips_embeddings_and_frozen_layers():
    import torch
    from torch import nn

    seq = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 10))
    layers, _ = _watched(seq, torch.randn(4, 1, 28, 28))
    assert (layers.first, layers.activation, layers.last) == ("1", "input of 3", "4")

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 8)
            self.frozen = nn.Linear(8, 8)
            self.proj = nn.Linear(8, 16)
            self.head = nn.Linear(16, 20)

        def forward(self, tokens):
            return self.head(torch.tanh(self.proj(self.frozen(self.emb(tokens)))))

    model = Tagger()
    model.frozen.requires_grad_(False)
    from breaklab.layers import ForwardWatch, discover

    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad])
    watch = ForwardWatch(model)
    model(torch.randint(0, 20, (2, 5)))
    layers = discover(model, optimizer, watch)
    assert layers.first == "proj" and layers.unit_dim == -1
    assert layers.activation == "input of head"  # tanh is functional: the head receives it
    assert "frozen.weight" not in [n for n, _ in layers.parameters]
    assert layers.batchnorms == []


def test_falls_back_to_the_first_layers_output_when_the_next_module_has_other_units():
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(8, 24)
            self.proj = nn.Linear(8, 8)

        def forward(self, x):
            q, k, v = self.qkv(x).split(8, dim=-1)
            attn = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
            return self.proj(attn)

    layers, _ = _watched(Block(), torch.randn(2, 5, 8))
    assert layers.first == "qkv" and layers.activation == "output of qkv"


# -- the records -------------------------------------------------------------------------

def _tiny_loop(out, *, steps=6, warn=False, stop_on=None, lr=0.05):
    import torch
    import torch.nn.functional as F
    from torch import nn

    from breaklab import Monitor

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    x, y = torch.randn(64, 20), torch.randint(0, 10, (64,))
    with Monitor(model, optimizer, out=out, warn=warn, stop_on=stop_on) as mon:
        for _ in range(steps):
            optimizer.zero_grad()
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            mon.before_step()
            optimizer.step()
            mon.after_step(loss, outputs=logits, targets=y)
        mon.epoch(test_acc=0.5, test_loss=torch.tensor(1.5))
    return mon


def test_writes_the_metrics_schema_that_the_doctor_validates(tmp_path):
    from breaklab.doctor import load_run

    mon = _tiny_loop(tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[0] == {"type": "header", "schema": "breaklab.metrics", "version": METRICS_SCHEMA_VERSION}
    step = records[1]
    assert list(step)[:5] == ["type", "step", "epoch", "batch_size", "lr"]
    assert step["batch_size"] == 64 and step["lr"] == 0.05
    assert list(step["grad_norm_by_layer"]) == ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"]
    assert step["bn_running_var_mean"] != 1.0  # train mode moved BatchNorm's statistics
    epoch = records[-1]
    assert epoch["type"] == "epoch" and epoch["step"] == 6 and epoch["test_loss"] == 1.5
    assert 0 <= epoch["train_acc"] <= 1
    run = load_run(tmp_path)  # validates every field's type
    assert len(run.steps) == 6 and mon.step == 6
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["writer"] == "breaklab.Monitor" and meta["layers"]["first"] == "0"
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 6


def test_after_step_without_before_step_is_a_clear_error(tmp_path):
    import torch
    from torch import nn

    from breaklab import Monitor

    model = nn.Linear(4, 2)
    mon = Monitor(model, torch.optim.SGD(model.parameters(), lr=0.1), out=tmp_path)
    loss = model(torch.randn(3, 4)).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="before_step"):
        mon.after_step(loss)
    mon.close()


def test_stop_on_ends_a_with_block_quietly_and_warns_once(tmp_path, capsys):
    # lr 30 on this model: step 0 moves the weights by far more than 0.8% of their norm and the
    # loss passes 1.5x its start within a few steps: the doctor's huge_lr signature.
    mon = _tiny_loop(tmp_path, steps=40, warn=True, stop_on="huge_lr", lr=30.0)
    err = capsys.readouterr().err
    assert mon.stopped == "huge_lr" and mon.step < 40
    assert err.count("likely huge_lr") == 1
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["status"] == "stopped" and meta["stopped_by"] == "huge_lr"


def test_stop_on_rejects_an_unknown_name(tmp_path):
    import torch
    from torch import nn

    from breaklab import Monitor

    model = nn.Linear(4, 2)
    with pytest.raises(ValueError, match="unknown finding 'hugelr'"):
        Monitor(model, torch.optim.SGD(model.parameters(), lr=0.1), out=tmp_path, stop_on="hugelr")


# -- the same bytes as trainer.py ---------------------------------------------------------

def monitored_trainer_loop(out: Path, *, seed: int, epochs: int, amp: bool = False) -> None:
    """trainer.py's clean loop, written as a user would, measured by the Monitor instead."""
    import torch
    import torch.nn.functional as F

    from breaklab import Monitor
    from breaklab.canonical_setup import (configure_determinism, load_dataset, minibatches, seed_everything,
                                          steps_per_epoch)
    from breaklab.breaks.base import Break
    from breaklab.trainer import MLP, Config, evaluate, warmup_cosine

    cfg = Config()
    configure_determinism(cfg.threads)
    seed_everything(seed)
    data = load_dataset("sample")
    model = MLP(cfg.hidden, cfg.dropout)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    per_epoch = steps_per_epoch(len(data.y_train), cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.warmup_steps, epochs * per_epoch))
    scaler = torch.amp.GradScaler("cpu", enabled=amp)
    with Monitor(model, optimizer, out=out, scaler=scaler) as mon:
        for epoch in range(epochs):
            for idx in minibatches(len(data.y_train), cfg.batch_size, seed, epoch):
                model.train()
                x, y = data.x_train[idx], data.y_train[idx]
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast("cpu", dtype=torch.float16, enabled=amp):
                    logits = model(x)
                    loss = F.cross_entropy(logits, y)
                mon.before_backward()  # what .grad holds before backward, as trainer.py measures it
                scaler.scale(loss).backward()
                mon.before_clip()   # the gradient norm before clipping, as trainer.py measures it
                mon.before_step()   # unscales the gradients itself
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                mon.after_step(loss, outputs=logits, targets=y)
            test = evaluate(model, data.x_test, data.y_test, Break())
            mon.epoch(test_acc=test["acc"], test_loss=test["loss"], test_autograd_bytes=test["autograd_bytes"])


@pytest.mark.slow
@pytest.mark.parametrize("amp", [False, True], ids=["float32", "amp"])
def test_monitor_on_trainers_loop_writes_trainers_bytes(tmp_path, amp):
    from breaklab.trainer import Config, train

    train(Config(seed=3, epochs=1, amp=amp, out=str(tmp_path / "trainer"), quiet=True))
    monitored_trainer_loop(tmp_path / "monitor", seed=3, epochs=1, amp=amp)
    ours = (tmp_path / "monitor" / "metrics.jsonl").read_bytes()
    theirs = (tmp_path / "trainer" / "metrics.jsonl").read_bytes()
    assert ours.count(b"\n") == theirs.count(b"\n") == 1 + 63 + 1
    assert ours == theirs


@pytest.mark.slow
def test_bench_monitor_runs_every_arm_side_by_side():
    proc = subprocess.run([sys.executable, "benchmarks/bench_monitor.py", "--rounds", "1", "--mlp-steps", "10",
                           "--cnn-steps", "2", "--loader-steps", "2", "--compare-with", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:2]) for line in proc.stdout.splitlines()}
    for setup in ("MLP, SGD", "MLP, Adam", "CNN, Adadelta", "MLP, Adam, DataLoader"):
        for arm in ("bare", "+ Monitor", "+ Monitor at HEAD", "+ Monitor(warn=True)", "+ passes only (floor)"):
            assert (setup, arm) in rows, (setup, arm)
    assert "goal: Monitor within 1.3x of the bare MLP step" in proc.stdout
    assert "floor: the passes alone are" in proc.stdout
    assert "in examples/mnist_mlp.py's loop (DataLoader, per-image transforms): Monitor" in proc.stdout
