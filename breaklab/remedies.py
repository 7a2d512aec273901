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
    "no_shuffle": Remedy(
        "print the labels of the first batches: one class per batch means the data is read in its stored "
        "(sorted) order",
        "shuffle the training set every epoch (a new permutation per epoch, or DataLoader(shuffle=True))"),
    "raw_test_inputs": Remedy(
        "print the mean and standard deviation of a training batch and a test batch: they should match",
        "preprocess the test inputs exactly as the training inputs (same normalisation constants)"),
    "nan_inputs": Remedy(
        "check torch.isfinite(x).all() for every training batch; find the batch of the first non-finite step",
        "clean or drop the non-finite inputs before training (and assert finiteness when loading)"),
    "label_shift": Remedy(
        "print a few training images with the labels the loss sees next to the test labels of similar digits",
        "give the loss the dataset's labels unchanged (remove the transformation of the targets)"),
    "nll_on_logits": Remedy(
        "print the loss at step 0: ln 10 = 2.30 for a fresh 10-class model; a value near 0 or below 0 means "
        "nll_loss got raw logits",
        "use F.cross_entropy on logits (or F.nll_loss on F.log_softmax(logits, dim=1))"),
    "mse_onehot": Remedy(
        "print the loss at step 0: a mean squared error against one-hot targets starts near 0.1, a "
        "cross-entropy at ln 10",
        "train the classifier with F.cross_entropy(logits, labels)"),
    "acc_broadcast": Remedy(
        "print the shapes of the predictions and the labels in the accuracy: (N, 1) against (N,) broadcasts "
        "to (N, N)",
        "compare predictions of shape (N,) with labels of shape (N,): logits.argmax(dim=1)"),
    "softmax_over_batch": Remedy(
        "print the loss at step 0: ln(batch size) instead of ln 10 means the softmax runs over the batch",
        "normalise over the classes: log_softmax(logits, dim=1)"),
    "loss_all_pairs": Remedy(
        "print the shape of the tensor the loss averages: (N, N) instead of (N,) means every input is "
        "scored against every label",
        "pick each example's own label: log_probs[torch.arange(N), y] (or F.cross_entropy)"),
    "clip_before_unscale": Remedy(
        "print the gradient norm before and after clipping under AMP: clipping before scaler.unscale_ "
        "clips the scaled gradients",
        "call scaler.unscale_(optimizer) before clip_grad_norm_, then scaler.step(optimizer)"),
    "fp16_overflow": Remedy(
        "rerun the loss in float32 on the batch of the first non-finite step: finite there means float16 "
        "overflowed",
        "compute the loss with F.cross_entropy (it runs in float32 under autocast), not exp/log by hand"),
    "log_of_softmax_amp": Remedy(
        "count exact zeros in softmax(logits) under autocast: log(0) = -inf makes the gradients non-finite",
        "use F.log_softmax (or F.cross_entropy) instead of torch.log(softmax(...))"),
    "tiny_lr": Remedy(
        "print optimizer.param_groups[0]['lr'] and run a short learning-rate sweep (x10, x100, x1000)",
        "give the optimizer the learning rate you asked for"),
    "zero_init": Remedy(
        "print the weights' standard deviation after initialisation: 0 means every unit computes the same",
        "initialise weights randomly (the layer's default or He init), not with zeros"),
    "frozen_layer": Remedy(
        "list the parameters with requires_grad False: [n for n, p in model.named_parameters() if not "
        "p.requires_grad]",
        "set requires_grad back to True on the layers meant to train"),
    "layer_not_in_optimizer": Remedy(
        "compare the optimizer's parameters with the model's: {id(p) for g in optimizer.param_groups for p in "
        "g['params']} vs model.parameters()",
        "give the optimizer every parameter: optimizer = SGD(model.parameters(), ...)"),
    "loss_kept": Remedy(
        "look at what accumulates across steps: a running total of loss tensors keeps every step's graph",
        "accumulate numbers: total += loss.item() (or loss.detach())"),
    "eval_with_grad": Remedy(
        "check torch.is_grad_enabled() inside the evaluation loop",
        "evaluate under torch.no_grad() (or torch.inference_mode())"),
    "resume_without_optimizer_state": Remedy(
        "compare optimizer.state_dict() right after resuming with the one saved in the checkpoint",
        "save and load the optimizer's (and scheduler's) state with the model's"),
    "healthy": Remedy("none needed: compare with a run of another seed to see the spread", "none needed"),
    "unknown": Remedy(
        "run `breaklab triage` on this run: it re-runs short experiments (one-batch overfit, loss by hand, "
        "gradients, a learning-rate sweep)",
        "none known yet: read the evidence and the rules-in lines, and run the next check"),
}


def remedy(fault: str) -> Remedy:
    return REMEDIES.get(fault, REMEDIES["unknown"])


