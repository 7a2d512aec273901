'''The one clean training script every exercise is cut from, in its eight shapes.

Instructor-only: the clean lines are the fixes of the buggy ones, so the course kit leaves this
file out with the rest of solutions/.

The template below is an ordinary PyTorch script with three kinds of markup, all removed when it
is rendered (so nothing of it reaches the learner):

* ``[tag]line`` (``[tag] line`` when the line is not indented): the line belongs to the shapes
  with that tag only (``mlp``/``cnn`` the model, ``sgd``/``adam`` the optimizer,
  ``loader``/``index`` the batching style); a line holding only ``[tag]`` opens a block of such
  lines, ``[end]`` closes it;
* ``  #@site`` at the end of a line: the line a mutation of that name rewrites
  (solutions/exercise_mutations.py);
* ``#@begin name`` / ``#@end name`` on lines of their own: a region, the span of code where a fix
  of that mutation may be written (by default a mutation's region is its site line alone).

`render(variant)` returns the clean script's lines and where each site and region landed. The
script imports torch, torchvision and breaklab (for the Monitor and the bundled data's folder);
breaklab itself never imports it.
'''
from __future__ import annotations

import re
from dataclasses import dataclass, field

from breaklab.exercises.variants import Variant

# Why AMP_BY_MODEL (breaklab/exercises/variants.py) trains the MLP in float16 and the CNN in
# float32: in the MLP a missing loss scale shows (7-8% of its first layer's gradient entries
# underflow to exactly 0), while the CNN's convolution gradients, sums over many positions, do not
# underflow (measured: no symptom). In float32 a missing zero_grad shows; under a GradScaler it does
# not, since the stale unscaled gradient is 65536 times smaller than the new scaled one.

# The learning rate of each optimizer, as it is written in the script. Measured: every variant
# reaches test accuracy 0.93+ in 3 epochs with these (docs/EXERCISES.md).
LEARNING_RATES = {"sgd": "0.05", "adam": "1e-3"}

