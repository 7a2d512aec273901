"""Student reports for the explanation and integrity checks: honest ones, written independently in
plain student language (none reuses a sentence of solutions/*/WRITEUP.md), and the bad kinds.

Every number in the honest reports is from the seed-42, 1-epoch runs on the bundled sample
(steps 0-9 are the same for any number of epochs); tests/fixtures/broken_runs_seed42.json holds
those runs' records at the steps the reports cite, so the scoring tests need no training.

Two honest reports per break, by different "students". They are split once, before any threshold
or concept pattern was tuned:
    CALIBRATION  huge_lr, missing_zero_grad, loss_sum, label_permute: the concept patterns of
                 solutions/*/rubric.json and the near-duplicate threshold were chosen on these;
    EVALUATION   double_softmax, eval_mode, amp_no_scaling: held out, scored with the chosen rules.
"""
from __future__ import annotations

import random
import re

CALIBRATION_BREAKS = ("huge_lr", "missing_zero_grad", "loss_sum", "label_permute")
EVALUATION_BREAKS = ("double_softmax", "eval_mode", "amp_no_scaling")

HONEST: dict[str, list[str]] = {}

HONEST["huge_lr"] = ["""# Report: huge_lr, seed 42

## Symptoms

I ran the broken setup for one epoch next to a clean run. In the broken run the loss gets worse
right away: it is 2.31 at the first step, 7.66 by step 2 and 37.6 at step 9, while the clean run
is already down to 0.60 at step 9. The test accuracy after the epoch was only 0.207 compared to
0.916 for the clean run. The dead_unit_frac column also jumps: 68% of the hidden units get zero
gradient at step 5 and 99% by the end.

```symptom
metric: loss
step: 2
value: 7.66
```

## Root cause

The learning_rate hook in breaks/huge_lr.py multiplies the learning rate by 100, so the optimizer
gets 10 instead of 0.1 (the lr column shows 10.0 at step 9). With a step size that big every SGD
update jumps way past the minimum, so the loss goes up instead of down and the training diverges.
The giant updates also push the first layer's pre-activations below zero for most units, and since
a ReLU with negative input has zero gradient those units are dead and can never come back.

## Fix

I changed the hook to return lr without the factor of 100, so the optimizer uses the learning rate
from the config. That is the only change.

## Verification

After the fix, with the break still on, the loss falls from 2.31 to 0.60 at step 9 like the clean
run, no hidden unit dies, and the test accuracy after one epoch is 0.916, the same as the clean run.
""", """# Report: huge_lr, seed 42

## Symptoms

Loss should go down but it blows up. At step 0 the loss is 2.31 and at step 9 it is 37.6; around
step 20 it was over 440. After 1 epoch the test accuracy is 0.21 (chance is 0.1, a normal run gets
0.92). Most of the hidden layer stops getting any gradient, 79% of the units at step 9.

```symptom
metric: loss
step: 9
value: 37.6
```

## Root cause

I printed optimizer.param_groups[0]['lr'] and it was 10 at the peak of the schedule although the
config says 0.1. The HugeLR class returns lr*100. Because each step is a hundred times larger than
it should be, the weights move too far and land on the other side of the valley, where the loss is
higher, and this repeats so the loss keeps growing. When the weights get that big, many ReLUs in
the first layer only ever see negative inputs, which means they output zero and pass back zero
gradient, so they never learn again.

## Fix

Removed the `* 100` from learning_rate in breaks/huge_lr.py. Now it returns the lr it is given.

## Verification

Ran again with the fix: the loss at step 9 is 0.60 instead of 37.6, the test accuracy is 0.916
which matches the clean run exactly, and no units are stuck at zero gradient any more.
"""]

