"""One training run of the course code, in the sandbox: the same command for `breaklab submit`,
the grader's re-runs and the solution tests, so their bytes can be compared."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breaklab.grader.sandbox import SandboxResult, python, run_sandboxed

# The files of a run that a submission carries (the checkpoint itself stays out: its SHA-256 is
# enough to compare, and the grader never loads a submitted checkpoint).
RUN_FILES = ("metrics.jsonl", "meta.json", "summary.json", "checkpoint.pt.sha256")
DEFAULT_TIMEOUT = 600


@dataclass(frozen=True)
class RunSpec:
    """What defines a run: the same spec in the same tree gives the same bytes."""

    break_name: str
    seed: int
    epochs: int
    threads: int

    def argv(self, out: str) -> list[str]:
        return ["trainer.py", "--seed", str(self.seed), "--break", self.break_name,
                "--epochs", str(self.epochs), "--threads", str(self.threads), "--out", out, "--quiet"]

    def command(self, out: str) -> str:
        return "python " + " ".join(self.argv(out))


@dataclass
class RunResult:
    folder: Path
    sandbox: SandboxResult

    @property
    def ok(self) -> bool:
        return self.sandbox.ok and (self.folder / "metrics.jsonl").is_file()

    def files(self) -> dict[str, bytes]:
        return {n: (self.folder / n).read_bytes() for n in RUN_FILES if (self.folder / n).is_file()}

    def checkpoint_sha(self) -> str | None:
        path = self.folder / "checkpoint.pt.sha256"
        words = path.read_text().split() if path.is_file() else []
        return words[0] if words else None

    def summary(self) -> dict[str, Any]:
        try:
            return json.loads((self.folder / "summary.json").read_text())
        except (OSError, ValueError):
            return {}


def train(tree: Path, spec: RunSpec, workdir: Path, out_name: str, *,
          timeout: float = DEFAULT_TIMEOUT) -> RunResult:
    """Train spec with the code in `tree`; the run lands in workdir/out_name.

    The command runs in workdir with a relative --out, so meta.json records the same `out` for
    every run of this spec, wherever the tree and the folder are."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [python(), "-s", str(tree / "trainer.py"), *spec.argv(out_name)[1:]]
    result = run_sandboxed(argv, cwd=workdir, timeout=timeout)
    return RunResult(workdir / out_name, result)
