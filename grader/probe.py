"""Probe a patched break's hooks on fixed inputs, against the clean hooks of breaks/base.py.

A fix is judged by what the patched code does, not by the numbers it logs. The grader runs this
file as a script in the sandbox, in the submission's own (patched) tree, where it imports the
break, calls each of the seven hooks on inputs the grader chose, and writes the outputs as a small
JSON file. The grader then computes, with its own classes and this same code, what the clean hook
(breaks.base.Break) and the broken hook give on those inputs, and compares:

    learning_rate   HugeLR().learning_rate(0.1) must be 0.1 (and so for other rates)
    use_grad_scaler True with AMP on, False with it off
    set_mode        every module in training mode afterwards, from eval or train mode
    targets         the labels unchanged, at several steps
    zero_grad       every gradient cleared (None or zeros)
    outputs         the logits unchanged
    loss            the mean cross-entropy and its gradient

It also records whether importing the break or calling its hooks replaced any function of the
course's own modules (the trainer, the metrics logger, the checkpoint code) or of torch's training
and saving API: a hook that swaps `trainer.evaluate` or the logger fakes the measurements.

As a script it imports only torch and the tree's breaklab (sys.argv: tree, break, seed, input
file, output file); the grader side imports nothing heavy until it compares.
"""
from __future__ import annotations

import json
import math
import random
import sys
from typing import Any

HOOKS = ("learning_rate", "use_grad_scaler", "set_mode", "targets", "zero_grad", "outputs", "loss")
# The course modules whose top-level functions and classes must stay the ones their files define.
COURSE_MODULES = ("breaklab.trainer", "breaklab.metric_log", "breaklab.canonical_setup", "breaklab.diagnostics",
                  "breaklab.symptoms", "breaklab.atomic")
# torch's training, evaluation and saving API: watched for replacement by identity.
TORCH_WATCH = ("torch", "torch.nn.functional", "torch.serialization", "torch.optim", "torch.optim.lr_scheduler",
               "torch.amp", "torch.nn", "json", "builtins", "os")
TORCH_CLASSES = ("torch.Tensor", "torch.nn.Module", "torch.optim.Optimizer", "torch.optim.SGD",
                 "torch.amp.GradScaler", "torch.nn.BatchNorm1d", "torch.nn.Linear")
MAX_OUTPUT = 256 << 10


def make_inputs(seed: int = 20240611) -> dict[str, Any]:
    """Fixed inputs: plain Python numbers (exact in JSON), the same in the sandbox and here."""
    rng = random.Random(seed)
    logits = [[round(rng.gauss(0.0, 2.0), 6) for _ in range(10)] for _ in range(8)]
    return {"lrs": [0.1, 0.05, 0.01, 1.0, 0.003],
            "labels": [rng.randrange(10) for _ in range(64)],
            "steps": [0, 1, 7, 62],
            "logits": logits,
            "loss_labels": [rng.randrange(10) for _ in range(8)]}


# ---------------------------------------------------------------------------------------------
# The hooks' outputs (run in the sandbox on the patched break, and here on the clean and broken)
# ---------------------------------------------------------------------------------------------

def _small_model(torch):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(),
                               torch.nn.Dropout(0.5), torch.nn.Linear(6, 3))


def _error(e: BaseException) -> dict[str, str]:
    return {"error": f"{type(e).__name__}: {str(e)[:200]}"}


def hook_outputs(brk, inputs: dict[str, Any], torch) -> dict[str, Any]:
    """Each hook of brk called on the inputs; a hook that raises gives {"error": ...}."""
    __import__("torch.nn.functional")  # loaded before any hook runs

    out: dict[str, Any] = {}

    def attempt(name, fn):
        try:
            out[name] = fn()
        except Exception as e:  # the student's code: any failure is a finding, not a crash
            out[name] = _error(e)

    attempt("learning_rate", lambda: [float(brk.learning_rate(lr)) for lr in inputs["lrs"]])
    attempt("use_grad_scaler", lambda: [bool(brk.use_grad_scaler(amp)) for amp in (True, False)])

    def set_mode():
        result = []
        for start in ("eval", "train"):
            model = _small_model(torch)
            model.train(start == "train")
            brk.set_mode(model)
            result.append([bool(m.training) for m in model.modules()])
        return result
    attempt("set_mode", set_mode)

    def targets():
        y = torch.tensor(inputs["labels"], dtype=torch.int64)
        return [[int(v) for v in brk.targets(y.clone(), step).tolist()] for step in inputs["steps"]]
    attempt("targets", targets)

    def zero_grad():
        model = _small_model(torch)
        params = list(model.parameters())
        for p in params:
            p.grad = torch.ones_like(p)
        brk.zero_grad(torch.optim.SGD(params, lr=0.1))
        return ["none" if p.grad is None else ("zero" if not bool(p.grad.any()) else "nonzero") for p in params]
    attempt("zero_grad", zero_grad)

    def outputs():
        logits = torch.tensor(inputs["logits"], dtype=torch.float32)
        result = brk.outputs(logits.clone())
        return [[float(v) for v in row] for row in result.detach().float().tolist()]
    attempt("outputs", outputs)

    def loss():
        logits = torch.tensor(inputs["logits"], dtype=torch.float32, requires_grad=True)
        y = torch.tensor(inputs["loss_labels"], dtype=torch.int64)
        value = brk.loss(logits, y)
        value.backward()
        grad = logits.grad.tolist() if logits.grad is not None else None
        return {"value": float(value.detach()), "grad": grad}
    attempt("loss", loss)
    return out


