"""breaklab's training loop: a small MLP on MNIST, with one optional bug switched on.

Read it top to bottom:
  1. Config         every option, with what it does
  2. Model          784 -> 256 -> BatchNorm -> ReLU -> Dropout -> 10, He init; evaluate()
  3. train_step()   one step of training, the whole of it in one block. Each place a bug can
                    hook in is marked  # BREAK HOOK: name
  4. train()        the loop around it: data, schedule, measurements, checkpoints
  5. Plumbing       provenance, resume. `python trainer.py --break huge_lr` runs the command
                    line of breaklab/commands/train.py (also `breaklab train`)

train_step() is the only training step in breaklab: `breaklab triage` runs its experiments
through it too (one batch, other learning rates, float32), never through a copy.

The bugs live in breaks/: each is a subclass of breaks.base.Break that overrides one hook.
The fixed plumbing (seeding, data, checkpoints) lives in canonical_setup.py.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ModuleNotFoundError as e:  # run with a Python that lacks the project's environment
    if __name__ != "__main__":
        raise
    sys.exit(f"error: {e.name} is not installed for {sys.executable}: activate the environment "
             f"(. .venv/bin/activate) or install it (pip install -e .)")

from breaklab import METRICS_SCHEMA_VERSION, __version__
from breaklab.breaks import MYSTERY, Break, get_break, mystery_record
from breaklab.canonical_setup import (SetupError, atomic_write_text, configure_determinism,
                                      environment_info, git_commit, load_checkpoint, load_dataset,
                                      rng_state, save_checkpoint, seed_everything, steps_per_epoch)
from breaklab.config import TRAINING_FIELDS, Config
from breaklab.diagnostics import StepDiagnostics, finite_or_none, forward_float_max
from breaklab.graph_memory import LiveGraphs, SavedTensorBytes
from breaklab.metric_log import MetricLogger


# ============================================================================
# 1. Config
# ============================================================================

# Every option of a run, one dataclass with a line of help per field, in breaklab/config.py (so
# that `breaklab train --help` starts without importing torch). The fields a checkpoint fixes on
# --resume are TRAINING_FIELDS.


# ============================================================================
# 2. Model
# ============================================================================

class MLP(nn.Module):
    """784 -> hidden -> BatchNorm -> ReLU -> Dropout -> 10. BatchNorm and Dropout are there so that
    train/eval mode matters."""

    def __init__(self, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, hidden)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, 10)
        # He init for the hidden layer (suited to ReLU). The output layer starts small, so every
        # class starts equally likely and the initial loss is ln(10) = 2.30: a first sanity check.
        nn.init.kaiming_normal_(self.fc1.weight, nonlinearity="relu")
        nn.init.normal_(self.fc2.weight, std=0.01)
        nn.init.zeros_(self.fc1.bias)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor, return_hidden: bool = False):
        hidden = F.relu(self.bn1(self.fc1(x)))
        logits = self.fc2(self.drop(hidden))
        return (logits, hidden) if return_hidden else logits


def warmup_cosine(warmup_steps: int, total_steps: int):
    """Learning-rate factor per step: linear warmup to 1, then cosine decay to 0."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, brk: Break | None = None) -> dict[str, float]:
    """Loss and accuracy on (x, y) in evaluation mode, without autograd, with the clean
    criterion; and the bytes autograd saved for a backward pass meanwhile (none under no_grad).
    `brk` is the run's break (its evaluation hooks); the clean evaluation without one."""
    brk = Break() if brk is None else brk
    brk.eval_mode(model)                                     # BREAK HOOK: eval_in_train_mode
    with brk.eval_grad_mode(), SavedTensorBytes() as saved:  # BREAK HOOK: eval_with_grad
        logits = torch.cat([model(xb) for xb in x.split(1000)]).float()
        loss = F.cross_entropy(logits, y)
        acc = (brk.predictions(logits) == y).float().mean()  # BREAK HOOK: acc_broadcast
    loss_v, acc_v = torch.stack([loss, acc]).tolist()
    return {"loss": loss_v, "acc": acc_v, "autograd_bytes": saved.bytes}


# ============================================================================
# 3. One training step: the whole of it in one block
# ============================================================================

@dataclass
class Training:
    """What a training step works on. Built by `make_training`, for train() and for every
    experiment of `breaklab triage`, so that both run the same step."""

    model: MLP
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    brk: Break
    amp: bool            # float16 autocast on
    device_type: str     # "cpu" or "cuda"
    clip_grad: float = 0.0
    micro_batches: int = 1  # gradient accumulation: micro-batches per optimizer step


