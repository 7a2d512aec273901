"""The garbage collector in a command's process: no walks over torch's objects that free nothing.

Python's cyclic garbage collector walks every tracked object in a full collection. After torch,
torch._dynamo (which any torch.optim optimizer imports) and sympy are loaded, that is hundreds of
thousands of objects and 0.15-0.2 s of CPU a walk, for objects that live as long as the process.
A command pays it while importing them (the imports' allocations trigger two full collections)
and once more, over everything, when the interpreter exits. Measured on a 2-core machine, a
1-epoch trainer.py run: 7.9 s of CPU before, 6.5 s with the exit's walk skipped, and 0.1-0.3 s
less again with the imports' walks skipped (3 alternating pairs each, the same bytes). On a CPU
with smaller caches (an EPYC without AVX-512) the imports' walks cost more: `import torch,
torch._dynamo` took 6.3-7.0 s of CPU with them and 5.0-5.4 s without (3 alternating pairs).

* `imports_without_collection()`: the collector is off while the heavy modules are imported;
  then they are frozen (`gc.freeze`: moved out of the collector's reach for the rest of the
  process), so later collections walk only what the run itself allocates.
* `collection_paused()`: the collector is off for a block that allocates a burst of objects
  (report.png's drawing), and back on after it.
* `heavy_imports_frozen()`: the same for a command that imports them somewhere in its code, not
  in one place: torch and torch._dynamo are each imported with the collector off and frozen after,
  wherever the first `import` of them happens. The `breaklab` command installs it for every
  subcommand; it costs nothing in a command that never imports torch (`--help`, `list`).
* `skip_final_garbage_collection()`: `gc.freeze` as the last exit handler (registered first,
  it runs after every other one), so the exit skips the walk; files are flushed and closed as
  before.

Both are for a command's own process, which ends after its one job, never for a library call:
frozen objects that later become garbage in a cycle are not freed.
"""
from __future__ import annotations

import atexit
import gc
import importlib.abc
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


HEAVY = ("torch", "torch._dynamo")


class _FrozenImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for a module of `names` not yet imported, it asks the finders after it
    and wraps the loader's exec_module, so that the module's code runs with the collector paused
    and its objects are frozen after."""

    def __init__(self, names: tuple[str, ...]):
        self.names = set(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.names:
            return None
        self.names.discard(fullname)  # once: a later import finds the module in sys.modules
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run_module = loader.exec_module

        def exec_module(module):
            with collection_paused():
                try:
                    run_module(module)
                finally:
                    gc.freeze()
        loader.exec_module = exec_module
        return spec


def heavy_imports_frozen(names: tuple[str, ...] = HEAVY) -> None:
    """In a command's process, once: each module of `names` that is not imported yet will be
    imported with the collector off and frozen after (see the module's docstring)."""
    missing = tuple(n for n in names if n not in sys.modules)
    if missing and not any(isinstance(f, _FrozenImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _FrozenImport(missing))


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
