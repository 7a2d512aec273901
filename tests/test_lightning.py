"""BreaklabCallback: a tiny LightningModule trained on the bundled sample on CPU, recorded by the
callback and diagnosed by the doctor (slow: it trains)."""
from __future__ import annotations

import json

import pytest

pl = pytest.importorskip("lightning.pytorch", reason="Lightning is not installed (pip install 'breaklab[lightning]')")


def make_module(lr: float):
    import torch
    import torch.nn.functional as F
    from torch import nn

    class LitMLP(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(784, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            logits = self(x)
            self.log("val_loss", F.cross_entropy(logits, y))
            self.log("val_acc", (logits.argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=lr, momentum=0.9)

    return LitMLP()


def fit(out, lr: float, **callback_options):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from breaklab.canonical_setup import load_dataset
    from breaklab.integrations.lightning import BreaklabCallback

    torch.manual_seed(0)
    data = load_dataset("sample")
    train = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=64, shuffle=True)
    val = DataLoader(TensorDataset(data.x_test, data.y_test), batch_size=500)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[BreaklabCallback(out=out, **callback_options)])
    trainer.fit(make_module(lr), train, val)
    return trainer


@pytest.mark.slow
def test_lightning_run_is_recorded_and_diagnosed(tmp_path):
    from breaklab.doctor import diagnose, load_run

    fit(tmp_path / "clean", lr=0.05)
    run = load_run(tmp_path / "clean")
    assert len(run.steps) == 63 and len(run.epochs) == 1
    assert run.epochs[0]["test_acc"] > 0.8  # the validation accuracy Lightning logged
    assert run.steps[0]["bn_running_var_mean"] != 1.0 and run.steps[0]["batch_size"] == 64
    assert diagnose(run).verdict == "healthy"
    meta = json.loads((tmp_path / "clean" / "meta.json").read_text())
    assert meta["layers"]["first"] == "net.0" and meta["status"] == "complete"

    trainer = fit(tmp_path / "huge_lr", lr=5.0, stop_on="huge_lr")  # x100
    run = load_run(tmp_path / "huge_lr")
    assert diagnose(run).verdict == "huge_lr"
    assert trainer.should_stop and len(run.steps) < 63  # stop_on ended the run early
