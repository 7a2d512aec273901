"""Memory figures of a run that are the same on every run of the same code.

The process's resident memory changes from run to run (allocator, other threads, file names),
so it cannot go into metrics.jsonl, which is byte-identical for the same seed. What a training
loop keeps alive by mistake is autograd's memory, and that can be counted exactly:

* `LiveGraphs`: how many earlier training steps still have their autograd graph alive. Each
  step's loss carries its graph (`loss.grad_fn` and the nodes behind it); a loop that keeps
  only numbers drops it when the next step starts, so the count stays 0. A loop that keeps the
  loss tensor (`total += loss`, `history.append(loss)`) keeps every graph: the count grows by
  one per step.
* `SavedTensorBytes`: the bytes of the tensors autograd saves for a backward pass while a block
  runs (0 under torch.no_grad(), where nothing is recorded).
"""
from __future__ import annotations

import weakref

import torch

_KEY = "breaklab_live_graph"


class _Token:
    """Lives exactly as long as the autograd node whose metadata holds it."""


class LiveGraphs:
    def __init__(self) -> None:
        self._tokens: list[weakref.ref] = []

    def earlier_alive(self, loss: torch.Tensor) -> int:
        """Register this step's graph (the node that made `loss`) and return how many graphs
        of earlier steps are still alive."""
        alive = [ref for ref in self._tokens if ref() is not None]
        if loss.grad_fn is not None:
            token = _Token()
            loss.grad_fn.metadata[_KEY] = token
            alive.append(weakref.ref(token))
            earlier = len(alive) - 1
        else:
            earlier = len(alive)
        self._tokens = alive
        return earlier


class SavedTensorBytes:
    """`with SavedTensorBytes() as saved: ...`, then `saved.bytes`: what autograd saved for a
    backward pass inside the block (numel x element size of each saved tensor)."""

    def __init__(self) -> None:
        self.bytes = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        self.bytes += tensor.numel() * tensor.element_size()
        return tensor

    def __enter__(self) -> "SavedTensorBytes":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
