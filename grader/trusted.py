"""Measure a run's checkpoint with the grader's own code.

The fixed run's metrics are written by the submission's code, which may log whatever it likes.
The checkpoint is evaluated here instead: loaded with `torch.load(weights_only=True)` (no code
runs; the numpy RNG state needs numpy's array reconstruction allow-listed, nothing else), its
model state checked key by key and shape by shape against this grader's MLP, then `evaluate()` of
this grader's trainer on this grader's test set. The same is done for the clean reference run, so
the two are compared with the same code on the same data.

It also reads facts of the run from the checkpoint, which the grader compares with the clean
run's: the learning rate the optimizer was built with, whether the GradScaler was on, and how
many batches BatchNorm's running statistics saw.
"""
from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# One torch computation at a time in the grading process (thread count and data are shared).
TORCH_LOCK = threading.Lock()
_DATA: dict[str, Any] = {}


@dataclass
class Evaluation:
    ok: bool
    why: str = ""
    test_acc: float | None = None
    test_loss: float | None = None
    facts: dict[str, Any] = field(default_factory=dict)


def test_set(cache: Path):
    """The grader's own test set (the bundled sample), loaded once per process. `cache` is where
    the sample is unpacked if it has not been (inside the grader's output folder)."""
    import os

    if "data" not in _DATA:
        from breaklab.canonical_setup import load_dataset

        previous = os.environ.get("BREAKLAB_CACHE")
        os.environ["BREAKLAB_CACHE"] = str(cache)
        try:
            _DATA["data"] = load_dataset("sample")
        finally:
            if previous is None:
                os.environ.pop("BREAKLAB_CACHE", None)
            else:
                os.environ["BREAKLAB_CACHE"] = previous
    return _DATA["data"]


def _load(data: bytes) -> dict[str, Any]:
    import numpy as np
    import torch

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    allowed = [np.ndarray, np.dtype, _reconstruct, type(np.dtype("uint32"))]
    with torch.serialization.safe_globals(allowed):
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError("the checkpoint is not a dictionary")
    return state


def evaluate_checkpoint(data: bytes | None, threads: int, cache: Path) -> Evaluation:
    """Evaluate checkpoint bytes with this grader's model, test set and evaluate()."""
    if data is None:
        return Evaluation(False, "the run left no checkpoint.pt")
    import torch

    from breaklab.trainer import MLP, evaluate

    with TORCH_LOCK:
        previous = torch.get_num_threads()
        try:
            torch.set_num_threads(max(1, int(threads)))
            try:
                ckpt = _load(data)
            except Exception as e:
                return Evaluation(False, f"the checkpoint cannot be loaded safely ({type(e).__name__})")
            state = ckpt.get("model")
            model = MLP()
            reference = model.state_dict()
            if not isinstance(state, dict) or set(state) != set(reference):
                return Evaluation(False, "the checkpoint's model has other parameters than the course's MLP")
            for key, tensor in reference.items():
                value = state[key]
                if not isinstance(value, torch.Tensor) or value.shape != tensor.shape or value.dtype != tensor.dtype:
                    return Evaluation(False, f"the checkpoint's {key} has another shape or type than the course's MLP")
            model.load_state_dict(state, strict=True)
            ds = test_set(cache)
            result = evaluate(model, ds.x_test, ds.y_test)
            return Evaluation(True, "", result["acc"], result["loss"], _facts(ckpt, state))
        finally:
            torch.set_num_threads(previous)


def _facts(ckpt: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """What the checkpoint says about how the run trained (compared with the clean run's)."""
    facts: dict[str, Any] = {}
    try:
        facts["optimizer_lr"] = float(ckpt["optimizer"]["param_groups"][0]["initial_lr"])
    except (KeyError, IndexError, TypeError, ValueError):
        facts["optimizer_lr"] = None
    scaler = ckpt.get("scaler")
    facts["grad_scaler_on"] = bool(scaler) if isinstance(scaler, dict) else None
    try:
        facts["bn_batches_tracked"] = int(state["bn1.num_batches_tracked"])
    except (KeyError, TypeError, ValueError):
        facts["bn_batches_tracked"] = None
    for key in ("epoch", "step"):
        value = ckpt.get(key)
        facts[key] = value if isinstance(value, int) else None
    return facts


def probe_expectations(break_name: str, seed: int, inputs: dict[str, Any]) -> tuple[dict, dict]:
    from breaklab.grader.probe import expected_outputs

    with TORCH_LOCK:
        return expected_outputs(break_name, seed, inputs)