# ---------------------------------------------------------------------------------------------
# What the break's import and hook calls replaced
# ---------------------------------------------------------------------------------------------

def _resolve(dotted: str):
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for p in parts[i:]:
            obj = getattr(obj, p)
        return obj
    raise ImportError(dotted)


def identity_snapshot() -> dict[str, int]:
    """id() of every attribute of the watched torch modules and classes."""
    snap: dict[str, int] = {}
    for name in TORCH_WATCH:
        try:
            mod = _resolve(name)
        except (ImportError, AttributeError):
            continue
        for attr, value in list(vars(mod).items()):
            if not attr.startswith("__"):
                snap[f"{name}.{attr}"] = id(value)
    for name in TORCH_CLASSES:
        try:
            cls = _resolve(name)
        except (ImportError, AttributeError):
            continue
        for attr, value in list(vars(cls).items()):
            snap[f"{name}.{attr}"] = id(value)
    return snap


def replaced_since(before: dict[str, int]) -> list[str]:
    """Attributes that now hold another object or are gone (additions are torch's own lazy
    imports, and harmless: the course code uses only names that were there)."""
    after = identity_snapshot()
    return sorted(k for k in before if after.get(k) != before[k])


def foreign_definitions() -> list[str]:
    """Top-level functions and classes (and the classes' methods) of the course modules that no
    longer come from the module's own file: someone replaced them."""
    import ast
    import importlib
    import inspect
    import types

    found = []
    for name in COURSE_MODULES:
        try:
            mod = importlib.import_module(name)
            path = mod.__file__
            tree = ast.parse(open(path, encoding="utf-8").read())
        except Exception:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                value = getattr(mod, node.name, None)
                if not (isinstance(value, types.FunctionType) and value.__code__.co_filename == path):
                    # decorated functions (torch.no_grad) keep their code under __wrapped__
                    inner = inspect.unwrap(value) if callable(value) else None
                    if not (isinstance(inner, types.FunctionType) and inner.__code__.co_filename == path):
                        found.append(f"{name}.{node.name}")
            elif isinstance(node, ast.ClassDef):
                cls = getattr(mod, node.name, None)
                if not isinstance(cls, type) or cls.__module__ != name:
                    found.append(f"{name}.{node.name}")
                    continue
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        value = vars(cls).get(item.name)
                        value = value.fget if isinstance(value, property) else value  # a @property's getter
                        value = getattr(value, "__func__", value)
                        inner = inspect.unwrap(value) if callable(value) else None
                        if not (isinstance(inner, types.FunctionType) and inner.__code__.co_filename == path):
                            found.append(f"{name}.{node.name}.{item.name}")
    return found


class _CleanHooks:
    """The clean hooks, written here again so the probe can warm torch up (its first optimizer
    patches SGD.step, its first seeding swaps a wrapper) before the identity snapshot, without
    importing the tree's breaks."""

    def learning_rate(self, lr):
        return lr

    def use_grad_scaler(self, amp):
        return amp

    def set_mode(self, model):
        model.train()

    def targets(self, y, step):
        return y

    def zero_grad(self, optimizer):
        optimizer.zero_grad(set_to_none=True)

    def outputs(self, logits):
        return logits

    def loss(self, outputs, y):
        import torch.nn.functional as F

        return F.cross_entropy(outputs, y)


