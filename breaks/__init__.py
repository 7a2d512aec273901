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

# Mystery mode: `--break mystery` picks one break, or none, from the seed, salted with a secret
# (breaklab/secret.py), and records only the word "mystery" and a commitment to the choice.
MYSTERY = catalogue.MYSTERY


def mystery_options() -> list[str]:
    return ["none"] + sorted(BREAK_NAMES)


def mystery_choice(seed: int, secret: bytes | None = None) -> str:
    """The break (or "none") a mystery run with this seed uses under this secret (by default
    BREAKLAB_SECRET's, or the per-install one): the same on every machine for the same seed and
    secret, and not computable from the seed alone."""
    from breaklab.secret import pick, resolve

    return pick(seed, mystery_options(), resolve() if secret is None else secret)


def mystery_record(break_name: str, seed: int) -> dict:
    """What meta.json records about a mystery run's choice: a commitment that opens only with
    the secret (breaklab/secret.py), nothing else. Empty for a named run."""
    if break_name != MYSTERY:
        return {}
    from breaklab.secret import commitment, resolve

    secret = resolve()
    return {"mystery": {"commitment": commitment(seed, mystery_choice(seed, secret), secret)}}


class UnknownBreak(ValueError):
    pass


def get_break(name: str, seed: int = 0, secret: bytes | None = None) -> Break:
    if name == MYSTERY:
        from breaklab.secret import SecretError

        try:
            name = mystery_choice(seed, secret)
        except SecretError as e:
            raise UnknownBreak(f"the mystery break cannot be picked: {e}") from None
    try:
        return REGISTRY[name](seed=seed)
    except KeyError:
        raise UnknownBreak(catalogue.unknown_message(name)) from None
