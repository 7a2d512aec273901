"""Triage: the senior engineer's debugging procedure, run as short experiments on the same code.

Ordered by cost and information: (1) overfit one fixed batch, (2) the inputs of both splits,
(3) labels and batch order, (4) the loss by hand, (5) the parameters and the optimizer, (6)
gradients and updates, (7) float16 against float32, (8) a learning-rate sweep, (9) the
learning-rate schedule, (10) per-layer gradient and activation statistics, (11) train/eval mode,
(12) the evaluation, (13) memory kept between steps, (14) checkpoint and resume.

Each step runs the code as trainer.py runs it (`CodeUnderTest`: the same model, optimizer,
autocast and GradScaler, and the same break hooks in the same order; the data, batch-order,
schedule, running-loss, evaluation and checkpoint hooks where trainer.py's loop calls them),
measures something, and says what that rules in or out. The procedure stops at the first step
that establishes a cause. Nothing here reads the break's name: a step establishes a cause only
from what it measured.
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
    epochs: int = 3              # the schedule's length (step 9) and the resume's (step 14)
    warmup_steps: int = 10

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
    cause: str | None = None          # the fault this step established, if any ("unknown": a fault
    #                                   whose kind these experiments do not establish)
    of: int = 0                       # the number of steps in the procedure


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

    def gradients(self, x: torch.Tensor, y: torch.Tensor, step: int, *, amp: bool | None = None,
                  scale: float | None = None):
        """The step's gradients at the current weights, left in .grad, without updating: the real
        train_step stopped before the optimizer. `amp` runs it with autocast on or off; the loss
        scale is the code's own, or `scale` where the code scales the loss at all."""
        from breaklab.trainer import train_step

        if scale is None:
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
# Probes: small, named manipulations the experiments share
# ============================================================================

# The logits' standard deviation step 4 gives a fresh model (by scaling its output layer), so that
# the candidate losses differ clearly: at initialisation every logit is near 0 and several of them
# equal ln 10.
LOSS_PROBE_LOGIT_STD = 2.0
# Step 7's probes. A cross-entropy does not change when a constant is added to every logit; 16 puts
# exp(logit) past float16's largest number (65504 = exp(11.1)). A trained model's logits spread
# over tens (a clean run reaches a largest logit of 15-30): std 8 makes the smallest probabilities
# underflow float16 (below exp(-17)) while float32 still holds them.
LOGIT_SHIFT = 16.0
CONFIDENT_LOGIT_STD = 8.0


def _spread_logits(model: torch.nn.Module, x: torch.Tensor, std: float) -> None:
    """Scale the output layer so that the model's logits on x have this standard deviation."""
    with torch.no_grad():
        logits = model(x).float()
        factor = std / max(float(logits.std()), 1e-12)
        model.fc2.weight.mul_(factor)
        model.fc2.bias.mul_(factor)


def _all_finite(tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors if t is not None)


def _loss_formulas(logits: torch.Tensor, y: torch.Tensor, micro_batches: int) -> dict[str, tuple[float, str | None]]:
    """Losses a training step might compute from these logits and labels, by hand in float32, each
    with the fault it means (None: the intended loss, or a form that is not a fault by itself).
    LOSS_FORMS says what each short name computes."""
    z = logits.detach().float()
    n, classes = z.shape
    rows = torch.arange(n)
    log_p = F.log_softmax(z, dim=1)
    forms = {
        "mean cross-entropy": (-log_p[rows, y].mean(), None),
        "summed cross-entropy": (-log_p[rows, y].sum(), "loss_sum"),
        "cross-entropy of softmax": (F.cross_entropy(z.softmax(1), y), "double_softmax"),
        "NLL of raw logits": (-z[rows, y].mean(), "nll_on_logits"),
        "MSE to one-hot": (F.mse_loss(z, F.one_hot(y, classes).float()), "mse_onehot"),
        "softmax over the batch": (-F.log_softmax(z, dim=0)[rows, y].mean(), "softmax_over_batch"),
        "all (example, label) pairs": (-log_p[:, y].mean(), "loss_all_pairs"),
    }
    if micro_batches > 1:
        forms[f"mean cross-entropy x {micro_batches}"] = (-log_p[rows, y].mean() * micro_batches, None)
    return {name: (float(v), cause) for name, (v, cause) in forms.items()}


LOSS_FORMS = {
    "mean cross-entropy": "mean cross-entropy, -log softmax(logits)[label] averaged",
    "summed cross-entropy": "cross-entropy summed over the batch, not averaged",
    "cross-entropy of softmax": "cross-entropy of softmax(logits): softmax applied twice",
    "NLL of raw logits": "negative log-likelihood of the raw logits, -logits[label] averaged (no log-softmax)",
    "MSE to one-hot": "mean squared error between the logits and one-hot labels",
    "softmax over the batch": "cross-entropy with the softmax taken over the batch (dim 0), not the classes",
    "all (example, label) pairs": "cross-entropy averaged over every (example, label) pair, log_p[:, y] of shape (N, N)",
}


# ============================================================================
# The steps
# ============================================================================