def make_training(cfg: Config, brk: Break, *, lr: float | None = None, dropout: float | None = None,
                  weight_decay: float | None = None, amp: bool | None = None) -> Training:
    """Model, optimizer and GradScaler as the run builds them. The keyword arguments override the
    configuration for an experiment (triage's one-batch overfit turns dropout off, its sweep
    tries other learning rates, its float32 check turns autocast off)."""
    amp = (cfg.amp or brk.needs_amp) if amp is None else amp  # amp_no_scaling only exists with autocast on
    model = MLP(cfg.hidden, cfg.dropout if dropout is None else dropout).to(cfg.device)
    brk.init_weights(model)                                  # BREAK HOOK: zero_init
    params = brk.trained_parameters(model)                   # BREAK HOOK: frozen_layer, layer_not_in_optimizer
    lr = brk.learning_rate(cfg.lr if lr is None else lr)     # BREAK HOOK: huge_lr, tiny_lr
    optimizer = torch.optim.SGD(params, lr=lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay if weight_decay is None else weight_decay)
    scaler = torch.amp.GradScaler(cfg.device, enabled=brk.use_grad_scaler(amp))  # BREAK HOOK: amp_no_scaling
    return Training(model, optimizer, scaler, brk, amp, torch.device(cfg.device).type,
                    cfg.clip_grad or brk.needs_clip_grad, brk.accumulation_steps)


def start_training(cfg: Config, brk: Break, total_steps: int,
                   ckpt: dict[str, Any] | None = None) -> tuple[Training, Any]:
    """What a fresh process builds: the Training and its learning-rate schedule (linear warmup,
    then cosine decay, per step). From a checkpoint (a resumed run), their saved state and every
    RNG's saved state are restored."""
    training = make_training(cfg, brk)
    schedule = warmup_cosine(brk.warmup_steps(cfg.warmup_steps), total_steps)  # BREAK HOOK: no_warmup
    scheduler = torch.optim.lr_scheduler.LambdaLR(training.optimizer, schedule)
    if ckpt is not None:
        training.model.load_state_dict(ckpt["model"])
        brk.load_optimizer_state(training.optimizer, ckpt["optimizer"])  # BREAK HOOK: resume_without_optimizer_state
        scheduler.load_state_dict(ckpt["scheduler"])
        training.scaler.load_state_dict(ckpt["scaler"])
        brk.restore_rng_state(ckpt["rng"])                   # BREAK HOOK: resume_without_rng_state
    return training, scheduler


@dataclass
class StepOutput:
    loss: torch.Tensor      # the loss the step minimised (before scaling)
    outputs: torch.Tensor   # what the loss was computed on (logits, unless a break changed them)
    logits: torch.Tensor    # the model's raw scores
    hidden: torch.Tensor    # the hidden layer's activations
    targets: torch.Tensor   # the labels the loss saw
    scale: float            # the GradScaler's loss scale of this step (1.0 when scaling is off)
    skipped: bool           # the scaler skipped the update (inf/NaN gradients)
    forward_max: float | None = None  # the largest number of the dtype the forward pass ran in


def train_step(t: Training, x: torch.Tensor, y: torch.Tensor, step: int,
               before_update: Callable[[], None] | None = None, update: bool = True,
               before_clip: Callable[[], None] | None = None,
               before_backward: Callable[[], None] | None = None) -> StepOutput:
    """One step of training on the batch (x, y). `before_update` runs once the gradients are the
    ones the optimizer will apply (unscaled and clipped), `before_clip` once backward is done,
    before anything touches the gradients, `before_backward` before the first backward pass:
    measurements hook in there. With update=False the step stops before the optimizer: the
    gradients are left in .grad."""
    t.brk.set_mode(t.model)                                  # BREAK HOOK: eval_mode, train_mode_not_restored
    y = t.brk.targets(y, step)                               # BREAK HOOK: label_permute, label_shift
    t.brk.zero_grad(t.optimizer)                             # BREAK HOOK: missing_zero_grad
    if before_backward is not None:
        before_backward()

    # The batch goes through in t.micro_batches parts whose gradients add up in .grad before the
    # one update (gradient accumulation). By default there is one part: the whole batch.
    parts = []
    for xs, ys in zip(x.chunk(t.micro_batches), y.chunk(t.micro_batches)):
        with torch.autocast(t.device_type, dtype=torch.float16, enabled=t.amp):
            logits, hidden = t.model(xs, return_hidden=True)
            outputs = t.brk.outputs(logits)                  # BREAK HOOK: double_softmax and others
            loss = t.brk.loss(outputs, ys)                   # BREAK HOOK: loss_sum and others
            loss = t.brk.micro_batch_loss(loss, t.micro_batches)  # BREAK HOOK: accumulation_not_divided
            forward_max = forward_float_max(t.device_type)   # measured: the range the forward pass ran in
        t.scaler.scale(loss).backward()    # scaling is off (a no-op) without AMP
        parts.append((loss, outputs, logits, hidden))
    loss, outputs, logits, hidden = parts[0] if len(parts) == 1 else _joined(parts)

    if before_clip is not None:
        before_clip()
    t.brk.unscale_and_clip(t.scaler, t.optimizer, t.model, t.clip_grad)  # BREAK HOOK: clip_before_unscale
    if before_update is not None:
        before_update()
    scale = t.scaler.get_scale() if t.scaler.is_enabled() else 1.0
    skipped = False
    if update:
        t.brk.optimizer_step(t.scaler, t.optimizer)          # BREAK HOOK: double_step_with_scaler
        t.scaler.update()
        skipped = t.scaler.is_enabled() and t.scaler.get_scale() < scale
    return StepOutput(loss, outputs, logits, hidden, y, scale, skipped, forward_max)