def main(argv: list[str]) -> None:
    import atexit
    import gc

    atexit.register(gc.freeze)  # no collection over torch's objects at exit (breaklab/process_gc.py)
    tree, break_name, seed, in_path, out_path = argv[1], argv[2], int(argv[3]), argv[4], argv[5]
    with open(in_path, encoding="utf-8") as f:
        inputs = json.load(f)
    sys.path.insert(0, tree)
    gc.disable()  # torch's modules imported with the collector off, then frozen (breaklab/process_gc.py)
    import torch
    import torch._dynamo  # noqa: F401  (the SGD optimizer below imports it)

    torch.set_num_threads(1)
    import torch.nn.functional  # noqa: F401
    import torch.optim.lr_scheduler  # noqa: F401
    gc.freeze()
    gc.enable()
    hook_outputs(_CleanHooks(), inputs, torch)
    before = identity_snapshot()
    result: dict[str, Any] = {}
    try:
        import breaklab
        if not any(p.startswith(tree) for p in breaklab.__path__):
            raise ImportError(f"breaklab was imported from {list(breaklab.__path__)}, not from the tree")
        from breaklab.breaks import get_break
        import breaklab.trainer  # noqa: F401  (the course modules, as a run imports them)

        brk = get_break(break_name, seed=seed)
        result["hooks"] = hook_outputs(brk, inputs, torch)
    except Exception as e:
        result["import_error"] = _error(e)["error"]
    result["replaced"] = replaced_since(before) + foreign_definitions()
    text = json.dumps(result)
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(text[:MAX_OUTPUT])


# ---------------------------------------------------------------------------------------------
# The grader's side: what clean and broken give, and the verdict
# ---------------------------------------------------------------------------------------------

def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    return isinstance(a, (int, float)) and math.isfinite(a) and abs(a - b) <= max(atol, rtol * abs(b))


def _nested_close(a, b, rtol: float, atol: float) -> bool:
    if isinstance(b, list):
        return isinstance(a, list) and len(a) == len(b) and all(_nested_close(x, y, rtol, atol) for x, y in zip(a, b))
    if isinstance(b, (int, float)) and not isinstance(b, bool):
        return not isinstance(a, bool) and _close(a, b, rtol, atol)
    return a == b


def same_output(hook: str, got: Any, want: Any) -> bool:
    """Whether a hook's output matches the expected one (tolerances: float32 round-off only)."""
    if isinstance(got, dict) and "error" in got:
        return isinstance(want, dict) and "error" in want
    if hook == "zero_grad":
        cleared = lambda v: isinstance(v, list) and v and all(x in ("none", "zero") for x in v)
        return cleared(got) == cleared(want) and isinstance(got, list) and len(got) == len(want)
    if hook == "loss":
        return (isinstance(got, dict) and _close(got.get("value"), want["value"], 1e-5, 1e-7)
                and _nested_close(got.get("grad"), want["grad"], 1e-4, 1e-7))
    if hook in ("learning_rate", "outputs"):
        return _nested_close(got, want, 1e-6, 1e-9)
    return got == want


def describe(hook: str, got: Any, want: Any, inputs: dict[str, Any]) -> str:
    """One line: what the patched hook did, against the clean hook."""
    if isinstance(got, dict) and "error" in got:
        return f"{hook} raised {got['error']}"
    if hook == "learning_rate" and isinstance(got, list) and got:
        return f"learning_rate({inputs['lrs'][0]}) gave {got[0]:g}; the clean hook gives {want[0]:g}"
    if hook == "use_grad_scaler" and isinstance(got, list) and len(got) == 2:
        return f"use_grad_scaler(True) gave {got[0]}, use_grad_scaler(False) gave {got[1]}; the clean hook gives True, False"
    if hook == "set_mode":
        return "set_mode leaves modules in evaluation mode; the clean hook puts every module in training mode"
    if hook == "targets":
        return "targets changes the labels; the clean hook returns them unchanged"
    if hook == "zero_grad":
        return "zero_grad leaves gradients in place; the clean hook clears them"
    if hook == "outputs":
        return "outputs changes the logits; the clean hook returns them unchanged"
    if hook == "loss" and isinstance(got, dict) and isinstance(got.get("value"), (int, float)):
        return f"loss gave {got['value']:.6g}; the clean hook (mean cross-entropy) gives {want['value']:.6g}"
    return f"{hook} differs from the clean hook"


def expected_outputs(break_name: str, seed: int, inputs: dict[str, Any]) -> tuple[dict, dict]:
    """(clean, broken): this grader's own hooks on the inputs."""
    import torch

    from breaklab.breaks import Break, get_break

    torch.set_num_threads(1)
    return hook_outputs(Break(seed=seed), inputs, torch), hook_outputs(get_break(break_name, seed=seed), inputs, torch)


if __name__ == "__main__":
    main(sys.argv)
