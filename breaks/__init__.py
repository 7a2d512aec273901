"""The registry of breaks: one module per bug, each overriding one hook of `breaks.base.Break`.

    >>> from breaklab.breaks import get_break
    >>> get_break("huge_lr", seed=42).learning_rate(0.1)
    10.0
"""
from __future__ import annotations

from breaklab import catalogue
from breaklab.breaks.amp_no_scaling import AmpNoScaling
from breaklab.breaks.base import Break
from breaklab.breaks.double_softmax import DoubleSoftmax
from breaklab.breaks.eval_mode import EvalMode
from breaklab.breaks.huge_lr import HugeLR
from breaklab.breaks.label_permute import LabelPermute
from breaklab.breaks.loss_sum import LossSum
from breaklab.breaks.missing_zero_grad import MissingZeroGrad

REGISTRY: dict[str, type[Break]] = {
    cls.name: cls
    for cls in (Break, LabelPermute, HugeLR, MissingZeroGrad, LossSum, AmpNoScaling,
                DoubleSoftmax, EvalMode)
}
BREAK_NAMES = [name for name in REGISTRY if name != "none"]

# Mystery mode: `--break mystery` picks one break, or none, from the seed and records only the
# word "mystery". The choice is a fixed function of the seed (see mystery_choice).
MYSTERY = catalogue.MYSTERY


def mystery_choice(seed: int) -> str:
    """The break (or "none") a mystery run with this seed uses: a SHA-256 of the seed, so it is
    the same on every machine and Python version, and a guess cannot be read off the seed."""
    import hashlib

    options = ["none"] + sorted(BREAK_NAMES)
    digest = hashlib.sha256(f"breaklab-mystery:{seed}".encode()).digest()
    return options[int.from_bytes(digest[:8], "big") % len(options)]


class UnknownBreak(ValueError):
    pass


def get_break(name: str, seed: int = 0) -> Break:
    if name == MYSTERY:
        name = mystery_choice(seed)
    try:
        return REGISTRY[name](seed=seed)
    except KeyError:
        raise UnknownBreak(catalogue.unknown_message(name)) from None