HONEST["missing_zero_grad"] = ["""# Report: missing_zero_grad, seed 42

## Symptoms

The gradient norm keeps going up from the very first steps: 1.97 at step 0, 4.32 at step 2, 9.46
at step 9, and 111 at the last step of the epoch. In the clean run it goes down to about 1.1. The
loss looks fine for the first ten steps (0.616 at step 9) but later it jumps to 65 around step 40,
and the final test accuracy is 0.588 instead of 0.916.

```symptom
metric: grad_norm
step: 9
value: 9.46
```

## Root cause

In PyTorch, calling backward() does not replace what is in each parameter's .grad, it adds to it.
The training loop relies on the zero_grad hook to empty the .grad tensors before the next backward,
but in this break the hook is empty, so nothing gets cleared. That means the gradient used at step
t is really the total of all the gradients from step 0 to t, and this total gets bigger and bigger,
which is exactly the growing grad_norm I measured. Eventually the steps become so big that the loss
blows up.

## Fix

I made the zero_grad hook call optimizer.zero_grad(set_to_none=True) again so every step starts
from empty gradients.

## Verification

With my fix the grad norm at step 9 is 1.11 (same as clean), it never grows, and the test accuracy
after one epoch is 0.916 like the clean run.
""", """# Report: missing_zero_grad, seed 42

## Symptoms

Something is off with the gradients. I looked at grad_norm: it was 1.97 at step 0 but 6.78 at step
5 and 23.2 at step 20, it only goes up. A clean run stays around 1 to 2. The loss went crazy in the
second half of the epoch (15.0 at step 20, then 65.1 at step 40) and test accuracy ended at 0.59.

```symptom
metric: grad_norm
step: 5
value: 6.78
```

## Root cause

The optimizer never resets the gradients between iterations. Each loss.backward() call sums its
result onto the gradients that are already stored from earlier batches, so after n steps the
optimizer is stepping with n gradients piled on top of each other. This is why the norm climbs
almost every step, and since momentum is on as well the weight updates get larger and larger until
training falls apart. The MissingZeroGrad hook just has pass in it instead of zeroing.

## Fix

Put optimizer.zero_grad(set_to_none=True) back in the hook so the old gradients are thrown away
before each backward pass.

## Verification

After the change grad_norm is 1.11 at step 9 instead of 9.46 and does not keep rising, the loss
curve looks like the clean one, and the test accuracy is 0.916 after one epoch.
"""]

HONEST["loss_sum"] = ["""# Report: loss_sum, seed 42

## Symptoms

The very first logged loss is 147.6, while a fresh 10-class model should start near 2.3. That is
almost exactly 64 times 2.31, and 64 is our batch size. The gradient norm at step 0 is 126 where the
clean run has 1.97. After that training goes unstable: the loss is 527 at step 9, 69% of the hidden
units are dead at step 9, and the test accuracy after one epoch is 0.227.

```symptom
metric: loss
step: 0
value: 147.6
```

## Root cause

The loss hook calls cross_entropy with reduction="sum", so the per-example losses are added up over
the batch instead of averaged. Because the loss is 64 times bigger, every gradient is 64 times
bigger too, and plain SGD turns that straight into a step that is 64 times larger than intended. In
effect the learning rate becomes 6.4 instead of 0.1, which makes the updates overshoot and kills a
lot of ReLU units, the same picture as a too large learning rate.

## Fix

I switched the reduction back to "mean" in breaks/loss_sum.py. Changing the learning rate instead
would only hide the problem until someone changes the batch size.

## Verification

With the fix the loss starts at 2.31, the gradient norm at step 0 is 1.97 again, and test accuracy
after one epoch is 0.916, the same as the clean run.
""", """# Report: loss_sum, seed 42

## Symptoms

The numbers are huge from the start. Loss at step 0 is 148 and at step 2 it is 259, and the
gradient norm is 294 at step 2 (a normal run is around 2). The accuracy on the test set after the
epoch is 0.23, close to guessing. Almost all ReLU units stop getting gradient by the end of the
epoch (99%).

```symptom
metric: grad_norm
step: 0
value: 126
```

## Root cause

The criterion adds up the loss of all 64 images in the batch instead of taking the average, because
LossSum.loss passes reduction="sum". A sum over the batch is the mean times the batch size, so the
whole objective and its gradients are scaled up by 64, and this is why the first loss is 148 and not
2.3. The optimizer does not know about this scaling, which means it moves the weights 64 times too
far on each step and the run becomes unstable.

## Fix

Changed reduction="sum" to reduction="mean" (one line in the hook).

## Verification

I reran seed 42: the initial loss is 2.31, the grad norm is 1.97 at step 0, and the test accuracy
is 0.916 after one epoch, identical to the clean baseline.
"""]

