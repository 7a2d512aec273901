"""The shapes an exercise script comes in: a model, an optimizer and a batching style.

Only the names and settings of the shapes live here (the check reads them from a key); the
script itself and its mutations are the instructor's (solutions/exercise_template.py,
solutions/exercise_mutations.py), so a course kit, which leaves out solutions/, carries
neither the clean lines nor the buggy ones.
"""
from __future__ import annotations

from dataclasses import dataclass

MODELS = ("mlp", "cnn")
OPTIMIZERS = ("sgd", "adam")
BATCHING = ("loader", "index")


@dataclass(frozen=True)
class Variant:
    """One shape of the clean program: a model, an optimizer and a batching style."""

    model: str
    optimizer: str
    batching: str

    def __post_init__(self):
        if self.model not in MODELS or self.optimizer not in OPTIMIZERS or self.batching not in BATCHING:
            raise ValueError(f"unknown variant {self.model}/{self.optimizer}/{self.batching}")

    @property
    def name(self) -> str:
        return f"{self.model}-{self.optimizer}-{self.batching}"

    @property
    def amp(self) -> bool:
        return AMP_BY_MODEL[self.model]

    @property
    def tags(self) -> set[str]:
        return {self.model, self.optimizer, self.batching}

    @classmethod
    def parse(cls, name: str) -> "Variant":
        parts = name.split("-")
        if len(parts) != 3:
            raise ValueError(f"variant {name!r}: expected MODEL-OPTIMIZER-BATCHING, e.g. mlp-sgd-loader")
        return cls(*parts)


VARIANTS = tuple(Variant(m, o, b) for m in MODELS for o in OPTIMIZERS for b in BATCHING)

# Mixed precision (float16 autocast with a GradScaler) per model: the MLP trains in float16, the
# CNN in float32 (why: solutions/exercise_template.py).
AMP_BY_MODEL = {"mlp": True, "cnn": False}
