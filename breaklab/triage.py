"""Triage: the senior engineer's debugging procedure, run as short experiments on the same code.

Ordered by cost and information: (1) overfit one fixed batch, (2) data and label sanity, (3) the
loss by hand, (4) gradient flow and parameter updates, (5) a learning-rate sweep, (6) float32
instead of float16, (7) per-layer gradient and activation statistics, (8) train/eval mode.

Each step runs the training step as trainer.py runs it (`CodeUnderTest`: the same model, optimizer,
autocast and GradScaler, and the same break hooks in the same order), measures something, and
says what that rules in or out. The procedure stops at the first step that establishes a cause.
Nothing here reads the break's name: a step establishes a cause only from what it measured.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from breaklab.remedies import remedy

LN10 = math.log(10)


@dataclass
class TriageSetup:
    """The configuration the experiments reuse (the run's, or the command line's)."""

    seed: int = 42
    break_name: str = "none"
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    hidden: int = 256
    dropout: float = 0.1
    amp: bool = False
    data: str = "sample"
    data_dir: str | None = None
    threads: int = 1
    clip_grad: float = 0.0

    def config(self):
        """The trainer's Config for these settings (CPU: triage's experiments are small)."""
        from breaklab.trainer import Config

        return Config(**{k: getattr(self, k) for k in self.__dataclass_fields__}, device="cpu")

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "TriageSetup":
        cfg = meta.get("config") or {}
        known = {k: cfg[k] for k in cls.__dataclass_fields__ if k in cfg}
        return cls(**known)


@dataclass
class StepResult:
    number: int
    title: str
    ran: str
    saw: list[str]
    means: str
    seconds: float = 0.0
    cause: str | None = None          # the fault this step established, if any


@dataclass
class TriageReport:
    steps: list[StepResult] = field(default_factory=list)
    verdict: str = "unknown"
    explanation: str = ""
    fix: str = ""
    seconds: float = 0.0
    picture: str | None = None




# ============================================================================
# The code under test: trainer.py's training step, hook for hook
# ============================================================================

class CodeUnderTest:
    """One model with its optimizer and scaler, built by trainer.py's make_training and stepped by
    its train_step: the run's own code, break hooks included. Triage uses a constant learning rate
    (no schedule), which is the point of its learning-rate experiments."""

    def __init__(self, setup: TriageSetup, brk, *, lr: float | None = None, dropout: float | None = None,
                 weight_decay: float | None = None):
        from breaklab.canonical_setup import seed_everything
        from breaklab.trainer import make_training

        seed_everything(setup.seed)
        self.brk = brk
        self.requested_lr = setup.lr if lr is None else lr
        self.training = make_training(setup.config(), brk, lr=self.requested_lr, dropout=dropout,
                                      weight_decay=weight_decay)
        self.model, self.optimizer, self.scaler = self.training.model, self.training.optimizer, self.training.scaler
        self.amp = self.training.amp
        self.step_index = 0

    def step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        """One train_step, with the size of its update measured around it."""
        from breaklab.trainer import train_step

        params = list(self.model.parameters())
        before: list[torch.Tensor] = []
        result = train_step(self.training, x, y, self.step_index,
                            before_update=lambda: before.extend(p.detach().clone() for p in params))
        self.step_index += 1
        with torch.no_grad():
            delta = torch.stack([(p.detach() - b).norm() for p, b in zip(params, before)]).norm()
            grads = [p.grad.float() if p.grad is not None else torch.zeros_like(p) for p in params]
            gnorm = torch.stack([g.norm() for g in grads]).norm()
        return {"loss": float(result.loss.detach()), "outputs": result.outputs.detach().float(),
                "hidden": result.hidden.detach().float(), "y_used": result.targets, "update": float(delta),
                "grad_norm": float(gnorm), "weights": float(torch.stack([b.norm() for b in before]).norm())}

    def gradients(self, x: torch.Tensor, y: torch.Tensor, step: int, *, amp: bool | None = None):
        """The step's gradients at the current weights, left in .grad, without updating: the real
        train_step stopped before the optimizer. `amp` runs it with autocast on or off; the loss
        scale is the code's own."""
        from breaklab.trainer import train_step

        scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        use_amp = self.amp if amp is None else amp
        scaler = torch.amp.GradScaler("cpu", init_scale=scale, enabled=self.scaler.is_enabled() and use_amp)
        training = dataclasses.replace(self.training, amp=use_amp, scaler=scaler)
        self.model.zero_grad(set_to_none=True)
        return train_step(training, x, y, step, update=False)