HONEST["label_permute"] = ["""# Report: label_permute, seed 42

## Symptoms

The model just does not learn. The loss stays around 2.3 the whole time: 2.29 at step 0, 2.46 at
step 9, still 2.37 at the last step, while the clean run is at 0.60 by step 9. The test accuracy
after one epoch is 0.102, basically one in ten, which is what you get by guessing. The gradients
themselves look normal (grad norm 1.45 at step 0), nothing explodes.

```symptom
metric: loss
step: 9
value: 2.46
```

## Root cause

The targets hook shuffles the labels inside each batch with its own random permutation, separately
from the images. So the label the loss sees for an image is the label of some other image in the
batch. Because there is no relation left between the input and its label, the network cannot do
better than predicting every class with equal probability, and the cross entropy of that is
ln(10), about 2.30, which is exactly where the loss is stuck.

## Fix

I made the targets hook give back y as it is, so each image keeps its own label.

## Verification

After the fix the loss at step 9 is 0.60 and test accuracy after one epoch is 0.916, the same as
the clean run, so the model learns again.
""", """# Report: label_permute, seed 42

## Symptoms

Training loss is flat. It starts at 2.29 and after one epoch the mean training loss is 2.55, and
the training accuracy is only 0.096. On the test set accuracy is 0.102. For ten classes that is
guessing level.

```symptom
metric: test_acc
epoch: 0
value: 0.102
```

## Root cause

In LabelPermute.targets the labels go through torch.randperm before they reach the loss, and the
images do not go through the same permutation. This means the pairs (image, label) are scrambled:
the network is asked to predict a random label for each picture. When the answer is random there is
nothing to learn, so the best output is a flat distribution over the 10 digits and the loss sits at
log 10.

## Fix

Return the labels in their original order from the targets hook, so image i is trained with label
i again.

## Verification

Reran the same seed with the change: test accuracy 0.916 after one epoch instead of 0.102 and the
loss goes down like in the clean run.
"""]

HONEST["double_softmax"] = ["""# Report: double_softmax, seed 42

## Symptoms

The model learns, but slowly and the loss gets stuck. The loss is 2.30 at step 0, still 2.25 at
step 9, and ends the epoch at 1.58, while a clean run goes down to about 0.1. Test accuracy is 0.841
after one epoch, lower than the clean 0.916. The logit_rowsum_mean column is exactly 1.0 at every
step, which means the numbers going into the loss add up to one per example. The gradient norm is
also tiny, 0.193 at step 0 against 1.97 for the clean run.

```symptom
metric: logit_rowsum_mean
step: 0
value: 1.0
```

## Root cause

The outputs hook turns the network's scores into probabilities with softmax, and then F.cross_entropy
does its own log_softmax on top of that, so the model output is normalised two times. Since the
values fed to cross_entropy are all between 0 and 1, the biggest difference between two classes is
at most 1, which means the loss cannot go much lower than about 1.5 even for a correct answer.
Putting the extra softmax in front also flattens the gradients, so learning is slow.

## Fix

I removed the softmax from the outputs hook, so cross_entropy gets the raw scores it expects.

## Verification

With the fix the row sums are no longer 1 (about -0.1 at step 0), the loss drops to about 0.1 by
the end of the epoch, and test accuracy is 0.916 like the clean run.
""", """# Report: double_softmax, seed 42

## Symptoms

At first I thought it was working, because test accuracy is 0.84. But the training loss stays high
(1.92 on average over the epoch and 1.58 at the last step), and the outputs that go into the loss
sum to 1.0 for every example, so they are probabilities and not logits. The gradients are about ten
times smaller than in a clean run (0.29 at step 9).

```symptom
metric: loss
step: 62
value: 1.58
```

## Root cause

cross_entropy in PyTorch wants unnormalised logits because it applies log softmax internally. The
DoubleSoftmax hook already applies softmax to the logits, so softmax happens twice. The second one
only sees inputs squeezed into [0, 1], so its output can never be very confident, and that puts a
floor under the loss. It also shrinks the gradient, which is why training is so slow.

## Fix

Changed the hook to return the logits unchanged.

## Verification

After the change the loss goes down to about 0.10 in one epoch and accuracy is 0.916, the same as
the clean run; the outputs are no longer probabilities.
"""]

