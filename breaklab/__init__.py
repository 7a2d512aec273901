"""breaklab: a broken-experiment teaching suite for ML debugging.

The files a person opens first stand at the repository's root: trainer.py, canonical_setup.py,
breaks/, grader/ and solutions/. They are parts of this package all the same (breaklab.trainer,
breaklab.breaks, ...): in a checkout the root is added to the package's search path below, and an
installed wheel carries them inside the package (see setup.py). Nothing is installed under a
generic top-level name.
"""
import os as _os

__version__ = "0.1.0"
METRICS_SCHEMA_VERSION = 3

_here = _os.path.dirname(_os.path.abspath(__file__))
_checkout = _os.path.dirname(_here)
if (not _os.path.isfile(_os.path.join(_here, "trainer.py"))
        and _os.path.isfile(_os.path.join(_checkout, "trainer.py"))
        and _os.path.isfile(_os.path.join(_checkout, "breaks", "base.py"))):
    __path__.append(_checkout)  # noqa: F821 (the package's own search path)


def __getattr__(name: str):
    """`from breaklab import Monitor` imports torch only when it is asked for: `import breaklab`
    (and so `breaklab --help`) stays light."""
    if name in ("Monitor", "TrainingStopped"):
        from breaklab import monitor

        return getattr(monitor, name)
    if name == "EarlyWarnings":
        from breaklab.early_warnings import EarlyWarnings

        return EarlyWarnings
    raise AttributeError(f"module 'breaklab' has no attribute {name!r}")