# The faults `breaklab triage` establishes beyond the ones above, each with the experiment that
# shows it and the change that removes it. An entry above for the same fault takes precedence.
_TRIAGE_REMEDIES: dict[str, Remedy] = {
    "nan_inputs": Remedy(
        "count the training inputs with a non-finite value: int((~torch.isfinite(x_train)).any(dim=1).sum())",
        "clean or drop the examples with NaN or inf values before training (and assert torch.isfinite(x).all())"),
    "test_leak": Remedy(
        "count the test examples that are also in the training inputs (exact row matches), and compare the "
        "training set's size with the training split's",
        "train on the training split only; keep the test split for evaluation"),
    "raw_test_inputs": Remedy(
        "print the mean and std of the training inputs and of the test inputs as the code feeds them",
        "preprocess the test inputs exactly as the training inputs (the same normalisation)"),
    "no_shuffle": Remedy(
        "count the classes in each of the first batches the loop draws: one class per batch means sorted data",
        "draw a new random order of the training examples every epoch"),
    "label_shift": Remedy(
        "print the labels the loss sees next to the dataset's labels for the same images",
        "feed the loss each image's own label, unchanged"),
    "nll_on_logits": Remedy(
        "compare the code's loss with -logits[range(N), y].mean() and with F.cross_entropy(logits, y)",
        "use F.cross_entropy(logits, y), or F.nll_loss(F.log_softmax(logits, dim=1), y)"),
    "mse_onehot": Remedy(
        "compare the code's loss with F.mse_loss(logits, one_hot(y)) and with F.cross_entropy(logits, y)",
        "train the classifier with F.cross_entropy(logits, y)"),
    "softmax_over_batch": Remedy(
        "compare the code's loss with the cross-entropy using log_softmax over dim 0 and over dim 1",
        "take the softmax over the classes: log_softmax(logits, dim=1) (or F.cross_entropy)"),
    "loss_all_pairs": Remedy(
        "print the shape of the tensor the code averages into the loss: (N, N) instead of (N,)",
        "pick each example's own label: log_probs[torch.arange(N), y] (or F.cross_entropy)"),
    "zero_init": Remedy(
        "print (p == 0).all() for every weight matrix right after the model is built",
        "keep a random initialisation (He/Kaiming for ReLU layers); zero only the biases"),
    "frozen_layer": Remedy(
        "print [n for n, p in model.named_parameters() if not p.requires_grad]",
        "leave requires_grad on for every layer that should learn"),
    "layer_not_in_optimizer": Remedy(
        "compare the model's parameters with those in optimizer.param_groups",
        "give the optimizer all the parameters: torch.optim.SGD(model.parameters(), ...)"),
    "fp16_overflow": Remedy(
        "add a constant to every logit (a cross-entropy does not change) and compute the code's loss in float16 "
        "and float32",
        "use F.cross_entropy (it computes log-sum-exp stably, in float32 under autocast)"),
    "log_of_softmax_amp": Remedy(
        "compute the gradients of a confident model in float16 and in float32, and check them for NaN",
        "use F.cross_entropy or F.log_softmax instead of torch.log(F.softmax(...))"),
    "clip_before_unscale": Remedy(
        "print the gradient norm the optimizer gets: clip norm / loss scale means it was clipped while scaled",
        "call scaler.unscale_(optimizer) before clip_grad_norm_"),
    "tiny_lr": Remedy(
        "print optimizer.param_groups[0]['lr'] and compare one update with lr x gradient",
        "give the optimizer the learning rate you asked for"),
    "scheduler_not_stepped": Remedy(
        "print optimizer.param_groups[0]['lr'] over the first steps: does it follow the schedule?",
        "call scheduler.step() after every optimizer.step() (per step for a per-step schedule)"),
    "acc_broadcast": Remedy(
        "print the shapes of the predictions and the labels before comparing them",
        "compare predictions of shape (N,) with the labels: argmax(dim=1) without keepdim"),
    "eval_with_grad": Remedy(
        "check torch.is_grad_enabled() inside the test pass, or count the bytes autograd saves there",
        "run the evaluation under torch.no_grad() (or torch.inference_mode())"),
    "loss_kept": Remedy(
        "check whether the running total is a tensor with a grad_fn after a few steps",
        "add loss.item() (a number) to the running total, not the loss tensor"),
    "resume_without_optimizer_state": Remedy(
        "after resuming, compare optimizer.state_dict() with the checkpoint's (momentum buffers, lr)",
        "save optimizer.state_dict() in the checkpoint and load it on resume"),
    "resume_without_rng_state": Remedy(
        "after resuming, compare torch.get_rng_state() with the checkpoint's saved RNG state",
        "save every RNG's state in the checkpoint and restore it on resume"),
}
for _fault, _remedy in _TRIAGE_REMEDIES.items():
    REMEDIES.setdefault(_fault, _remedy)
