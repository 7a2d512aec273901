"""The huge_lr break: one hook of breaks.base.Break, overridden (see `breaklab list`)."""
from breaklab.breaks.base import Break


class HugeLR(Break):
    name = "huge_lr"
    category = "optimization"
    description = "learning rate multiplied by 100"
    symptom = "loss passes 1.5x its start within the first steps and reaches ~1e3 (BatchNorm keeps it finite); ReLU units die"
    metric = "loss"
    hook = "learning_rate"

    def learning_rate(self, lr: float) -> float:
        return lr * 100
