"""What a person reads after pressing Ctrl-C during training: how to continue, not just "Aborted!".

A run saves a checkpoint at the end of every epoch, and `--resume` continues it with the same bytes
an uninterrupted run writes (docs/RELIABILITY.md), so the useful answer to an interrupt is the
exact command that finishes the run.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

EXIT_INTERRUPTED = 130  # the shell's convention for a process stopped by SIGINT


def resume_hint(out: str | Path) -> str:
    out = Path(out)
    checkpoint = out / "checkpoint.pt"
    if checkpoint.is_file():
        command = (f"python trainer.py --resume {shlex.quote(str(checkpoint))} "
                   f"--out {shlex.quote(str(out))}")
        return (f"interrupted; the last finished epoch is saved in {checkpoint}. Continue with: "
                f"{command} (--resume {checkpoint} gives byte-identical results to an "
                f"uninterrupted run)")
    return ("interrupted before the first epoch ended, so there is no checkpoint to resume from yet: "
            "run the same command again to start over")


def exit_interrupted(out: str | Path) -> None:
    """Print the resume hint on stderr and exit with status 130."""
    print(resume_hint(out), file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)
