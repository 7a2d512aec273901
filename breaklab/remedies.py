"""What to check next and what to change, per fault: one text each, shared by the doctor's
findings and triage's verdicts. These are the answers a diagnosis gives, so they live with the
diagnosis and not in breaks/, where a learner reads the bugs themselves."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Remedy:
    next_check: str   # the experiment that confirms the fault
    fix: str          # the minimal change that removes it


REMEDIES: dict[str, Remedy] = {
    "loss_sum": Remedy(
        "compute the loss by hand on one batch (F.cross_entropy(logits, y), reduction 'mean') and compare "
        "it with the code's loss: they differ by the batch size",
        "average the loss over the batch: F.cross_entropy(outputs, y) (reduction='mean', the default), "
        "not reduction='sum'"),
    "double_softmax": Remedy(
        "print logits.sum(dim=1) right before the loss: 1.0 for every row means a softmax was applied "
        "before F.cross_entropy",
        "feed raw logits to F.cross_entropy (it applies log-softmax itself): remove the softmax"),
    "eval_mode": Remedy(
        "print model.training inside the training step (it should be True) and look for a model.eval() "
        "with no model.train() after it",
        "call model.train() before the training steps (after every evaluation)"),
    "missing_zero_grad": Remedy(
        "after two steps on the same batch, compare p.grad with a fresh backward pass: if it equals the "
        "sum of both, .grad is never cleared",
        "call optimizer.zero_grad(set_to_none=True) before loss.backward() in every step"),
    "huge_lr": Remedy(
        "a learning-rate sweep: a few steps at the learning rate / 1000, /100, /10 and x1; and print "
        "optimizer.param_groups[0]['lr']",
        "give the optimizer the learning rate you asked for (check optimizer.param_groups[0]['lr'])"),
    "amp_no_scaling": Remedy(
        "compute one batch's gradients with autocast off (float32) and count exact zeros in "
        "the first layer's weight .grad (fc1.weight.grad in trainer.py): none in float32, several % in unscaled float16",
        "use torch.amp.GradScaler: scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()"),
    "label_permute": Remedy(
        "show a grid of inputs with the labels the loss sees: do they match? And check that images and "
        "labels are indexed by the same permutation",
        "index images and labels with the same indices (one loader, one shuffle)"),
    "healthy": Remedy("none needed: compare with a run of another seed to see the spread", "none needed"),
    "unknown": Remedy(
        "run `breaklab triage` on this run: it re-runs short experiments (one-batch overfit, loss by hand, "
        "gradients, a learning-rate sweep)",
        "none known yet: read the evidence and the rules-in lines, and run the next check"),
}


def remedy(fault: str) -> Remedy:
    return REMEDIES.get(fault, REMEDIES["unknown"])
