"""BreaklabCallback: breaklab's Monitor for a Lightning run (pip install 'breaklab[lightning]').

    from breaklab.integrations.lightning import BreaklabCallback

    trainer = L.Trainer(max_epochs=3, callbacks=[BreaklabCallback(out="runs/mine")])
    trainer.fit(model, train_loader, val_loader)
    # then: breaklab doctor runs/mine

Where Lightning's hooks fall in the step:

* `on_before_optimizer_step` is the Monitor's before_step: the gradients are complete and, with
  16-bit mixed precision, already unscaled by Lightning's GradScaler (which the Monitor is
  given, so the loss scale and skipped steps are recorded). Lightning clips gradients after
  this hook, so with gradient_clip_val the recorded norms are those before clipping;
* `on_train_batch_end` is after_step, once per optimizer step (with accumulate_grad_batches,
  the batches between two steps add nothing). The loss is what training_step returned. When
  training_step returns a dict with "logits" (or "outputs") and "targets", those are the
  outputs and targets; otherwise the targets are the batch's second element, and the outputs
  the model's last weight layer's, taken by the Monitor's forward hook;
* `on_train_epoch_end` writes the epoch record, with the validation accuracy and loss logged
  under `test_acc_key` / `test_loss_key` (default "val_acc" / "val_loss") when present;
* with stop_on, a finding that fires sets trainer.should_stop, and Lightning ends the run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    import lightning.pytorch as pl
except ImportError:  # the older package name
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
    except ImportError:
        raise ImportError("breaklab.integrations.lightning needs Lightning: pip install 'breaklab[lightning]'") from None

import torch

from breaklab.monitor import Monitor, TrainingStopped


class BreaklabCallback(pl.Callback):
    """Records breaklab's metrics.jsonl for a LightningModule's training (see the module doc)."""

    def __init__(self, out: str | Path = "runs/lightning", *, warn: bool = False, stop_on: Any = None,
                 test_acc_key: str = "val_acc", test_loss_key: str = "val_loss"):
        super().__init__()
        self.out, self.warn, self.stop_on = out, warn, stop_on
        self.test_acc_key, self.test_loss_key = test_acc_key, test_loss_key
        self.monitor: Monitor | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        if not trainer.optimizers:
            raise ValueError("BreaklabCallback: the LightningModule configured no optimizer")
        self.monitor = Monitor(pl_module, trainer.optimizers[0], out=self.out, scaler=_scaler_of(trainer),
                               warn=self.warn, stop_on=self.stop_on)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.monitor is not None and _unwrap(optimizer) is self.monitor.optimizer:
            self.monitor.before_step()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        mon = self.monitor
        if mon is None or mon._pending is None:  # no optimizer step since the last record
            return
        loss, logits, targets = _step_values(outputs, batch)
        if loss is None:
            return
        try:
            mon.after_step(loss, outputs=logits, targets=targets)
        except TrainingStopped:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.monitor is None or self.monitor._closed:
            return
        metrics = trainer.callback_metrics
        try:
            self.monitor.epoch(test_acc=metrics.get(self.test_acc_key), test_loss=metrics.get(self.test_loss_key))
        except TrainingStopped:
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        if self.monitor is not None:
            self.monitor.close("stopped" if self.monitor.stopped else "complete")

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self.monitor is not None:
            self.monitor.close("stopped")


def _scaler_of(trainer) -> Any:
    plugin = getattr(trainer, "precision_plugin", None) or getattr(trainer.strategy, "precision_plugin", None)
    return getattr(plugin, "scaler", None)


def _unwrap(optimizer) -> Any:
    return getattr(optimizer, "optimizer", optimizer)  # a LightningOptimizer wraps the torch one


def _step_values(outputs: Any, batch: Any) -> tuple[Any, Any, Any]:
    """(loss, logits, targets) from what training_step returned and the batch."""
    logits = targets = None
    if isinstance(outputs, dict):
        loss = outputs.get("loss")
        logits = outputs.get("logits", outputs.get("outputs"))
        targets = outputs.get("targets")
    else:
        loss = outputs
    if targets is None and isinstance(batch, (tuple, list)) and len(batch) >= 2 and isinstance(batch[1], torch.Tensor):
        targets = batch[1]
    if logits is not None and targets is not None and logits.shape[0] != targets.shape[0]:
        targets = None
    return loss, logits, targets