HONEST["eval_mode"] = ["""# Report: eval_mode, seed 42

## Symptoms

This one was hard to see because accuracy is fine: 0.919 on the test set after one epoch. What is
wrong is the BatchNorm layer. bn_running_var_mean stays exactly 1.0 and bn_running_mean_abs stays 0
for all 63 steps, while in the clean run they grow (1.27 and 0.38 at step 9). Also some hidden units
die that do not die in the clean run: 17.6% have no gradient at the end of the epoch.

```symptom
metric: bn_running_var_mean
step: 9
value: 1.0
```

## Root cause

The set_mode hook puts the model in eval mode for the training steps instead of train mode. In eval
mode BatchNorm does not use the statistics of the current batch and it does not update its running
mean and variance either, so they stay at the values they were created with (0 and 1). Dropout is
also switched off. Because the layer never normalises with real batch statistics, some first-layer
units drift negative and stop firing, which is why units die here.

## Fix

The hook now calls model.train() so the training steps run in training mode.

## Verification

After the fix the running variance moves from the first step (1.27 at step 9), no units die, and the
test accuracy after one epoch is 0.916, exactly what the clean run gives.
""", """# Report: eval_mode, seed 42

## Symptoms

Accuracy after one epoch is 0.919 so at first it looks OK. But the BatchNorm running statistics
never change: the running variance is 1.0 and the running mean is 0 at every single step. In a clean
run the running variance is 1.27 at step 9 and keeps going up. By step 40, 14.5% of hidden units are
dead, which the clean run does not have.

```symptom
metric: bn_running_mean_abs
step: 9
value: 0.0
```

## Root cause

model.eval() is called before each training step when it should be model.train(). With the model in
evaluation mode, batch norm normalises with its stored running averages and never updates them, so
they are frozen at their initial values, and dropout does nothing. The network is therefore trained
without proper normalisation, and the statistics that the test-time model depends on are never
learned.

## Fix

Replaced model.eval() by model.train() in EvalMode.set_mode.

## Verification

With the fix the running mean and variance update every step, no hidden units die, and the test
accuracy is 0.916, the same as the clean run.
"""]