def _grad_or_zeros(p: torch.Tensor) -> torch.Tensor:
    """A parameter's gradient as float32, or zeros where it got none (a finding, not a crash)."""
    return p.grad.detach().float().clone() if p.grad is not None else torch.zeros_like(p, dtype=torch.float32)


def _scattered_zero_frac(grad: torch.Tensor | None) -> float:
    """Exact zeros of a weight gradient outside whole zero rows (dead units)."""
    if grad is None:
        return 0.0
    zeros = (grad == 0)
    dead_rows = zeros.all(dim=1, keepdim=True)
    return float((zeros & ~dead_rows).float().mean())


def _fmt_loss(v: float) -> str:
    return "non-finite" if not math.isfinite(v) else f"{v:.3g}"


# ============================================================================
# The eight steps
# ============================================================================

class Triage:
    def __init__(self, setup: TriageSetup, out_dir: Path | None = None, echo: Callable[[str], None] = print):
        from breaklab.breaks import get_break
        from breaklab.canonical_setup import configure_determinism, load_dataset, minibatches

        self.setup = setup
        self.out_dir = out_dir
        self.echo = echo
        configure_determinism(setup.threads)
        self.brk = get_break(setup.break_name, seed=setup.seed)
        self.data = load_dataset(setup.data, setup.data_dir, False, "cpu")
        n = len(self.data.y_train)
        self.batches = list(minibatches(n, setup.batch_size, setup.seed, 0))
        self.fixed = self.batches[0]
        self.overfit_model: CodeUnderTest | None = None
        self.picture: str | None = None

    def batch(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.batches[i % len(self.batches)]
        return self.data.x_train[idx], self.data.y_train[idx]

    # -- 1 -------------------------------------------------------------------------------
    def overfit_one_batch(self) -> StepResult:
        steps = 60
        code = CodeUnderTest(self.setup, self.brk, dropout=0.0, weight_decay=0.0)
        x, y = self.data.x_train[self.fixed], self.data.y_train[self.fixed]
        first = last = None
        for _ in range(steps):
            r = code.step(x, y)
            first = r["loss"] if first is None else first
            last = r["loss"]
        with torch.no_grad():
            code.model.eval()
            acc = float((code.model(x).argmax(1) == y).float().mean())
        self.overfit_model = code
        fits = math.isfinite(last) and last < 0.5 * first and acc >= 0.95
        saw = [f"the code's loss {_fmt_loss(first)} -> {_fmt_loss(last)} in {steps} steps; accuracy on the "
               f"batch {100 * acc:.0f}% against the dataset's labels"]
        if fits:
            means = ("the model, loss and optimizer can fit data: rules out a broken model or a step that "
                     "cannot learn; the fault (if any) is subtler than 'cannot learn'")
        elif not math.isfinite(last) or last > 1.5 * first:
            means = ("it cannot fit even one batch and the loss grows: rules in the optimization step "
                     "(learning rate, gradient accumulation) or the objective's scale")
        elif acc >= 0.95:
            means = ("it predicts the batch right but the loss stays high: rules in the objective "
                     "(what the loss is computed on)")
        else:
            means = ("it cannot fit one batch: rules in data/target (labels that do not go with the inputs), "
                     "the objective, or the optimization step")
        return StepResult(1, "overfit one fixed batch",
                          f"{steps} steps of the training step on one batch of {len(y)} examples, dropout "
                          f"and weight decay off, requested lr {self.setup.lr:g}", saw, means)

    # -- 2 -------------------------------------------------------------------------------
    def data_and_labels(self) -> StepResult:
        d = self.data
        x_all, y_all = d.x_train, d.y_train
        finite = bool(torch.isfinite(x_all).all())
        mean, std = float(x_all.mean()), float(x_all.std())
        low, high = float(x_all.min()), float(x_all.max())
        if abs(mean) < 0.1 and abs(std - 1) < 0.1:
            scale = "normalised: mean 0, std 1"
        elif low >= 0 and high <= 1:
            scale = "in 0..1, not standardised"
        else:
            scale = "not normalised"
        saw = [f"inputs: {'all finite' if finite else 'NON-FINITE values'}, range {low:.2f}..{high:.2f}, "
               f"mean {mean:.2f}, std {std:.2f} ({scale}); labels {int(y_all.min())}..{int(y_all.max())}, "
               f"{len(torch.unique(y_all))} classes"]
        matches, permuted, total = 0, 0, 0
        first_used = None
        code = CodeUnderTest(self.setup, self.brk)
        for i in range(5):
            x, y = self.batch(i)
            y_used = code.gradients(x, y, i).targets  # the labels the real step hands to the loss
            first_used = y_used if first_used is None else first_used
            matches += int((y_used == y).sum())
            total += len(y)
            permuted += int(torch.equal(torch.sort(y_used).values, torch.sort(y).values))
        frac = matches / total
        saw.append(f"labels fed to the loss vs the dataset's labels of those inputs, first 5 batches: "
                   f"{100 * frac:.0f}% equal" + (" (each batch holds the same labels, in another order)"
                                                 if permuted == 5 and frac < 0.99 else ""))
        if self.out_dir is not None:
            x0, y0 = self.batch(0)
            self.picture = str(_label_grid(self.out_dir / "triage_inputs.png", x0, y0, first_used))
            saw.append(f"picture of the first 32 inputs with the labels the loop uses: {self.picture}")
        cause = None
        if not finite:
            means = "non-finite inputs: rules in data"
            cause = "unknown"
        elif frac < 0.9 and permuted == 5:
            means = ("the loss sees the right labels in the wrong order: each input is paired with another "
                     "input's label, so nothing can be learned. Cause established: labels permuted apart "
                     "from their inputs (data/target)")
            cause = "label_permute"
        elif frac < 0.9:
            means = "the labels fed to the loss are not the dataset's: rules in the target"
            cause = "unknown"
        else:
            means = f"inputs are finite ({scale}) and the loss sees each input's own label: rules out data and target"
        return StepResult(2, "data and label sanity",
                       "checked every training input and label, and the labels the loop passes to the loss", saw, means, cause=cause)

    # -- 3 -------------------------------------------------------------------------------
    def loss_by_hand(self) -> StepResult:
        code = CodeUnderTest(self.setup, self.brk)
        x, y = self.batch(0)
        result = code.gradients(x, y, 0)  # the real step's forward pass, stopped before any update
        loss, logits, outputs, y_used = result.loss.detach(), result.logits.detach(), result.outputs.detach(), result.targets
        with torch.no_grad():
            by_hand = float(-F.log_softmax(logits.float(), dim=1)[torch.arange(len(y_used)), y_used].mean())
        code_loss = float(loss)
        rowsum = float(outputs.float().sum(1).mean())
        in_unit = bool((outputs >= 0).all() and (outputs <= 1).all())
        bs = len(y)
        saw = [f"shapes: outputs {tuple(outputs.shape)}, labels {tuple(y_used.shape)}",
               f"the code's loss {code_loss:.4g}; by hand, mean of -log softmax(logits)[label] = {by_hand:.4g} "
               f"(ln 10 = 2.303 for a fresh model)"]
        cause, tol = None, (2e-2 if code.amp else 1e-4)
        if tuple(outputs.shape) != (bs, 10) or tuple(y_used.shape) != (bs,):
            means, cause = "the outputs or labels have the wrong shape: rules in shapes", "unknown"
        elif abs(code_loss - by_hand) <= tol * max(1.0, by_hand):
            means = "the code's loss is the mean cross-entropy on logits: rules out the objective"
        elif abs(code_loss / by_hand - bs) < 0.05 * bs:
            saw.append(f"ratio {code_loss / by_hand:.2f} = the batch size {bs}")
            means = ("the loss is the sum over the batch, not the mean: gradients are batch-size times too "
                     "large. Cause established: summed loss (objective)")
            cause = "loss_sum"
        elif abs(rowsum - 1) < 1e-3 and in_unit:
            saw.append(f"the outputs fed to the loss lie in [0, 1] and each row sums to {rowsum:.4f}")
            means = ("the loss is computed on probabilities: softmax was applied before F.cross_entropy, "
                     "which applies log-softmax again. Cause established: double softmax (objective)")
            cause = "double_softmax"
        else:
            means, cause = "the code's loss differs from cross-entropy by hand: rules in the objective", "unknown"
        return StepResult(3, "the loss by hand", f"one batch of {bs} through a fresh model; the code's loss vs "
                       f"cross-entropy computed by hand from the logits", saw, means, cause=cause)

    # -- 4 -------------------------------------------------------------------------------
    def gradients_and_updates(self) -> StepResult:
        code = CodeUnderTest(self.setup, self.brk, dropout=0.0)
        x, y = self.batch(0)
        code.step(x, y)
        names = [n for n, _ in code.model.named_parameters()]
        params = list(code.model.parameters())
        missing = [n for n, p in zip(names, params) if p.grad is None or float(p.grad.float().norm()) == 0]
        g1 = [_grad_or_zeros(p) for p in params]
        snapshot = {k: v.clone() for k, v in code.model.state_dict().items()}
        r2 = code.step(x, y)  # the code's second step on the same batch
        g_code = [_grad_or_zeros(p) for p in params]
        # A fresh gradient at the same weights, same batch and labels: what step 2 should have used.
        fresh = CodeUnderTest(self.setup, self.brk, dropout=0.0)
        fresh.model.load_state_dict(snapshot)
        fresh.gradients(x, y, 1)
        g_fresh = [_grad_or_zeros(p) for p in fresh.model.parameters()]

        def norm(gs):
            return float(torch.stack([g.norm() for g in gs]).norm())

        diff = norm([a - b for a, b in zip(g_code, g_fresh)]) / max(norm(g_fresh), 1e-12)
        resid = norm([a - b - c for a, b, c in zip(g_code, g_fresh, g1)]) / max(norm(g_code), 1e-12)
        saw = [("every parameter got a non-zero gradient" if not missing else
                f"no gradient for: {', '.join(missing)}") + f"; the step moved the weights by "
               f"{100 * r2['update'] / max(r2['weights'], 1e-12):.2f}% of their norm",
               f"step 2's gradient vs a fresh backward pass at the same weights: differs by {100 * diff:.0f}%"
               + (f"; it equals fresh + step 1's gradient to {100 * resid:.1f}%" if diff > 0.1 else "")]
        cause = None
        if diff > 0.1 and resid < 0.05:
            means = ("the gradient of each step is added to the previous ones: .grad is never cleared. "
                     "Cause established: missing zero_grad (optimization step)")
            cause = "missing_zero_grad"
        elif missing or r2["update"] == 0:
            means, cause = "some parameters get no gradient or do not move: rules in the optimization step", "unknown"
        elif diff > 0.1:
            means, cause = "the step's gradient is not the batch's gradient: rules in the optimization step", "unknown"
        else:
            means = "gradients reach every parameter, are cleared between steps, and the weights move: rules these out"
            if r2["update"] > 0.05 * r2["weights"]:
                means += ("; but one step moves the weights by more than 5% of their norm: rules in the "
                          "learning rate (step 5 measures it)")
        return StepResult(4, "gradients and parameter updates", "two training steps on one batch; the gradient "
                       "of step 2 compared with a fresh backward pass", saw, means, cause=cause)

    # -- 5 -------------------------------------------------------------------------------
    def learning_rate_sweep(self) -> StepResult:
        steps = 30
        factors = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
        rows, eff_ratio = [], None
        for f in factors:
            lr = self.setup.lr * f
            code = CodeUnderTest(self.setup, self.brk, lr=lr, dropout=0.0, weight_decay=0.0)
            losses = []
            for i in range(steps):
                x, y = self.batch(i)
                r = code.step(x, y)
                losses.append(r["loss"])
                if f == 1.0 and eff_ratio is None and r["update"] > 0:
                    # First real step, momentum buffer fresh: update = lr_used x gradient.
                    eff_ratio = r["update"] / (lr * max(r["grad_norm"], 1e-12))
            start, end = losses[0], sum(losses[-5:]) / 5
            if not all(math.isfinite(v) for v in losses) or end > 1.5 * start:
                outcome = "diverges"
            elif end < 0.5 * start:
                outcome = "learns"
            else:
                outcome = "stalls"
            rows.append((f, lr, start, end, outcome))
        saw = ["lr " + ", ".join(f"{lr:.0e}: {_fmt_loss(s)} -> {_fmt_loss(e)} ({o})" for _, lr, s, e, o in rows)]
        if eff_ratio is not None:
            saw.append(f"at the requested lr {self.setup.lr:g} the first update was {eff_ratio:.3g} x lr x gradient "
                       f"(plain SGD: 1.0): the optimizer used lr {eff_ratio * self.setup.lr:.3g}")
        at = {f: o for f, _, _, _, o in rows}
        learns = [lr for f, lr, _, _, o in rows if o == "learns"]
        cause = None
        if eff_ratio is not None and eff_ratio > 3 and at[1.0] != "learns":
            means = (f"the optimizer runs at {eff_ratio:.0f}x the requested learning rate and the requested lr "
                     f"{at[1.0]}; smaller ones learn" if learns else
                     f"the optimizer runs at {eff_ratio:.0f}x the requested learning rate")
            means += ". Cause established: learning rate far too large (optimization step)"
            cause = "huge_lr"
        elif at[1.0] == "diverges" and learns:
            means = (f"the requested lr diverges while {learns[-1]:.0e} learns: the learning rate is too large. "
                     f"Cause established (optimization step)")
            cause = "huge_lr"
        elif at[1.0] == "learns":
            means = "the requested learning rate learns and is the expected size: rules out the learning rate"
        else:
            means = f"no learning rate in the sweep learns well (requested: {at[1.0]}): rules in the optimization step"
        return StepResult(5, "learning-rate sweep", f"{steps} steps at 5 learning rates over four orders of "
                       f"magnitude (requested lr x 1e-3 .. x 10), fresh model each", saw, means, cause=cause)

    # -- 6 -------------------------------------------------------------------------------
    def float32_instead_of_amp(self) -> StepResult:
        code = self.overfit_model or CodeUnderTest(self.setup, self.brk, dropout=0.0)
        if not code.amp:
            return StepResult(6, "float32 instead of AMP", "nothing: the run computes in float32",
                              ["mixed precision is off"], "rules out float16 underflow and overflow")
        x, y = self.data.x_train[self.fixed], self.data.y_train[self.fixed]
        scale = code.scaler.get_scale() if code.scaler.is_enabled() else 1.0
        fc1 = code.model.fc1.weight

        def zero_frac(amp: bool) -> float:
            code.gradients(x, y, 0, amp=amp)
            return _scattered_zero_frac(fc1.grad)

        z_code, z_fp32 = zero_frac(True), zero_frac(False)
        saw = [f"on the one-batch model of step 1 (small loss, small gradients): {100 * z_code:.1f}% of "
               f"fc1.weight gradient entries exactly zero (outside dead units) as the code computes them "
               f"(float16, loss scale {scale:g}), {100 * z_fp32:.1f}% in float32"]
        cause = None
        if z_code > 0.02 and z_code > 5 * z_fp32 and scale == 1.0:
            means = ("float16 gradients underflow to zero and nothing scales the loss up first. Cause "
                     "established: mixed precision without a GradScaler (numerics)")
            cause = "amp_no_scaling"
        elif z_code > 0.02 and z_code > 5 * z_fp32:
            means, cause = "float16 underflows despite loss scaling: rules in numerics", "unknown"
        else:
            means = "float16 with the code's loss scale keeps the gradients: rules out underflow"
        return StepResult(6, "float32 instead of AMP", "one batch's gradient in the code's float16 (with its loss "
                       "scale) and in float32", saw, means, cause=cause)

    # -- 7 -------------------------------------------------------------------------------
    def layer_statistics(self) -> StepResult:
        code = CodeUnderTest(self.setup, self.brk)
        names = [n for n, _ in code.model.named_parameters()]
        records = []
        for i in range(20):
            x, y = self.batch(i)
            r = code.step(x, y)
            layer = {n: float(p.grad.float().norm()) if p.grad is not None else 0.0
                     for n, p in zip(names, code.model.parameters())}
            h = r["hidden"]
            records.append((r["grad_norm"], layer, float(h.mean()), float(h.var()),
                            float((h == 0).all(0).float().mean()), float(r["outputs"].var())))
        first, last = records[0], records[-1]
        saw = ["per-layer gradient norm, step 0 -> 19: " + ", ".join(
            f"{n} {first[1][n]:.2g}->{last[1][n]:.2g}" for n in ("fc1.weight", "bn1.weight", "fc2.weight")),
            f"first layer: mean {first[2]:.2f}->{last[2]:.2f}, variance {first[3]:.2f}->{last[3]:.2f}, "
            f"dead units {100 * first[4]:.0f}%->{100 * last[4]:.0f}%; output variance "
            f"{first[5]:.2g}->{last[5]:.2g}"]
        grows = last[0] > 5 * first[0]
        dead = last[4] > 0.5
        if grows or dead or not math.isfinite(last[0]):
            means = "exploding gradients or dying units: rules in the optimization step or numerics"
        else:
            means = "gradient norms stay within a few x and units stay alive: rules out exploding or vanishing layers"
        return StepResult(7, "per-layer gradient and activation statistics",
                          "20 training steps at the requested settings", saw, means)

    # -- 8 -------------------------------------------------------------------------------
    def train_eval_mode(self) -> StepResult:
        code = CodeUnderTest(self.setup, self.brk)
        x, y = self.batch(0)
        bn = code.model.bn1
        code.step(x, y)
        training = code.model.training  # the mode the real step put the model in
        moved = bool(bn.running_mean.abs().sum() > 0) or bool((bn.running_var != 1).any())
        saw = [f"inside the training step model.training = {training}; after one step BatchNorm's running "
               f"statistics {'moved' if moved else 'are still exactly mean 0 / variance 1'} "
               f"(num_batches_tracked {int(bn.num_batches_tracked)})"]
        cause = None
        if not training or not moved:
            means = ("the training step runs in eval mode: BatchNorm uses and never updates its running "
                     "statistics, Dropout is off. Cause established: eval mode during training (train/eval mode)")
            cause = "eval_mode"
        else:
            means = "training steps run in train mode: rules out train/eval mode"
        return StepResult(8, "train/eval mode", "the model's mode inside the training step, and BatchNorm's "
                       "running statistics after one step", saw, means, cause=cause)

    STEPS = ["overfit_one_batch", "data_and_labels", "loss_by_hand", "gradients_and_updates",
             "learning_rate_sweep", "float32_instead_of_amp", "layer_statistics", "train_eval_mode"]

    def run(self) -> TriageReport:
        report = TriageReport()
        t_all = time.perf_counter()
        for name in self.STEPS:
            t0 = time.perf_counter()
            result: StepResult = getattr(self, name)()
            result.seconds = time.perf_counter() - t0
            report.steps.append(result)
            self.echo(format_step(result))
            if result.cause is not None:
                break
        report.seconds = time.perf_counter() - t_all
        report.picture = self.picture
        established = [s for s in report.steps if s.cause]
        if established:
            report.verdict = established[0].cause
            report.explanation = established[0].means
        elif report.steps[0].means.startswith("the model, loss and optimizer can fit"):
            report.verdict = "healthy"
            report.explanation = "all eight checks passed: no fault found"
        else:
            report.explanation = "no step established a cause; the rules-in lines above narrow it down"
        report.fix = remedy(report.verdict).fix
        return report


def format_step(r: StepResult) -> str:
    pad = " " * 6
    lines = [f"[{r.number}/8] {r.title}", f"{pad}ran:   {r.ran}"]
    lines += [f"{pad}saw:   {s}" if i == 0 else f"{pad}       {s}" for i, s in enumerate(r.saw)]
    lines.append(f"{pad}means: {r.means}")
    lines.append(f"{pad}time:  {r.seconds:.2f} s")
    return "\n".join(lines)


def format_verdict(report: TriageReport) -> str:
    at = next((s.number for s in report.steps if s.cause), None)
    where = f"established at step {at} of 8" if at else f"after all {len(report.steps)} steps"
    return "\n".join([f"verdict: {report.verdict} ({where}, {report.seconds:.1f} s in all)",
                      f"why:     {report.explanation}", f"fix:     {report.fix}"])


def _label_grid(path: Path, x: torch.Tensor, y_true: torch.Tensor, y_used: torch.Tensor) -> Path:
    """A 4 x 8 grid of inputs, each titled with the label the loop feeds the loss (red when it is
    not the dataset's label for that image)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from breaklab.canonical_setup import atomic_write_bytes
    import io

    fig = Figure(figsize=(8, 4.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(4, 8).ravel()
    for i, ax in enumerate(axes):
        ax.imshow(x[i].reshape(28, 28).numpy(), cmap="gray")
        wrong = int(y_used[i]) != int(y_true[i])
        ax.set_title(f"{int(y_used[i])}" + (f" (is {int(y_true[i])})" if wrong else ""), fontsize=8,
                     color="red" if wrong else "black")
        ax.axis("off")
    fig.suptitle("inputs with the labels the training loop feeds the loss (red: not the image's label)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path