def _joined(parts: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """The micro-batches of one step as one batch: the sum of their losses (what the step
    minimised), their outputs, logits and hidden activations stacked in batch order."""
    losses, outputs, logits, hidden = zip(*parts)
    return torch.stack(losses).sum(), torch.cat(outputs), torch.cat(logits), torch.cat(hidden)


# ============================================================================
# 4. The training loop
# ============================================================================

def train(cfg: Config, observer: Callable[[dict[str, Any]], list[str]] | None = None) -> dict[str, Any]:
    """Run (or resume) one training run and write metrics.jsonl, checkpoint.pt and meta.json into
    cfg.out. The summary and the figure are the measurement layer's (breaklab.run_summary).
    `observer` sees every metrics record as it is written and returns lines to print (the
    command line passes the early warnings)."""
    brk = get_break(cfg.break_name, seed=cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if not cfg.resume:  # a fresh run never leaves an earlier run's checkpoint beside its metrics
        for stale in ("checkpoint.pt.sha256", "checkpoint.pt", "summary.json"):
            (out / stale).unlink(missing_ok=True)
    t_start = time.perf_counter()

    # --- Seeding and determinism: one visible block ---------------------------------------
    configure_determinism(cfg.threads)
    seed_everything(cfg.seed)

    # --- Data, model, optimizer, schedule, scaler --------------------------------------------
    data = load_dataset(cfg.data, cfg.data_dir, cfg.download, cfg.device)
    x_train, y_train = brk.training_data(data)               # BREAK HOOK: test_leak, nan_inputs
    x_test, y_test = brk.test_data(data)                     # BREAK HOOK: raw_test_inputs
    n_train = len(y_train)
    per_epoch = 2 if cfg.dry_run else steps_per_epoch(n_train, cfg.batch_size)
    total_steps = cfg.epochs * per_epoch
    resume = load_checkpoint(cfg.resume) if cfg.resume else None
    training, scheduler = start_training(cfg, brk, total_steps, resume)

    start_epoch, step, keep_lines = 0, 0, None
    if resume:
        start_epoch, step = resume["epoch"], resume["step"]
        keep_lines = _metrics_before(Path(cfg.resume).with_name("metrics.jsonl"), start_epoch)

    meta = _meta(cfg, training.amp, data.identity)
    atomic_write_text(out / "meta.json", json.dumps({**meta, "status": "running"}, indent=2) + "\n")
    logger = MetricLogger(out / "metrics.jsonl", keep_lines=keep_lines,
                          show_progress=not cfg.quiet and sys.stderr.isatty(), observer=observer)
    diag = StepDiagnostics(training.model)
    graphs = LiveGraphs()  # earlier steps' autograd graphs the loop still holds: memory it keeps
    # A step the GradScaler skips (inf gradients) makes the scheduler warn; that is expected.
    warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)`")

    epochs_run, t_loop = 0, time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        if epoch == brk.restart_after and epoch > start_epoch:
            # The run goes on as a resumed process would: fresh seeding, a fresh model, optimizer
            # and schedule, and the state of the checkpoint it has just written.
            seed_everything(cfg.seed)
            training, scheduler = start_training(cfg, brk, total_steps, load_checkpoint(out / "checkpoint.pt"))
            diag = StepDiagnostics(training.model)
        running_loss, seen, correct, first_step = 0.0, 0, 0, step
        batches = brk.batch_order(n_train, cfg.batch_size, cfg.seed, epoch)  # BREAK HOOK: no_shuffle
        for i, idx in enumerate(logger.progress(batches, total=per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}")):
            if i == per_epoch:
                break
            idx = idx.to(cfg.device)
            result = train_step(training, x_train[idx], y_train[idx], step, before_update=diag.before_step,
                                before_clip=diag.before_clip, before_backward=diag.before_backward)
            lr = scheduler.get_last_lr()[0]
            brk.scheduler_step(scheduler)     # BREAK HOOK: scheduler_not_stepped (the schedule moves per step)

            record = diag.after_step(loss=result.loss, outputs=result.outputs, hidden=result.hidden,
                                     scale=result.scale, step_skipped=result.skipped,
                                     forward_max=result.forward_max, scaler_enabled=training.scaler.is_enabled())
            logger.log_step({"type": "step", "step": step, "epoch": epoch, "batch_size": len(idx),
                             "lr": lr, **record, "loss_graphs_alive": graphs.earlier_alive(result.loss)})
            running_loss = brk.running_loss(running_loss, result.loss)  # BREAK HOOK: loss_kept
            correct += (brk.predictions(result.outputs) == result.targets).sum()  # BREAK HOOK: acc_broadcast
            seen += len(idx)
            step += 1

        # --- End of epoch: evaluate, log, checkpoint ------------------------------------------
        test = evaluate(training.model, x_test, y_test, brk)
        logger.log_epoch(finite_or_none({
            "type": "epoch", "epoch": epoch, "step": step,
            "train_loss": float(running_loss) / (step - first_step), "train_acc": int(correct) / seen,
            "test_loss": test["loss"], "test_acc": test["acc"], "test_autograd_bytes": test["autograd_bytes"]}))
        checkpoint_sha = save_checkpoint(out / "checkpoint.pt", {
            "model": training.model.state_dict(), "optimizer": training.optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": training.scaler.state_dict(),
            "epoch": epoch + 1, "step": step, "rng": rng_state(),
            "config": {k: getattr(cfg, k) for k in TRAINING_FIELDS},
            "metrics_schema": METRICS_SCHEMA_VERSION, "breaklab": __version__,
        })
        epochs_run += 1
        if cfg.stop_after is not None and epochs_run >= cfg.stop_after:
            break
    logger.close()
    loop_seconds = time.perf_counter() - t_loop

    status = "complete" if epoch + 1 == cfg.epochs else "stopped"
    atomic_write_text(out / "meta.json", json.dumps(
        {**meta, "status": status, "checkpoint_sha256": checkpoint_sha}, indent=2) + "\n")
    # Timings are returned, never written: they are not reproducible.
    return {"epochs_done": epoch + 1, "epochs_total": cfg.epochs, "checkpoint_sha256": checkpoint_sha,
            "mystery": cfg.break_name == MYSTERY, "records": logger.records,  # what metrics.jsonl holds
            "seconds": loop_seconds, "started": t_start}


# ============================================================================
# Plumbing: provenance and resume (the command line is breaklab/commands/train.py)
# ============================================================================

def _meta(cfg: Config, amp: bool, dataset: dict[str, Any]) -> dict[str, Any]:
    resumed = None
    if cfg.resume:
        sha_file = Path(cfg.resume).with_name(Path(cfg.resume).name + ".sha256")
        resumed = {"checkpoint": os.path.abspath(cfg.resume),
                   "sha256": sha_file.read_text().split()[0] if sha_file.is_file() else None}
    return {
        "breaklab": __version__,
        "metrics_schema": METRICS_SCHEMA_VERSION,
        "seed": cfg.seed,
        "break": cfg.break_name,
        "amp": "hidden" if cfg.break_name == MYSTERY else amp,  # AMP on would give a mystery away
        **mystery_record(cfg.break_name, cfg.seed),  # a mystery's commitment, opened only with the secret
        "config": asdict(cfg),
        "git": git_commit(),
        "env": environment_info(cfg.device, cfg.threads),
        "dataset": dataset,
        "resumed_from": resumed,
    }


def _metrics_before(path: Path, epochs_done: int) -> list[str] | None:
    """The metrics lines of the epochs a checkpoint covers, so that a resumed run's metrics.jsonl
    is the same file an uninterrupted run writes. None when the file is not there."""
    if not path.is_file():
        return None
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            break
        if rec.get("type") == "header" or rec.get("epoch", 0) < epochs_done:
            keep.append(line)
    return keep


def config_from_checkpoint(cfg: Config, explicit: set[str]) -> Config:
    """On --resume the training configuration is the checkpoint's; an explicit different value
    is an error rather than a silently different run."""
    ckpt = load_checkpoint(cfg.resume)
    saved = ckpt["config"]
    for name in TRAINING_FIELDS:
        if name in explicit and getattr(cfg, name) != saved[name]:
            flag = "--" + ("break" if name == "break_name" else name.replace("_", "-"))
            raise SetupError(f"--resume continues the checkpoint's run, which has {flag} "
                             f"{saved[name]}; drop {flag} {getattr(cfg, name)} or start a new run")
        setattr(cfg, name, saved[name])
    if ckpt["epoch"] >= cfg.epochs:
        raise SetupError(f"checkpoint {cfg.resume} already finished all {cfg.epochs} epochs")
    return cfg


if __name__ == "__main__":  # `python trainer.py ...`: the same command as `breaklab train ...`
    from breaklab.commands.train import main

    main(prog_name="trainer.py")