class Triage:
    def __init__(self, setup: TriageSetup, out_dir: Path | None = None, echo: Callable[[str], None] = print,
                 data=None):
        """`data`: the dataset of setup.data, when the caller has loaded it already (many triages
        in one process); otherwise it is loaded here."""
        from breaklab.breaks import get_break
        from breaklab.canonical_setup import configure_determinism, load_dataset, minibatches

        self.setup = setup
        self.out_dir = out_dir
        self.echo = echo
        configure_determinism(setup.threads)
        self.brk = get_break(setup.break_name, seed=setup.seed)
        self.data = data if data is not None else load_dataset(setup.data, setup.data_dir, False, "cpu")
        # The examples the code trains and tests on (its data hooks), as trainer.py's loop takes them.
        self.x_train, self.y_train = self.brk.training_data(self.data)
        self.x_test, self.y_test = self.brk.test_data(self.data)
        # Triage's own shuffled batches of those examples: its experiments choose their batches.
        self.batches = list(minibatches(len(self.y_train), setup.batch_size, setup.seed, 0))
        self.fixed = self.batches[0]
        self.overfit_model: CodeUnderTest | None = None
        self.trained_model: CodeUnderTest | None = None
        self.picture: str | None = None

    def batch(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.batches[i % len(self.batches)]
        return self.x_train[idx], self.y_train[idx]

    def total_steps(self) -> int:
        from breaklab.canonical_setup import steps_per_epoch

        return self.setup.epochs * steps_per_epoch(len(self.y_train), self.setup.batch_size)

    # -- 1 -------------------------------------------------------------------------------
    def overfit_one_batch(self) -> StepResult:
        steps = 60
        code = CodeUnderTest(self.setup, self.brk, dropout=0.0, weight_decay=0.0)
        x, y = self.x_train[self.fixed], self.y_train[self.fixed]
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
            means = ("it cannot fit even one batch and the loss grows or goes non-finite: rules in the data "
                     "(non-finite values), the optimization step (learning rate, gradient accumulation), "
                     "numerics or the objective's scale")
        elif acc >= 0.95:
            means = ("it predicts the batch right but the loss stays high: rules in the objective "
                     "(what the loss is computed on)")
        else:
            means = ("it cannot fit one batch: rules in data/target (labels that do not go with the inputs), "
                     "the objective, the parameters or the optimization step")
        return StepResult(1, "overfit one fixed batch",
                          f"{steps} steps of the training step on one batch of {len(y)} examples, dropout "
                          f"and weight decay off, requested lr {self.setup.lr:g}", saw, means)

    # -- 2 -------------------------------------------------------------------------------
    def inputs_and_splits(self) -> StepResult:
        x, xt = self.x_train, self.x_test
        bad = ~torch.isfinite(x).all(dim=1)
        clean_x = x[~bad]
        train_mean, train_std = float(clean_x.mean()), float(clean_x.std())
        test_mean, test_std = float(xt.mean()), float(xt.std())
        mean_gap = abs(test_mean - train_mean) / max(train_std, 1e-12)
        std_ratio = test_std / max(train_std, 1e-12)
        seen = {row.numpy().tobytes() for row in clean_x}
        shared = sum(row.numpy().tobytes() in seen for row in xt)
        split = len(self.data.y_train)
        saw = [f"training inputs: {len(x)} examples (the dataset's training split: {split}); "
               f"{int(bad.sum())} hold a non-finite value; range {float(clean_x.min()):.2f}..{float(clean_x.max()):.2f}",
               f"mean / std of the inputs: training {train_mean:.2f} / {train_std:.2f}, test {test_mean:.2f} / "
               f"{test_std:.2f} (gap in means {mean_gap:.2f} training std, ratio of stds {std_ratio:.2f})",
               f"test inputs found among the training inputs (exactly equal): {shared} of {len(xt)}"]
        cause = None
        if bad.any():
            first_bad = int(bad.nonzero()[0])
            idx = torch.cat([torch.tensor([first_bad]), self.fixed[self.fixed != first_bad]])[:self.setup.batch_size]
            code = CodeUnderTest(self.setup, self.brk)
            loss = float(code.gradients(self.x_train[idx], self.y_train[idx], 0).loss.detach())
            grads_finite = _all_finite(p.grad for p in code.model.parameters())
            saw.append(f"one batch holding training example {first_bad}: the code's loss {_fmt_loss(loss)}, "
                       f"gradients {'finite' if grads_finite else 'non-finite'}")
            means = (f"{int(bad.sum())} training inputs hold non-finite values, and a batch that holds one gives a "
                     f"{'non-finite loss' if not math.isfinite(loss) else 'loss'} and "
                     f"{'non-finite' if not grads_finite else 'finite'} gradients for every step that draws it. "
                     f"Cause established: non-finite training inputs (data)")
            cause = "nan_inputs"
        elif shared > 0.005 * len(xt):
            means = (f"{100 * shared / len(xt):.0f}% of the test examples are also training examples: the test "
                     f"accuracy measures memory, not generalisation. Cause established: test examples in the "
                     f"training set (data)")
            cause = "test_leak"
        elif mean_gap > 0.25 or not 2 / 3 < std_ratio < 3 / 2:
            means = ("the test inputs are on another scale than the training inputs: the model is evaluated on "
                     "inputs preprocessed unlike those it learned from. Cause established: test inputs "
                     "preprocessed differently from training inputs (data)")
            cause = "raw_test_inputs"
        else:
            means = ("inputs are finite, both splits are preprocessed alike and no test example is trained on: "
                     "rules out the inputs")
        return StepResult(2, "the inputs of both splits", "checked every training and test input the code "
                          "uses: finiteness, mean and std per split, test examples present in the training set",
                          saw, means, cause=cause)

    # -- 3 -------------------------------------------------------------------------------
    def labels_and_batch_order(self) -> StepResult:
        matches, permuted, total, shifts = 0, 0, 0, set()
        first_used = None
        code = CodeUnderTest(self.setup, self.brk)
        classes = int(self.y_train.max()) + 1
        for i in range(5):
            x, y = self.batch(i)
            y_used = code.gradients(x, y, i).targets  # the labels the real step hands to the loss
            first_used = y_used if first_used is None else first_used
            matches += int((y_used == y).sum())
            total += len(y)
            permuted += int(torch.equal(torch.sort(y_used).values, torch.sort(y).values))
            shifts |= set(((y_used - y) % classes).tolist())
        frac = matches / total
        saw = [f"labels fed to the loss vs the dataset's labels of those inputs, first 5 batches: "
               f"{100 * frac:.0f}% equal" + (" (each batch holds the same labels, in another order)"
                                             if permuted == 5 and frac < 0.99 else "")
               + (f"; each is the input's label + {min(shifts)} (mod {classes})" if len(shifts) == 1 and frac < 0.99 else "")]
        n, bs, seed = len(self.y_train), self.setup.batch_size, self.setup.seed
        order = [idx.cpu() for idx in self.brk.batch_order(n, bs, seed, 0)]
        next_order = [idx.cpu() for idx in self.brk.batch_order(n, bs, seed, 1)]
        per_batch = [len(torch.unique(self.y_train[idx])) for idx in order]
        shuffled = [len(torch.unique(self.y_train[idx])) for idx in self.batches]
        repeats = len(order) == len(next_order) and all(torch.equal(a, b) for a, b in zip(order, next_order))
        code_classes, shuffled_classes = sum(per_batch) / len(per_batch), sum(shuffled) / len(shuffled)
        saw.append(f"the code's batch order (epoch 1): {code_classes:.1f} classes per batch on average, "
                   f"{sum(c == 1 for c in per_batch)} of {len(per_batch)} batches hold one class "
                   f"(a shuffled order: {shuffled_classes:.1f}); epoch 2 {'repeats' if repeats else 'reorders'} "
                   f"epoch 1's batches")
        if self.out_dir is not None:
            x0, y0 = self.batch(0)
            self.picture = str(_label_grid(self.out_dir / "triage_inputs.png", x0, y0, first_used))
            saw.append(f"picture of the first 32 inputs with the labels the loop uses: {self.picture}")
        cause = None
        if frac < 0.9 and permuted == 5:
            means = ("the loss sees the right labels in the wrong order: each input is paired with another "
                     "input's label, so nothing can be learned. Cause established: labels permuted apart "
                     "from their inputs (data/target)")
            cause = "label_permute"
        elif frac < 0.9 and len(shifts) == 1:
            means = (f"every label the loss sees is the input's own label + {min(shifts)}: the model learns a "
                     f"relabelled task and the test labels disagree with it. Cause established: training "
                     f"labels shifted by a class (target)")
            cause = "label_shift"
        elif frac < 0.9:
            means = "the labels fed to the loss are not the dataset's: rules in the target"
            cause = "unknown"
        elif code_classes < 0.5 * shuffled_classes:
            means = (f"the code's batches hold {code_classes:.1f} classes on average against {shuffled_classes:.1f} "
                     f"when shuffled: the data goes in its stored, class-sorted order, and each step pulls "
                     f"the model toward one class. Cause established: training batches not shuffled (data)")
            cause = "no_shuffle"
        else:
            means = "the loss sees each input's own label and the batches mix the classes: rules out target and batch order"
        return StepResult(3, "labels and batch order", "the labels the real step passes to the loss for 5 "
                          "batches; the classes in each batch of the code's batch order, for two epochs",
                          saw, means, cause=cause)

    # -- 4 -------------------------------------------------------------------------------
    def loss_by_hand(self) -> StepResult:
        code = CodeUnderTest(self.setup, self.brk)
        x, y = self.batch(0)
        initial = float(code.gradients(x, y, 0).loss.detach())
        _spread_logits(code.model, x, LOSS_PROBE_LOGIT_STD)
        result = code.gradients(x, y, 0)  # the real step's forward pass, stopped before any update
        code_loss, outputs, y_used = float(result.loss.detach()), result.outputs.detach(), result.targets
        bs = len(y)
        saw = [f"shapes: outputs {tuple(outputs.shape)}, labels {tuple(y_used.shape)}; the code's loss on a "
               f"fresh model {_fmt_loss(initial)} (ln 10 = 2.303 for 10 equally likely classes)"]
        if tuple(result.logits.shape) != (bs, 10) or tuple(y_used.shape) != (bs,):
            return StepResult(4, "the loss by hand", f"one batch of {bs} through a fresh model", saw,
                              "the logits or labels have the wrong shape: rules in shapes", cause="unknown")
        forms = _loss_formulas(result.logits, y_used, code.training.micro_batches)
        tol = 2e-2 if code.amp else 1e-3
        gap = {name: abs(code_loss - v) / max(1.0, abs(v)) for name, (v, _) in forms.items()}
        intended = next(iter(forms))
        # The closest formula; the intended one where it is within the tolerance and no other is
        # ten times closer (logits without spread, as a zero output layer gives, tie several).
        closest = min(gap, key=gap.get)
        best = intended if gap[intended] <= tol and gap[intended] <= 10 * gap[closest] + 1e-6 else closest
        saw.append(f"with the output layer scaled so the logits spread (std {LOSS_PROBE_LOGIT_STD:g}): the code's "
                   f"loss {_fmt_loss(code_loss)}")
        saw.append("by hand from its logits: " + ", ".join(f"{name} {v:.4g}" for name, (v, _) in forms.items()))
        cause = None
        if not math.isfinite(code_loss):
            means = "the code's loss is non-finite on ordinary logits: rules in the objective or numerics"
        elif gap[best] > tol:
            means = "the code's loss is none of these: rules in the objective"
            cause = "unknown"
        elif best == intended:
            means = "the code's loss is the mean cross-entropy on logits: rules out the objective"
        elif forms[best][1] is None:
            means = (f"the code's loss is the {best} micro-batches (each part's mean added up, not divided): "
                     f"its gradients are {code.training.micro_batches}x the batch "
                     f"mean's, as a {code.training.micro_batches}x learning rate would make them; whether that is "
                     f"too large for the requested rate is step 8's (learning-rate sweep) to measure")
        else:
            means = (f"the code's loss equals the {LOSS_FORMS[best]}, not the mean cross-entropy. Cause established: "
                     f"{FAULT_WORDS[forms[best][1]]}")
            cause = forms[best][1]
        return StepResult(4, "the loss by hand", f"one batch of {bs} through a fresh model; the code's loss vs "
                          f"the losses computed by hand from its logits", saw, means, cause=cause)

    # -- 5 -------------------------------------------------------------------------------
    def parameters_and_optimizer(self) -> StepResult:
        code = CodeUnderTest(self.setup, self.brk)
        named = list(code.model.named_parameters())
        held = {id(p) for group in code.optimizer.param_groups for p in group["params"]}
        all_zero = [n for n, p in named if p.dim() > 1 and not bool(p.detach().any())]
        frozen = [n for n, p in named if not p.requires_grad]
        outside = [n for n, p in named if p.requires_grad and id(p) not in held]
        x, y = self.batch(0)
        code.gradients(x, y, 0)
        no_grad = [n for n, p in named if id(p) in held and (p.grad is None or not bool(p.grad.detach().any()))]
        listed = lambda names: ", ".join(names) if names else "none"  # noqa: E731
        saw = [f"{len(named)} parameter tensors; weight matrices that start all zero: {listed(all_zero)}",
               f"requires_grad off: {listed(frozen)}; not held by the optimizer: {listed(outside)}",
               f"held by the optimizer but no gradient (None or all zero) after one backward pass: {listed(no_grad)}"]
        cause = None
        if all_zero:
            means = (f"{', '.join(all_zero)} start at exactly zero: every unit of a layer computes the same thing "
                     f"and gets the same (here zero) gradient, so the symmetry never breaks. Cause established: "
                     f"weights initialised to zero (optimization)")
            cause = "zero_init"
        elif frozen:
            means = (f"{', '.join(frozen)} are excluded from autograd: they never get a gradient and keep their "
                     f"initial values. Cause established: a layer frozen by mistake (optimization)")
            cause = "frozen_layer"
        elif outside:
            means = (f"{', '.join(outside)} get gradients but the optimizer does not hold them: they are never "
                     f"updated, and zero_grad never clears their gradients. Cause established: parameters left "
                     f"out of the optimizer (optimization)")
            cause = "layer_not_in_optimizer"
        elif no_grad:
            means = "some parameters the optimizer holds get no gradient: rules in the model's forward pass"
        else:
            means = ("every parameter is trainable, held by the optimizer, starts non-zero and gets a gradient: "
                     "rules out the parameters' set-up")
        return StepResult(5, "the parameters and the optimizer", "each parameter's initial value, requires_grad, "
                          "membership of the optimizer, and its gradient after one backward pass", saw, means,
                          cause=cause)

    # -- 6 -------------------------------------------------------------------------------
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
        stale = self._gradients_left_from_before()
        saw = [("every parameter got a non-zero gradient" if not missing else
                f"no gradient for: {', '.join(missing)}") + f"; the step moved the weights by "
               f"{100 * r2['update'] / max(r2['weights'], 1e-12):.2f}% of their norm",
               f"step 2's gradient vs a fresh backward pass at the same weights: differs by {100 * diff:.0f}%"
               + (f"; it equals fresh + step 1's gradient to {100 * resid:.1f}%" if diff > 0.1 else ""),
               "a step that starts with NaN in every .grad: NaN left in the gradients of "
               + (", ".join(stale) if stale else "no parameter")]
        cause = None
        if (diff > 0.1 and resid < 0.05) or stale:
            means = ("the gradient of each step is added to what .grad already holds: .grad is never cleared. "
                     "Cause established: missing zero_grad (optimization step)")
            cause = "missing_zero_grad"
        elif missing or r2["update"] == 0:
            means = "some parameters get no gradient or do not move: rules in the optimization step"
        elif diff > 0.1:
            means = "the step's gradient is not the batch's gradient: rules in the optimization step"
        else:
            means = "gradients reach every parameter, are cleared between steps, and the weights move: rules these out"
            if r2["update"] > 0.05 * r2["weights"]:
                means += ("; but one step moves the weights by more than 5% of their norm: rules in the "
                          "learning rate (step 8 measures it)")
        return StepResult(6, "gradients and parameter updates", "two training steps on one batch; the gradient "
                          "of step 2 compared with a fresh backward pass", saw, means, cause=cause)

    def _gradients_left_from_before(self) -> list[str]:
        """The parameters whose gradient after the code's step still holds what .grad held before
        it: the step runs once from empty .grad and once with NaN in every trainable parameter's
        .grad; a parameter whose gradient is finite from the first and NaN from the second kept
        the NaN (a step that clears .grad first gives the same gradients both times)."""
        from breaklab.trainer import train_step

        x, y = self.batch(0)
        nan_after: list[set[str]] = []
        for fill in (False, True):
            probe = CodeUnderTest(self.setup, self.brk, dropout=0.0)
            for p in probe.model.parameters():
                p.grad = torch.full_like(p, float("nan")) if fill and p.requires_grad else None
            train_step(probe.training, x, y, 0, update=False)
            nan_after.append({n for n, p in probe.model.named_parameters()
                              if p.grad is not None and bool(torch.isnan(p.grad).any())})
        return [n for n, _ in probe.model.named_parameters() if n in nan_after[1] - nan_after[0]]

    # -- 7 -------------------------------------------------------------------------------
    def float16_against_float32(self) -> StepResult:
        probe = CodeUnderTest(self.setup, self.brk, dropout=0.0)
        if not probe.amp:
            return StepResult(7, "float16 against float32", "nothing: the run computes in float32",
                              ["mixed precision is off"], "rules out float16 overflow and underflow")
        x, y = self.x_train[self.fixed], self.y_train[self.fixed]
        params = list(probe.model.parameters())

        def run(amp: bool, labels: torch.Tensor, scale: float | None = None) -> tuple[float, bool, float]:
            """The code's loss, whether all gradients are finite, and their norm (after the code's
            unscale-and-clip), without updating."""
            r = probe.gradients(x, labels, 0, amp=amp, scale=scale)
            grads = [p.grad for p in params]
            finite = _all_finite(grads)
            norm = float(torch.stack([g.float().norm() for g in grads if g is not None]).norm()) if finite else math.nan
            return float(r.loss.detach()), finite, norm

        saw, cause = [], None
        # (a) the logits shifted up by a constant: the same cross-entropy, in float16 and float32.
        with torch.no_grad():
            probe.model.fc2.bias.add_(LOGIT_SHIFT)
        shifted16, shifted32 = run(True, y), run(False, y)
        with torch.no_grad():
            probe.model.fc2.bias.sub_(LOGIT_SHIFT)
        saw.append(f"every logit + {LOGIT_SHIFT:g} (a cross-entropy does not change): the code's loss "
                   f"{_fmt_loss(shifted16[0])} in float16, {_fmt_loss(shifted32[0])} in float32")
        # (b) a confident, correct model: logits spread like a trained model's, labels its own predictions.
        plain16, plain32 = run(True, y), run(False, y)
        scale = probe.scaler.get_scale() if probe.scaler.is_enabled() else 1.0
        _spread_logits(probe.model, x, CONFIDENT_LOGIT_STD)
        with torch.no_grad():
            probe.model.train()
            confident_labels = probe.model(x).argmax(1)
        confident16, confident32 = run(True, confident_labels), run(False, confident_labels)
        # Gradients that overflow only because the loss is scaled up come back finite at scale 1
        # (the GradScaler lowers its scale for them); a 0/0 stays NaN at any scale.
        unscaled16 = run(True, confident_labels, scale=1.0)
        finite = lambda ok: "finite" if ok else "NON-FINITE"  # noqa: E731
        saw.append(f"a confident, correct model (logit std {CONFIDENT_LOGIT_STD:g}, labels = its predictions): "
                   f"loss {_fmt_loss(confident16[0])}, gradients {finite(confident16[1])} in float16 "
                   f"({finite(unscaled16[1])} at loss scale 1); loss {_fmt_loss(confident32[0])}, gradients "
                   f"{finite(confident32[1])} in float32")
        clip = probe.training.clip_grad
        saw.append(f"a fresh model: gradient norm the optimizer gets {plain16[2]:.3g} in float16 (loss scale "
                   f"{scale:g}), {plain32[2]:.3g} in float32" + (f"; clipping at {clip:g}" if clip else ""))
        if not math.isfinite(shifted16[0]) and math.isfinite(shifted32[0]):
            means = ("float16 overflows in the loss: shifting every logit leaves a cross-entropy unchanged, yet the "
                     "code's loss turns non-finite in float16 while float32 holds it (exp of a logit above 11.1 "
                     "passes float16's range). Cause established: a loss that overflows float16 (numerics)")
            cause = "fp16_overflow"
        elif math.isfinite(confident16[0]) and not confident16[1] and not unscaled16[1] and confident32[1]:
            means = ("the loss is finite but its gradients are not in float16 while float32 keeps them: the "
                     "smallest probabilities underflow to 0 in float16 and their log's gradient is 0/0. "
                     "Cause established: log of a float16 softmax (numerics)")
            cause = "log_of_softmax_amp"
        elif clip and plain32[2] > 0 and plain16[2] < 0.01 * plain32[2]:
            means = (f"the optimizer gets gradients {plain32[2] / max(plain16[2], 1e-30):.3g}x smaller in float16 than "
                     f"in float32: {plain16[2]:.3g} x the loss scale {scale:g} = {plain16[2] * scale:.3g}, the clip "
                     f"norm {clip:g}. The scaled gradients were clipped, then unscaled. Cause established: "
                     f"clipping before GradScaler.unscale_ (numerics)")
            cause = "clip_before_unscale"
        else:
            code = self.overfit_model or CodeUnderTest(self.setup, self.brk, dropout=0.0)
            fc1 = code.model.fc1.weight

            def zero_frac(amp: bool) -> float:
                code.gradients(x, y, 0, amp=amp)
                return _scattered_zero_frac(fc1.grad)

            z_code, z_fp32 = zero_frac(True), zero_frac(False)
            code_scale = code.scaler.get_scale() if code.scaler.is_enabled() else 1.0
            saw.append(f"on the one-batch model of step 1 (small loss, small gradients): {100 * z_code:.1f}% of "
                       f"fc1.weight gradient entries exactly zero (outside dead units) as the code computes them "
                       f"(float16, loss scale {code_scale:g}), {100 * z_fp32:.1f}% in float32")
            if z_code > 0.02 and z_code > 5 * z_fp32 and code_scale == 1.0:
                means = ("float16 gradients underflow to zero and nothing scales the loss up first. Cause "
                         "established: mixed precision without a GradScaler (numerics)")
                cause = "amp_no_scaling"
            elif z_code > 0.02 and z_code > 5 * z_fp32:
                means = "float16 underflows despite loss scaling: rules in numerics"
            else:
                means = ("float16 with the code's loss scale keeps the loss and the gradients finite and non-zero: "
                         "rules out float16 overflow and underflow")
        return StepResult(7, "float16 against float32", "the code's loss and gradients in its float16 (with its loss "
                          "scale and clipping) and in float32: on shifted logits, on a confident model, on a fresh "
                          "model and on step 1's model", saw, means, cause=cause)

    # -- 8 -------------------------------------------------------------------------------
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
        elif eff_ratio is not None and eff_ratio < 0.1 and at[1.0] != "learns":
            means = (f"the optimizer runs at {eff_ratio:.2g}x the requested learning rate and the requested lr "
                     f"{at[1.0]}" + ("; larger ones learn" if learns else "")
                     + ". Cause established: learning rate far too small (optimization step)")
            cause = "tiny_lr"
        elif at[1.0] == "diverges" and learns:
            means = (f"the requested lr diverges while {learns[-1]:.0e} learns: the learning rate is too large. "
                     f"Cause established (optimization step)")
            cause = "huge_lr"
        elif at[1.0] == "learns":
            means = "the requested learning rate learns" + (
                "" if eff_ratio is None or 0.5 < eff_ratio < 1.5 else
                f"; the update is {eff_ratio:.2g}x lr x gradient, yet within what learns here") + ": rules out the learning rate"
        else:
            means = f"no learning rate in the sweep learns well (requested: {at[1.0]}): rules in the optimization step"
        return StepResult(8, "learning-rate sweep", f"{steps} steps at 5 learning rates over four orders of "
                          f"magnitude (requested lr x 1e-3 .. x 10), fresh model each", saw, means, cause=cause)

    # -- 9 -------------------------------------------------------------------------------
    def learning_rate_schedule(self) -> StepResult:
        from breaklab.canonical_setup import seed_everything
        from breaklab.trainer import start_training, train_step, warmup_cosine

        steps = 12
        cfg, total = self.setup.config(), self.total_steps()
        seed_everything(self.setup.seed)
        training, scheduler = start_training(cfg, self.brk, total)
        used = []
        for i in range(steps):
            used.append(training.optimizer.param_groups[0]["lr"])  # the lr this step runs at
            x, y = self.batch(i)
            train_step(training, x, y, i)
            self.brk.scheduler_step(scheduler)  # where trainer.py's loop moves the schedule
        factor = warmup_cosine(cfg.warmup_steps, total)
        configured = [self.setup.lr * factor(i) for i in range(steps)]
        saw = [f"lr the optimizer ran at, steps 0-{steps - 1}: " + ", ".join(f"{v:.3g}" for v in used)
               + f" ({len(set(used))} distinct)",
               f"the configured schedule (warmup {cfg.warmup_steps} steps, cosine over {total}): "
               + ", ".join(f"{v:.3g}" for v in configured)]
        cause = None
        if len(set(used)) == 1 and len(set(configured)) > 1:
            means = (f"the learning rate stays at {used[0]:.3g} while the schedule should move it: the scheduler is "
                     f"built but never stepped. Cause established: scheduler.step() not called (optimization)")
            cause = "scheduler_not_stepped"
        else:
            means = "the learning rate moves from step to step: rules out a schedule that never moves"
        return StepResult(9, "learning-rate schedule", f"{steps} training steps with the code's scheduler, "
                          f"stepped where trainer.py's loop steps it; the lr each step ran at", saw, means, cause=cause)

    # -- 10 ------------------------------------------------------------------------------
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
        self.trained_model = code
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
        return StepResult(10, "per-layer gradient and activation statistics",
                          "20 training steps at the requested settings", saw, means)

    # -- 11 ------------------------------------------------------------------------------
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
        return StepResult(11, "train/eval mode", "the model's mode inside the training step, and BatchNorm's "
                          "running statistics after one step", saw, means, cause=cause)

    # -- 12 ------------------------------------------------------------------------------
    def evaluation(self) -> StepResult:
        from breaklab.trainer import evaluate

        code = self.trained_model or CodeUnderTest(self.setup, self.brk)
        model = code.model
        result = evaluate(model, self.x_test, self.y_test, self.brk)  # the code's test pass
        mode_in_test = "train" if model.training else "eval"
        model.eval()
        with torch.no_grad():
            logits = model(self.x_test).float()
        by_hand = float((logits.argmax(dim=1) == self.y_test).float().mean())
        predictions = self.brk.predictions(logits)  # what the code compares with the labels
        saw = [f"on the model of step 10 (20 steps): the code's test accuracy {result['acc']:.3f}, by hand "
               f"(eval mode, argmax == label) {by_hand:.3f}; the code's predictions have shape "
               f"{tuple(predictions.shape)}, labels {tuple(self.y_test.shape)}",
               f"the code's test pass ran in {mode_in_test} mode; autograd saved {result['autograd_bytes']:,} bytes "
               f"during it (0 under torch.no_grad())"]
        cause = None
        if tuple(predictions.shape) != tuple(self.y_test.shape):
            means = (f"predictions of shape {tuple(predictions.shape)} compared with labels of shape "
                     f"{tuple(self.y_test.shape)} broadcast to a matrix of every pair: the accuracy measures "
                     f"the share of equal pairs, not the model. Cause established: accuracy computed on "
                     f"mismatched shapes (shapes)")
            cause = "acc_broadcast"
        elif result["autograd_bytes"] > 0:
            means = (f"the test pass records an autograd graph it never uses ({result['autograd_bytes'] / 1e6:.1f} MB "
                     f"for {len(self.y_test)} examples): memory that grows with the test set. Cause established: "
                     f"evaluation without torch.no_grad() (memory)")
            cause = "eval_with_grad"
        elif abs(result["acc"] - by_hand) > 0.02:
            means = "the code's test accuracy differs from the model's accuracy by hand: rules in the evaluation"
        else:
            means = ("the code's evaluation measures the model's accuracy" +
                     (f" (within {abs(result['acc'] - by_hand):.3f} of eval mode, in train mode here)"
                      if mode_in_test == "train" else "") + " and records no graph: rules out the evaluation")
        return StepResult(12, "the evaluation", "the code's test pass (trainer.py's evaluate with its hooks) on "
                          "a briefly trained model, against accuracy by hand", saw, means, cause=cause)

    # -- 13 ------------------------------------------------------------------------------
    def memory_between_steps(self) -> StepResult:
        from breaklab.graph_memory import LiveGraphs
        from breaklab.trainer import train_step

        steps = 4
        code = CodeUnderTest(self.setup, self.brk)
        graphs, running, alive = LiveGraphs(), 0.0, []
        for i in range(steps):
            x, y = self.batch(i)
            result = train_step(code.training, x, y, i)
            alive.append(graphs.earlier_alive(result.loss))
            running = self.brk.running_loss(running, result.loss)  # where trainer.py's loop keeps its total
        kept = isinstance(running, torch.Tensor) and running.grad_fn is not None
        saw = [f"earlier steps' autograd graphs alive after each of {steps} steps: {', '.join(map(str, alive))}; "
               f"the running loss total is a {type(running).__name__}"
               + (" with a grad_fn (it references every step's graph)" if kept else "")]
        cause = None
        if alive[-1] > 0:
            means = (f"{alive[-1]} earlier steps' graphs (activations included) stay in memory after step {steps}, "
                     f"one more per step: the running total holds the loss tensors. Cause established: loss "
                     f"tensors kept across steps (memory)")
            cause = "loss_kept"
        else:
            means = "no step keeps an earlier step's graph alive: rules out memory kept across steps"
        return StepResult(13, "memory kept between steps", f"{steps} training steps with the code's running loss "
                          f"total; counted the earlier steps' autograd graphs still alive", saw, means, cause=cause)

    # -- 14 ------------------------------------------------------------------------------
    def checkpoint_and_resume(self) -> StepResult:
        import io

        from breaklab.canonical_setup import rng_state, seed_everything
        from breaklab.trainer import start_training, train_step

        steps = 3
        cfg, total = self.setup.config(), self.total_steps()
        seed_everything(self.setup.seed)
        training, scheduler = start_training(cfg, self.brk, total)
        for i in range(steps):
            x, y = self.batch(i)
            train_step(training, x, y, i)
            self.brk.scheduler_step(scheduler)
        buf = io.BytesIO()  # the checkpoint trainer.py writes, through the same serialiser
        torch.save({"model": training.model.state_dict(), "optimizer": training.optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": training.scaler.state_dict(),
                    "rng": rng_state()}, buf)
        checkpoint = torch.load(io.BytesIO(buf.getvalue()), map_location="cpu", weights_only=False)
        x, y = self.batch(steps)
        train_step(training, x, y, steps)  # the uninterrupted run's next step
        # A restarted process: fresh seeding, then the code's resume from the checkpoint.
        seed_everything(self.setup.seed)
        resumed, _ = start_training(cfg, self.brk, total, checkpoint)
        saved_opt = checkpoint["optimizer"]
        buffers = sum(1 for s in resumed.optimizer.state.values() if s)
        saved_buffers = sum(1 for s in saved_opt["state"].values() if s)
        lr_now, lr_saved = resumed.optimizer.param_groups[0]["lr"], saved_opt["param_groups"][0]["lr"]
        rng_restored = torch.equal(torch.get_rng_state(), checkpoint["rng"]["torch_cpu"])
        train_step(resumed, x, y, steps)
        gap = max(float((a.detach() - b.detach()).abs().max())
                  for a, b in zip(resumed.model.parameters(), training.model.parameters()))
        saw = [f"after the resume: optimizer state for {buffers} of the {saved_buffers} parameters the checkpoint "
               f"holds state for; lr {lr_now:.3g} (saved {lr_saved:.3g}); torch's RNG state "
               f"{'equals' if rng_restored else 'differs from'} the saved one",
               f"weights after one more step, resumed vs uninterrupted: largest difference {gap:.3g}"]
        cause = None
        if buffers < saved_buffers or lr_now != lr_saved:
            means = ("the resumed optimizer lacks the saved state (momentum buffers, learning rate): its first steps "
                     "differ from the uninterrupted run's. Cause established: resume without the optimizer's "
                     "state (checkpoint)")
            cause = "resume_without_optimizer_state"
        elif not rng_restored:
            means = ("the resumed run draws other random numbers (dropout masks) than the uninterrupted run would: "
                     "a resume does not reproduce the run. Cause established: resume without the RNG state "
                     "(checkpoint)")
            cause = "resume_without_rng_state"
        elif gap > 0:
            means = ("the resumed run's next step differs from the uninterrupted run's with optimizer and RNG state "
                     "restored: rules in what the checkpoint saves")
            cause = "unknown"
        else:
            means = "the resumed run takes exactly the uninterrupted run's next step: rules out checkpoint and resume"
        return StepResult(14, "checkpoint and resume", f"{steps} steps, a checkpoint as trainer.py saves it, one more "
                          f"step; then a fresh start resumed from it by the code, and the same step", saw, means,
                          cause=cause)

    STEPS = ["overfit_one_batch", "inputs_and_splits", "labels_and_batch_order", "loss_by_hand",
             "parameters_and_optimizer", "gradients_and_updates", "float16_against_float32",
             "learning_rate_sweep", "learning_rate_schedule", "layer_statistics", "train_eval_mode",
             "evaluation", "memory_between_steps", "checkpoint_and_resume"]

    def run(self) -> TriageReport:
        report = TriageReport()
        t_all = time.perf_counter()
        for name in self.STEPS:
            t0 = time.perf_counter()
            result: StepResult = getattr(self, name)()
            result.seconds = time.perf_counter() - t0
            result.of = len(self.STEPS)
            report.steps.append(result)
            self.echo(format_step(result))
            if result.cause is not None:
                break
        report.seconds = time.perf_counter() - t_all
        report.picture = self.picture
        established = [s for s in report.steps if s.cause]
        ruled_in = [f"step {s.number} ({s.title})" for s in report.steps if "rules in" in s.means]
        if established and established[0].cause != "unknown":
            report.verdict = established[0].cause
            report.explanation = established[0].means
        elif established:
            report.explanation = (f"not established by these experiments: look at step {established[0].number} "
                                  f"({established[0].title}): {established[0].means}")
        elif report.steps[0].means.startswith("the model, loss and optimizer can fit"):
            report.verdict = "healthy"
            report.explanation = f"all {len(self.STEPS)} checks passed: no fault found"
        else:
            report.explanation = ("not established by these experiments: look at "
                                  + (", ".join(ruled_in) if ruled_in else "step 1's failure to fit one batch"))
        report.fix = remedy(report.verdict).fix
        return report


# What each fault the steps can establish is, in a few words (the steps' "Cause established" lines).
FAULT_WORDS = {
    "loss_sum": "summed loss (objective)",
    "double_softmax": "double softmax (objective)",
    "nll_on_logits": "NLL on raw logits, no log-softmax (objective)",
    "mse_onehot": "mean squared error on logits in place of cross-entropy (objective)",
    "softmax_over_batch": "softmax over the batch dimension (shapes)",
    "loss_all_pairs": "labels indexed as log_p[:, y], an (N, N) matrix averaged (shapes)",
}


def format_step(r: StepResult) -> str:
    pad = " " * 6
    lines = [f"[{r.number}/{r.of}] {r.title}", f"{pad}ran:   {r.ran}"]
    lines += [f"{pad}saw:   {s}" if i == 0 else f"{pad}       {s}" for i, s in enumerate(r.saw)]
    lines.append(f"{pad}means: {r.means}")
    lines.append(f"{pad}time:  {r.seconds:.2f} s")
    return "\n".join(lines)


def format_verdict(report: TriageReport) -> str:
    at = next((s for s in report.steps if s.cause), None)
    of = report.steps[-1].of if report.steps else 0
    if at is not None and at.cause != "unknown":
        where = f"established at step {at.number} of {of}"
    elif at is not None:
        where = f"stopped at step {at.number} of {of}"
    else:
        where = f"after all {len(report.steps)} steps"
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