TEMPLATE = '''\
"""Train a {model_words} on MNIST digits and report its test accuracy.

Usage: python train.py

It trains on the sample of MNIST that ships with breaklab (4,000 training and 1,000 test
images), prints the loss and accuracy after every epoch, and records per-step measurements in
run/ (read them with `breaklab doctor run`).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
[loader] from torch.utils.data import DataLoader, TensorDataset
from torchvision import datasets

from breaklab import Monitor
from breaklab.canonical_setup import mnist_sample_root

SEED = 0
EPOCHS = 3
BATCH_SIZE = 64
LR = {lr}  #@huge_lr
DEVICE = "cpu"
USE_AMP = {amp}  # float16 autocast for the forward pass
OUT_DIR = "run"
MEAN, STD = 0.1307, 0.3081


def load_mnist(train, generator):
    """One split of the sample: images as normalised (N, 1, 28, 28) floats, and labels."""
    dataset = datasets.MNIST(mnist_sample_root(), train=train)
    images = dataset.data.float().div(255).sub(MEAN).div(STD).unsqueeze(1)
    # The files are sorted by digit.
    order = torch.randperm(len(images), generator=generator)
    return images[order], dataset.targets[order]  #@label_permute


[mlp]
class MLP(nn.Module):
    """784 -> 256 -> BatchNorm -> ReLU -> 10."""

    def __init__(self, hidden=256):
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, hidden)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.fc1(x.flatten(1))))
        return self.fc2(x)  #@double_softmax
[end]
[cnn]
class SmallCNN(nn.Module):
    """Two strided convolutions with BatchNorm and ReLU (28 -> 14 -> 7), then a linear layer."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, kernel_size=5, stride=2, padding=2)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.flatten(1))  #@double_softmax
[end]
[index]


def batches(images, labels, batch_size, generator):
    """Minibatches of (images, labels) in a new random order on every call."""
    order = torch.randperm(len(labels), generator=generator)
    for idx in order.split(batch_size):
        yield images[idx], labels[idx]
[end]


def train_one_epoch(model, data, optimizer, scaler, criterion, monitor):
    """One pass over the training batches; returns the mean training loss."""
    model.train()  #@eval_mode
    total_loss, seen = 0.0, 0
#@begin missing_zero_grad
    for images, labels in data:
        images, labels = images.to(DEVICE), labels.to(DEVICE)
        optimizer.zero_grad()  #@missing_zero_grad
        with torch.autocast(DEVICE, dtype=torch.float16, enabled=USE_AMP):
            logits = model(images)
            loss = criterion(logits, labels)
        scaler.scale(loss).backward()
        monitor.before_step()
        scaler.step(optimizer)
        scaler.update()
        monitor.after_step(loss, outputs=logits, targets=labels)
#@end missing_zero_grad
        total_loss += loss.item() * len(labels)
        seen += len(labels)
    return total_loss / seen


@torch.no_grad()
def evaluate(model, images, labels, criterion):
    """Loss and accuracy on a whole split, in evaluation mode."""
    model.eval()
    images, labels = images.to(DEVICE), labels.to(DEVICE)
    logits = model(images)
    loss = criterion(logits, labels).item()
    accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
    return loss, accuracy


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(SEED)
    train_images, train_labels = load_mnist(train=True, generator=generator)
    test_images, test_labels = load_mnist(train=False, generator=generator)
[loader]    train_loader = DataLoader(TensorDataset(train_images, train_labels), batch_size=BATCH_SIZE,
[loader]                              shuffle=True, generator=generator)

[mlp]    model = MLP().to(DEVICE)
[cnn]    model = SmallCNN().to(DEVICE)
[sgd]    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
[adam]    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    criterion = nn.CrossEntropyLoss()  #@loss_sum
    scaler = torch.amp.GradScaler(DEVICE, enabled=USE_AMP)  #@amp_no_scaling
    monitor = Monitor(model, optimizer, out=OUT_DIR, scaler=scaler)

    for epoch in range(EPOCHS):
[loader]        train_loss = train_one_epoch(model, train_loader, optimizer, scaler, criterion, monitor)
[index]        epoch_batches = batches(train_images, train_labels, BATCH_SIZE, generator)
[index]        train_loss = train_one_epoch(model, epoch_batches, optimizer, scaler, criterion, monitor)
        test_loss, test_accuracy = evaluate(model, test_images, test_labels, criterion)
        monitor.epoch(test_acc=test_accuracy, test_loss=test_loss)
        print(f"epoch {{epoch + 1}}/{{EPOCHS}}: train loss {{train_loss:.4f}}, "
              f"test loss {{test_loss:.4f}}, test accuracy {{test_accuracy:.3f}}")
    monitor.close()
    print(f"measurements in {{OUT_DIR}}/ (read them with: breaklab doctor {{OUT_DIR}})")


if __name__ == "__main__":
    main()
'''

MODEL_WORDS = {"mlp": "small MLP", "cnn": "small CNN"}

_TAG = re.compile(r"^\[(\w+)\](?: (?=\S))?")
_SITE = re.compile(r"  #@(\w+)$")
_REGION = re.compile(r"^#@(begin|end) (\w+)$")


@dataclass
class Script:
    """A rendered script: its lines (without newlines), and where each site and region is."""

    lines: list[str]
    sites: dict[str, int] = field(default_factory=dict)            # mutation -> line index
    regions: dict[str, tuple[int, int]] = field(default_factory=dict)  # mutation -> [start, end)

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(variant: Variant) -> Script:
    """The clean script of one variant, with the positions of every site and region."""
    text = TEMPLATE.format(model_words=MODEL_WORDS[variant.model], lr=LEARNING_RATES[variant.optimizer],
                           amp=variant.amp)
    tags = variant.tags
    script = Script([])
    block: str | None = None
    opened: dict[str, int] = {}
    for raw in text.splitlines():
        if raw == "[end]":
            block = None
            continue
        whole = re.fullmatch(r"\[(\w+)\]", raw)
        if whole:
            block = whole.group(1)
            continue
        if block is not None and block not in tags:
            continue
        line = raw
        tag = _TAG.match(line)
        if tag:
            if tag.group(1) not in tags:
                continue
            line = line[tag.end():]
        region = _REGION.match(line)
        if region:
            kind, name = region.groups()
            if kind == "begin":
                opened[name] = len(script.lines)
            else:
                script.regions[name] = (opened.pop(name), len(script.lines))
            continue
        site = _SITE.search(line)
        if site:
            script.sites[site.group(1)] = len(script.lines)
            line = line[:site.start()]
        script.lines.append(line)
    return script
