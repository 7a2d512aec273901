"""huge_lr: the learning rate is 100 times too large (for example 10 instead of 0.1).

A slipped exponent or a learning rate tuned for another optimizer. Each step overshoots: the
loss rises instead of falling, the update is as large as the weights themselves, and ReLU units
are knocked into the region where they never fire again (their gradient is exactly zero).
"""
from breaklab.breaks.base import Break


class HugeLR(Break):
    name = "huge_lr"
    category = "optimization"
    description = "learning rate multiplied by 100"
    symptom = "loss passes 1.5x its start within the first steps and reaches ~1e3 (BatchNorm keeps it finite); ReLU units die"
    metric = "loss"
    hook = "learning_rate"

    def learning_rate(self, lr: float) -> float:
        return lr * 100  # BUG: x100. Fix: return lr.