HONEST["amp_no_scaling"] = ["""# Report: amp_no_scaling, seed 42

## Symptoms

Nothing looks broken in the loss or accuracy: test accuracy is 0.916 after one epoch, like the clean
run. The difference is in the gradients. At step 0, 14% of the first-layer weight gradients are
exactly zero, and still 13% at step 2, while the clean float32 run has none. These zeros are spread
out, they are not whole dead rows (dead_unit_frac is 0), and amp_scale stays 1.0.

```symptom
metric: zero_grad_frac_by_layer.fc1.weight
step: 0
value: 0.141
```

## Root cause

The run uses autocast with float16, but the GradScaler is turned off by the use_grad_scaler hook.
float16 has a much smaller range than float32, so very small gradient values cannot be stored and
become exactly 0, which is why the zero fraction is so high. Without loss scaling nothing multiplies
the loss before backward, so these tiny gradients are lost and those weights do not get updated.

## Fix

I made use_grad_scaler return amp, so whenever mixed precision is on the GradScaler is on too.

## Verification

After the fix there are no exact zeros in the first-layer gradient at step 9, amp_scale is 65536,
and test accuracy stays 0.916.
""", """# Report: amp_no_scaling, seed 42

## Symptoms

The training curve looks normal and the test accuracy is 0.916. But zero_grad_frac is strange: 13.9%
of all gradient entries are exactly zero at step 0 and 11.4% at the last step, where a float32 run
has 0.01%. The amp_scale column says 1.0 everywhere, so no scaling is happening.

```symptom
metric: zero_grad_frac
step: 0
value: 0.139
```

## Root cause

With mixed precision the backward pass computes gradients in half precision. Half precision cannot
store numbers below about 6e-8, so small gradients get flushed to zero. The normal protection is the
GradScaler: it multiplies the loss by a big factor so that the gradients are big enough, and divides
them again before the optimizer step. In this break the scaler is disabled, so the gradients
underflow and part of the network silently stops learning.

## Fix

Enabled the GradScaler whenever autocast is used (use_grad_scaler returns amp instead of False).

## Verification

With the scaler on, the fraction of exactly-zero gradients goes back to almost none, amp_scale is
65536, and the accuracy is unchanged at 0.916.
"""]

# ---------------------------------------------------------------------------------------------
# The bad kinds, for huge_lr (the broken run of tests/fixtures/broken_runs_seed42.json)
# ---------------------------------------------------------------------------------------------

KEYWORD_LIST = """# Report: huge_lr, seed 42

## Symptoms

loss explodes, diverges, overshoot, dead ReLU, dead units, loss 7.66, 37.6, 68%

```symptom
metric: loss
step: 2
value: 7.66
```

## Root cause

learning rate too large, 100x, lr too high, hundred times, overshoot, divergence, exploding loss,
dead ReLUs, relu

## Fix

learning rate, lr, hook, return lr

## Verification

loss down, accuracy 0.916, no dead units, no divergence
"""

FIFTEEN_WORDS = """# Report: huge_lr, seed 42

## Root cause

The learning rate was 100 times too large, so updates overshoot and loss reached 37.6.
"""

EMPTY_HEADINGS = """# Report: huge_lr, seed 42

## Symptoms

```symptom
metric: loss
step: 2
value: 7.66
```

## Root cause

## Fix

## Verification
"""

# ---------------------------------------------------------------------------------------------
# Lightly edited copies: what a student who copies and "rewords a bit" hands in
# ---------------------------------------------------------------------------------------------

SYNONYMS = {
    "the": "this", "is": "was", "was": "is", "loss": "cost", "run": "experiment", "step": "iteration",
    "clean": "normal", "broken": "buggy", "so": "thus", "because": "since", "large": "big",
    "big": "large", "gets": "becomes", "shows": "displays", "after": "following", "fix": "change",
    "hook": "function", "model": "network", "gradient": "grad", "gradients": "grads", "very": "really",
    "also": "too", "which": "that", "first": "initial", "like": "as", "stays": "remains",
}


def light_edit(text: str, rate: float, seed: int) -> str:
    """A copy of text with about `rate` of its words changed: a synonym where one is known, else the
    word dropped, with a sentence of the copier's own added at the end of each section."""
    rng = random.Random(seed)
    out_lines = []
    in_block = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_block = not in_block
        if in_block or line.startswith("#") or line.startswith("```") or not line.strip():
            if line.startswith("## ") and out_lines and out_lines[-1] == "":
                out_lines.insert(len(out_lines) - 1, "I checked this twice to be sure.")
            out_lines.append(line)
            continue
        words = line.split(" ")
        edited = []
        for w in words:
            if rng.random() < rate:
                core = re.sub(r"\W", "", w).lower()
                if core in SYNONYMS:
                    edited.append(w.lower().replace(core, SYNONYMS[core]))
                    continue
                if rng.random() < 0.5:
                    continue  # dropped
            edited.append(w)
        out_lines.append(" ".join(edited))
    return "\n".join(out_lines) + "\n"
