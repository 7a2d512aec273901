"""The registry of breaks: one module per bug, each overriding one hook of `breaks.base.Break`.

    >>> from breaks import get_break
    >>> get_break("huge_lr", seed=42).learning_rate(0.1)
    10.0
"""
from __future__ import annotations

from breaks.amp_no_scaling import AmpNoScaling
from breaks.base import Break
from breaks.double_softmax import DoubleSoftmax
from breaks.eval_mode import EvalMode
from breaks.huge_lr import HugeLR
from breaks.label_permute import LabelPermute
from breaks.loss_sum import LossSum
from breaks.missing_zero_grad import MissingZeroGrad

REGISTRY: dict[str, type[Break]] = {
    cls.name: cls
    for cls in (Break, LabelPermute, HugeLR, MissingZeroGrad, LossSum, AmpNoScaling,
                DoubleSoftmax, EvalMode)
}
BREAK_NAMES = [name for name in REGISTRY if name != "none"]


class UnknownBreak(ValueError):
    pass


def get_break(name: str, seed: int = 0) -> Break:
    try:
        return REGISTRY[name](seed=seed)
    except KeyError:
        raise UnknownBreak(
            f"unknown break {name!r}; valid breaks: {', '.join(['none'] + BREAK_NAMES)}"
        ) from None
