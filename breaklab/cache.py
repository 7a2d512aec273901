"""Where breaklab keeps files between runs: `$BREAKLAB_CACHE`, else `$XDG_CACHE_HOME/breaklab`,
else `~/.cache/breaklab`.

Torch-free, so that commands which only read or write small files there (the mystery secret, the
record of guesses) start quickly. The unpacked MNIST sample lives here too (canonical_setup).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_root() -> Path:
    base = os.environ.get("BREAKLAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "breaklab"
    )
    return Path(base)


def cache_candidates() -> list[Path]:
    """The cache, then a fallback under the temporary folder for a machine whose home is read-only."""
    return [cache_root(), Path(tempfile.gettempdir()) / "breaklab-cache"]
