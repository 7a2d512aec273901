"""Monitor: breaklab's measurements and doctor for anyone's training loop, in a few added lines.

    from breaklab import Monitor

    mon = Monitor(model, optimizer, out="runs/mine", scaler=scaler)   # scaler optional
    for x, y in loader:
        ...
        mon.before_backward()          # optional, after zero_grad: what .grad still holds
        loss.backward()
        mon.before_clip()              # optional: the gradient norm before any clipping
        mon.before_step()              # gradients as the optimizer will see them
        optimizer.step()
        mon.after_step(loss, outputs=logits, targets=y)
    mon.epoch(test_acc=acc, test_loss=test_loss)
    mon.close()

It writes the metrics.jsonl that trainer.py writes (docs/METRICS.md: the same schema, the same
writer, breaklab.metric_log.MetricLogger, the same statistics, breaklab.diagnostics), so
`breaklab doctor runs/mine`, `breaklab plot` and `breaklab compare` read it unchanged. On
trainer.py's own model and loop the file is byte for byte the one trainer.py writes.

What it measures is found, not configured (breaklab/layers.py): the first forward pass is
watched to find the first and last weight layers and where the first layer's activations are,
then two forward hooks keep those tensors for each step; every BatchNorm; the parameters the
optimizer holds. With `warn=True` the doctor's detectors run as the records are written and
print one line the moment one fires (breaklab/early_warnings.py); `stop_on=` ends the run by
raising TrainingStopped from after_step (a `with Monitor(...)` block ends quietly there).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from breaklab import METRICS_SCHEMA_VERSION, __version__
from breaklab.diagnostics import StepDiagnostics, finite_or_none, forward_float_max
from breaklab.early_warnings import EarlyWarnings, parse_stop_on
from breaklab.graph_memory import LiveGraphs
from breaklab.layers import ForwardWatch, Layers, discover
from breaklab.metric_log import MetricLogger


class TrainingStopped(Exception):
    """Raised by Monitor.after_step when a finding named in stop_on fires."""


class Monitor:
    """Records breaklab's metrics for a training loop you wrote. See the module docstring.

    model, optimizer: what you train and what updates it (only the parameters the optimizer
        holds are measured).
    out: the folder for metrics.jsonl, meta.json and summary.json.
    scaler: your torch.amp.GradScaler, when you train with AMP: gradients are measured unscaled
        (before_step calls scaler.unscale_(optimizer) unless you already did) and the loss scale
        and skipped steps are recorded.
    warn: print a line the moment one of the doctor's detectors fires (once per finding).
    stop_on: stop the run when a finding fires: True (any), or names such as "huge_lr",
        "missing_zero_grad", "nonfinite_loss" (after_step raises TrainingStopped).

    For a loop that manages its own run folder (trainer.py): `logger` writes the records
    instead of a new MetricLogger (one with a resumed run's records and a progress bar),
    `start_step` / `start_epoch` continue a resumed run's count, and `run_files=False` leaves
    meta.json and summary.json to the caller.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, out: str | Path = "runs/monitor",
                 scaler: Any = None, warn: bool = False, stop_on: Any = None, *,
                 logger: MetricLogger | None = None, start_step: int = 0, start_epoch: int = 0,
                 run_files: bool = True):
        if not isinstance(model, nn.Module):
            raise TypeError(f"Monitor(model, ...): model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"Monitor(model, optimizer, ...): optimizer must be a torch.optim.Optimizer, "
                            f"got {type(optimizer).__name__}")
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.run_files = run_files
        if run_files:
            (self.out / "summary.json").unlink(missing_ok=True)  # never beside another run's metrics
        self.warn = warn
        self.early = EarlyWarnings(stop_on) if (warn or parse_stop_on(stop_on)) else None
        self.logger = logger if logger is not None else MetricLogger(self.out / "metrics.jsonl", show_progress=False)
        self.layers: Layers | None = None
        self._watch: ForwardWatch | None = ForwardWatch(model)
        self._diag: StepDiagnostics | None = None
        self._hooks: list[Any] = []
        self._last_hook: Any = None  # only needed while after_step is called without outputs
        self._hidden: torch.Tensor | None = None
        self._last_output: torch.Tensor | None = None
        self.step, self.epoch_index = start_step, start_epoch
        self._pending: dict[str, Any] | None = None  # what before_step saw, for after_step
        self._losses: list[float | None] = []
        self._predictions: list[torch.Tensor] = []  # compared with the targets once, at epoch()
        self._targets: list[torch.Tensor] = []
        self._closed = False
        self.stopped: str | None = None
        # The range of the dtype the last training forward pass ran in, seen from inside that pass.
        self._forward_max: float | None = None
        self._device_type: str | None = None  # the model's, at its first training forward pass
        self._forward_hook = model.register_forward_hook(self._keep_forward_dtype)

    # -- the calls a training loop makes ------------------------------------------------------
    def before_backward(self) -> None:
        """Optional: call after optimizer.zero_grad() and before loss.backward(). It records what
        .grad still holds then (grad_norm_carried: 0 when the loop clears the gradients; null in
        the steps where it was not called)."""
        self._check_open()
        if self._diag is None:
            self._start()
        self._diag.before_backward()

    def before_clip(self) -> None:
        """Optional: call after loss.backward() and before clipping the gradients (and before
        scaler.unscale_). It records the gradient norm before clipping (grad_norm_pre_clip;
        null in the steps where it was not called), which growing gradients are judged by:
        clipping caps grad_norm."""
        self._check_open()
        if self._diag is None:
            self._start()
        self._diag.before_clip()

    def before_step(self) -> None:
        """Call after loss.backward() (and after any clipping), right before optimizer.step()."""
        self._check_open()
        if self._diag is None:
            self._start()
        scaler = self.scaler
        scale = 1.0
        if scaler is not None and scaler.is_enabled():
            _unscale_once(scaler, self.optimizer)
            scale = scaler.get_scale()
        self._pending = {"lr": float(self.optimizer.param_groups[0]["lr"]), "scale": scale}
        self._diag.before_step()

    def after_step(self, loss: torch.Tensor, outputs: torch.Tensor | None = None,
                   targets: torch.Tensor | None = None) -> dict[str, Any]:
        """Call after optimizer.step() (and scaler.update()). `outputs`: what the loss was
        computed from (logits); `targets`: the labels. Both are optional; without `outputs` the
        last weight layer's output is used, without `targets` there is no train accuracy.
        Returns the step's record."""
        self._check_open()
        if self._pending is None:
            raise RuntimeError("Monitor.after_step() without before_step(): call mon.before_step() after "
                               "loss.backward() and before optimizer.step()")
        pending, self._pending = self._pending, None
        if outputs is not None and self._last_hook is not None:  # the loop passes its outputs
            self._last_hook.remove()
            self._last_hook = None
        scaler = self.scaler
        skipped = bool(scaler is not None and scaler.is_enabled() and scaler.get_scale() < pending["scale"])
        if not isinstance(loss, torch.Tensor):
            loss = torch.tensor(float(loss))
        with torch.no_grad():
            seen_outputs = outputs if outputs is not None else self._last_output
            classes_dim = _classes_dim(seen_outputs, targets)
            record = self._diag.after_step(loss=loss.detach(), outputs=seen_outputs, hidden=self._hidden,
                                           scale=pending["scale"], step_skipped=skipped, classes_dim=classes_dim,
                                           forward_max=self._forward_max,
                                           scaler_enabled=bool(scaler is not None and scaler.is_enabled()))
            batch = _batch_size(targets, seen_outputs, self._hidden)
            self._count_correct(seen_outputs, targets, classes_dim)
        self._hidden = self._last_output = None
        full = {"type": "step", "step": self.step, "epoch": self.epoch_index, "batch_size": batch,
                "lr": pending["lr"], **record,
                "loss_graphs_alive": self._graphs.earlier_alive(loss)}  # graphs of earlier steps still held
        self.logger.log_step(full)
        self._losses.append(record["loss"])
        self.step += 1
        self._observe(full)
        return full

    def epoch(self, test_acc: float | None = None, test_loss: float | None = None, *,
              train_loss: float | None = None, train_acc: float | None = None, **extra: float) -> dict[str, Any]:
        """Call at the end of each epoch, with your evaluation's accuracy and loss if you have
        them. The train loss and accuracy are the epoch's own (mean step loss; accuracy against
        the targets passed to after_step) unless given. Extra numbers are written after the
        standard fields."""
        self._check_open()
        clash = sorted(set(extra) & {"type", "epoch", "step"})
        if clash:
            raise TypeError(f"Monitor.epoch(): {', '.join(clash)} are counted by the Monitor; give your "
                            f"numbers other names")
        if train_loss is None and self._losses:
            train_loss = None if None in self._losses else sum(self._losses) / len(self._losses)
        if train_acc is None and self._predictions:
            correct = (torch.cat(self._predictions) == torch.cat(self._targets)).sum().item()
            train_acc = correct / sum(t.numel() for t in self._targets)
        record = finite_or_none({
            "type": "epoch", "epoch": self.epoch_index, "step": self.step,
            "train_loss": _number(train_loss), "train_acc": _number(train_acc),
            "test_loss": _number(test_loss), "test_acc": _number(test_acc),
            **{k: _number(v) for k, v in extra.items()}})
        self.logger.log_epoch(record)
        self.epoch_index += 1
        self._losses, self._predictions, self._targets = [], [], []
        self._observe(record)
        return record

    def close(self, status: str = "complete") -> None:
        """Finish the files: an epoch record for steps since the last epoch() call, then
        summary.json (what the metrics show) and meta.json. Removes the hooks."""
        if self._closed:
            return
        if self._losses:
            self.epoch()
        self._closed = True
        self.logger.close()
        self._remove_hooks()
        if self._watch is not None:
            self._watch.remove()
            self._watch = None
        if not self.run_files:
            return
        from breaklab.atomic import atomic_write_text
        from breaklab.metric_log import read_metrics
        from breaklab.symptoms import summarize

        summary = summarize(read_metrics(self.out / "metrics.jsonl"))
        atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=2) + "\n")
        atomic_write_text(self.out / "meta.json", json.dumps(self._meta(status), indent=2) + "\n")

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close("stopped" if exc_type is not None else "complete")
        return exc_type is not None and issubclass(exc_type, TrainingStopped)

    # -- plumbing ---------------------------------------------------------------------------
    def _start(self) -> None:
        """At the first before_step: name the layers from the forward pass just watched, build
        the statistics, and replace the watch by two hooks."""
        watch, self._watch = self._watch, None
        self.layers = layers = discover(self.model, self.optimizer, watch)
        if watch is not None:
            io = watch.io
            if layers.activation_module is not None:
                args, output = io.get(id(layers.activation_module), (None, None))
                self._hidden = args if layers.activation_is_input else output
            if layers.last_module is not None:
                self._last_output = io.get(id(layers.last_module), (None, None))[1]
            watch.remove()
        for name in ("_hidden", "_last_output"):
            if not isinstance(getattr(self, name), torch.Tensor):
                setattr(self, name, None)
        if not layers.parameters:
            raise ValueError("Monitor: the optimizer holds none of the model's parameters")
        self._diag = StepDiagnostics(self.model, parameters=layers.parameters, first_layer=layers.first_weight,
                                     batchnorms=[m for _, m in layers.batchnorms], unit_dim=layers.unit_dim)
        self._graphs = LiveGraphs()
        if layers.activation_module is not None:
            self._hooks.append(layers.activation_module.register_forward_hook(
                self._keep_input if layers.activation_is_input else self._keep_output))
        if layers.last_module is not None:
            self._last_hook = layers.last_module.register_forward_hook(self._keep_last)
        if self.warn:
            d = layers.describe()
            print(f"breaklab monitor: first layer {d['first']} (activations: {d['activations']}), "
                  f"last layer {d['last']}, {len(d['batchnorms'])} BatchNorm, {len(d['parameters'])} "
                  f"parameter tensors -> {self.out / 'metrics.jsonl'}", file=sys.stderr, flush=True)

    def _keep_forward_dtype(self, module, args, output) -> None:
        if torch.is_grad_enabled():
            if self._device_type is None:  # looked up once: it cost more than the rest of the hook
                param = next(module.parameters(), None)
                self._device_type = param.device.type if param is not None else "cpu"
            self._forward_max = forward_float_max(self._device_type)

    def _keep_input(self, module, args, output) -> None:
        if torch.is_grad_enabled() and args and isinstance(args[0], torch.Tensor):
            self._hidden = args[0]

    def _keep_output(self, module, args, output) -> None:
        if torch.is_grad_enabled() and isinstance(output, torch.Tensor):
            self._hidden = output

    def _keep_last(self, module, args, output) -> None:
        if torch.is_grad_enabled() and isinstance(output, torch.Tensor):
            self._last_output = output

    def _count_correct(self, outputs: torch.Tensor | None, targets: torch.Tensor | None, classes_dim: int) -> None:
        """Keep the step's predicted classes and its targets; epoch() compares them all at once
        (one small kernel a step, as trainer.py does, instead of a comparison and a sum)."""
        if outputs is None or targets is None or targets.is_floating_point():
            return
        if outputs.dim() != targets.dim() + 1:
            return
        self._predictions.append(outputs.detach().argmax(dim=classes_dim).reshape(-1))
        self._targets.append(targets.detach().reshape(-1))

    def _observe(self, record: dict[str, Any]) -> None:
        if self.early is None:
            return
        for line in self.early.observe(record):
            if self.warn:
                print(f"breaklab: {line}", file=sys.stderr, flush=True)
        stop = self.early.stop
        if stop is not None and self.stopped is None:
            self.stopped = stop.name
            raise TrainingStopped(f"stopped at step {stop.step}: {stop.line}")

    def _remove_hooks(self) -> None:
        for h in self._hooks + ([self._last_hook] if self._last_hook is not None else []):
            h.remove()
        self._hooks, self._last_hook = [], None
        self._forward_hook.remove()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("Monitor is closed: create a new Monitor for another run")

    def _meta(self, status: str) -> dict[str, Any]:
        param = next(self.model.parameters(), None)
        return {
            "breaklab": __version__,
            "metrics_schema": METRICS_SCHEMA_VERSION,
            "writer": "breaklab.Monitor",
            "status": status,
            "stopped_by": self.stopped,
            "model": type(self.model).__name__,
            "optimizer": type(self.optimizer).__name__,
            "amp": bool(self.scaler is not None and self.scaler.is_enabled()),
            "device": str(param.device) if param is not None else None,
            "steps": self.step,
            "epochs": self.epoch_index,
            "layers": self.layers.describe() if self.layers is not None else None,
            "torch": torch.__version__,
        }


