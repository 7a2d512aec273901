"""The garbage collector in a command's process: no walks over torch's objects that free nothing.

Python's cyclic garbage collector walks every tracked object in a full collection. After torch,
torch._dynamo (which any torch.optim optimizer imports) and sympy are loaded, that is hundreds of
thousands of objects and 0.15-0.2 s of CPU a walk, for objects that live as long as the process.
A command pays it while importing them (the imports' allocations trigger two full collections)
and once more, over everything, when the interpreter exits. Measured on a 2-core machine, a
1-epoch trainer.py run: 7.9 s of CPU before, 6.5 s with the exit's walk skipped, and 0.1-0.3 s
less again with the imports' walks skipped (3 alternating pairs each, the same bytes).

* `imports_without_collection()`: the collector is off while the heavy modules are imported;
  then they are frozen (`gc.freeze`: moved out of the collector's reach for the rest of the
  process), so later collections walk only what the run itself allocates.
* `collection_paused()`: the collector is off for a block that allocates a burst of objects
  (report.png's drawing), and back on after it.
* `skip_final_garbage_collection()`: `gc.freeze` as the last exit handler (registered first,
  it runs after every other one), so the exit skips the walk; files are flushed and closed as
  before.

Both are for a command's own process, which ends after its one job, never for a library call:
frozen objects that later become garbage in a cycle are not freed.
"""
from __future__ import annotations

import atexit
import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_registered = False


def skip_final_garbage_collection() -> None:
    """Register gc.freeze as an exit handler, once per process."""
    global _registered
    if not _registered:
        atexit.register(gc.freeze)
        _registered = True


@contextmanager
def imports_without_collection(heavy: str = "torch._dynamo") -> Iterator[None]:
    """No collection while the body imports; everything alive after it is frozen. Nothing
    changes where the module `heavy` is already imported (a process that calls the command's
    code in-process, as the tests do): there is nothing to skip, and freezing that process's
    objects could keep its cyclic garbage alive."""
    if heavy in sys.modules:
        yield
        return
    with collection_paused():
        try:
            yield
        finally:
            gc.freeze()


@contextmanager
def collection_paused() -> Iterator[None]:
    """No collection inside the block; the collector is switched back on after it (if it was on),
    and what the block left in cycles is collected by its next run."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
