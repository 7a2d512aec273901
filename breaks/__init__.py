"""The registry of breaks: one module per bug, each overriding one hook of `breaks.base.Break`.

    >>> from breaklab.breaks import get_break
    >>> get_break("huge_lr", seed=42).learning_rate(0.1)
    10.0
"""
from __future__ import annotations

import importlib

from breaklab import catalogue
from breaklab.breaks.base import CATEGORIES, Break  # noqa: F401 (CATEGORIES: the registry's vocabulary)

# One module per break, named after it; the catalogue's order is the order `breaklab list` prints.
MODULES = (
    # the first seven
    "label_permute", "huge_lr", "missing_zero_grad", "loss_sum", "amp_no_scaling", "double_softmax",
    "eval_mode",
    # data and target
    "no_shuffle", "same_order_every_epoch", "raw_test_inputs", "test_leak", "nan_inputs",
    "label_shift", "one_hot_targets",
    # objective
    "nll_on_logits", "mse_onehot", "log_of_softmax", "log_softmax_before_ce",
    # shapes
    "acc_broadcast", "softmax_over_batch", "loss_all_pairs",
    # numerics
    "clip_before_unscale", "double_step_with_scaler", "fp16_overflow", "log_of_softmax_amp",
    # optimization
    "tiny_lr", "scheduler_not_stepped", "no_warmup", "accumulation_not_divided", "zero_init",
    "frozen_layer", "layer_not_in_optimizer",
    # mode, memory, checkpoint
    "eval_in_train_mode", "train_mode_not_restored", "loss_kept", "eval_with_grad",
    "resume_without_optimizer_state", "resume_without_rng_state",
)


def _break_class(module: str) -> type[Break]:
    """The one Break subclass a break module defines."""
    mod = importlib.import_module(f"breaklab.breaks.{module}")
    (cls,) = [v for v in vars(mod).values()
              if isinstance(v, type) and issubclass(v, Break) and v is not Break and v.__module__ == mod.__name__]
    return cls


REGISTRY: dict[str, type[Break]] = {cls.name: cls for cls in [Break, *map(_break_class, MODULES)]}
# Every name `--break` accepts besides "none": the bugs and the controls (changes that look like
# bugs and do no measurable harm here).
BREAK_NAMES = [name for name in REGISTRY if name != "none"]
CONTROL_NAMES = [name for name in BREAK_NAMES if REGISTRY[name].control]
FAULT_NAMES = [name for name in BREAK_NAMES if not REGISTRY[name].control]

# Mystery mode: `--break mystery` picks one break, or none, from the seed, salted with a secret
# (breaklab/secret.py), and records only the word "mystery" and a commitment to the choice.
MYSTERY = catalogue.MYSTERY


def mystery_options() -> list[str]:
    """What a mystery run may be: no bug, or one of the bugs (controls do no harm to find)."""
    return ["none"] + sorted(FAULT_NAMES)


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