def _unscale_once(scaler: Any, optimizer: torch.optim.Optimizer) -> None:
    """scaler.unscale_(optimizer) unless the loop already did (to clip): unscaling twice is
    an error, and scaler.step() does not unscale again once it has been done."""
    try:
        from torch.amp.grad_scaler import OptState

        if scaler._per_optimizer_states[id(optimizer)]["stage"] is not OptState.READY:
            return
    except (ImportError, AttributeError, KeyError):
        pass
    try:
        scaler.unscale_(optimizer)
    except RuntimeError as e:
        if "already been called" not in str(e):
            raise


def _classes_dim(outputs: torch.Tensor | None, targets: torch.Tensor | None) -> int:
    """Where the classes are in `outputs`: dimension 1 for (batch, classes) and for
    (batch, classes, ...) against (batch, ...) targets; the last one for (batch, time, classes)."""
    if outputs is None or outputs.dim() < 2:
        return -1 if outputs is not None else 1
    if outputs.dim() == 2:
        return 1
    if targets is not None and outputs.dim() == targets.dim() + 1 and outputs.shape[:-1] == targets.shape:
        return outputs.dim() - 1
    if targets is not None and outputs.dim() == targets.dim() + 1:
        return 1
    return outputs.dim() - 1


def _batch_size(targets: torch.Tensor | None, outputs: torch.Tensor | None, hidden: torch.Tensor | None) -> int:
    for t in (targets, outputs, hidden):
        if isinstance(t, torch.Tensor) and t.dim() >= 1:
            return int(t.shape[0])
    return 0


def _number(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        return float(v.detach().float().item())
    return float(v) if not isinstance(v, int) or isinstance(v, bool) else v
