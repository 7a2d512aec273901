"""One training run of the course code, in the sandbox: the same command for `breaklab submit`,
the grader's re-runs and the solution tests, so their bytes can be compared.

Nothing the sandboxed run wrote is read where it wrote it: once the run has ended (and every one
of its processes with it), its files are read by breaklab.untrusted (regular files only, no link
followed, size caps, a time bound) and copied into a fresh folder outside the run's reach. The
result holds those bytes; a link, FIFO or device the run left where a run file belongs is a
`problem`, never opened.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from breaklab.grader.sandbox import SandboxResult, python, run_sandboxed

# The files of a run that a submission carries (the checkpoint itself stays out: its SHA-256 is
# enough to compare, and the grader never loads a submitted checkpoint).
RUN_FILES = ("metrics.jsonl", "meta.json", "summary.json", "checkpoint.pt.sha256")
MiB = 1 << 20
# What the grader copies out of a re-run, with the most bytes it reads of each (a 1-20 epoch run
# writes a few MB; the checkpoint is about 2 MB).
COPY_CAPS = {"metrics.jsonl": 64 * MiB, "meta.json": 1 * MiB, "summary.json": 1 * MiB,
             "checkpoint.pt": 64 * MiB, "checkpoint.pt.sha256": 4096}
DEFAULT_TIMEOUT = 600
# Environment variables a run inherits from the caller: the CPU kernels torch uses change the bits,
# so the choice (a machine's own, or ATEN_CPU_CAPABILITY) is recorded in meta.json and kept.
PASSED_THROUGH = ("ATEN_CPU_CAPABILITY",)


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
    folder: Path                     # the grader's copy of the run's files
    sandbox: SandboxResult
    copied: dict[str, bytes] = field(default_factory=dict, repr=False)
    problems: list[str] = field(default_factory=list)   # run files that were not plain files

    @property
    def ok(self) -> bool:
        return self.sandbox.ok and not self.problems and "metrics.jsonl" in self.copied

    def files(self) -> dict[str, bytes]:
        return {n: self.copied[n] for n in RUN_FILES if n in self.copied}

    def checkpoint_sha(self) -> str | None:
        """The SHA-256 of the checkpoint, computed here from its bytes (not the run's own .sha256)."""
        data = self.copied.get("checkpoint.pt")
        return hashlib.sha256(data).hexdigest() if data is not None else None

    def summary(self) -> dict[str, Any]:
        """The run's summary, computed by this code from its metrics (the run's own summary.json
        is never trusted)."""
        from breaklab.symptoms import summarize

        records = parse_records(self.copied.get("metrics.jsonl"))
        return summarize(records) if records is not None else {}


def cpu_capabilities() -> list[str]:
    """The ATEN_CPU_CAPABILITY values this CPU can run: default always, avx2 and avx512 when it
    has them (x86 only; elsewhere only default)."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    caps = ["default"]
    if "avx2" in flags:
        caps.append("avx2")
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        caps.append("avx512")
    return caps


def passed_through_env() -> dict[str, str]:
    return {k: os.environ[k] for k in PASSED_THROUGH if k in os.environ}


def train(tree: Path, spec: RunSpec, workdir: Path, out_name: str, *, timeout: float = DEFAULT_TIMEOUT,
          env: Mapping[str, str] | None = None, copy_to: Path | None = None) -> RunResult:
    """Train spec with the code in `tree`; the run happens in workdir/out_name and its files are
    copied into copy_to (default: a fresh folder beside workdir), which RunResult.folder names.

    The command runs in workdir with a relative --out, so meta.json records the same `out` for
    every run of this spec, wherever the tree and the folder are. The run may read `tree` and
    write only workdir."""
    from breaklab.untrusted import read_folder_files, write_fresh

    workdir.mkdir(parents=True, exist_ok=True)
    argv = [python(), "-s", str(tree / "trainer.py"), *spec.argv(out_name)[1:]]
    # No report.png (BREAKLAB_FIGURE=0): only the text files and the checkpoint are copied out,
    # and drawing it is a quarter of a short run's CPU time.
    result = run_sandboxed(argv, cwd=workdir, timeout=timeout,
                           env={**passed_through_env(), "BREAKLAB_FIGURE": "0", **(env or {})},
                           readable=[tree, *git_alternates(tree)])
    dest = Path(copy_to) if copy_to is not None else workdir.parent / f"{workdir.name}-{out_name}-files"
    caps = {f"{out_name}/{name}": cap for name, cap in COPY_CAPS.items()}
    files, problems = read_folder_files(workdir, caps)
    copied = {name.split("/", 1)[1]: data for name, data in files.items()}
    write_fresh(dest, copied)
    return RunResult(dest, result, copied, problems)


def git_alternates(tree: Path) -> list[Path]:
    """The object folders a `git clone --shared` checkout borrows (so the run's meta.json can name
    its commit and whether it was changed). The grader's private trees have no .git at all."""
    try:
        lines = (tree / ".git" / "objects" / "info" / "alternates").read_text().splitlines()
    except OSError:
        return []
    return [Path(line) for line in lines if line.strip() and Path(line).is_dir()]


def parse_records(data: bytes | None) -> list[dict[str, Any]] | None:
    """Metrics records from untrusted bytes: None when they are not a readable metrics.jsonl of
    the documented schema (docs/METRICS.md), so no wrong type reaches the scoring code."""
    from breaklab.doctor import RunReadError, validate_records
    from breaklab.metric_log import parse_metrics

    if data is None:
        return None
    try:
        records = parse_metrics(data.decode("utf-8", errors="replace"), "metrics.jsonl")
        validate_records(records, "metrics.jsonl")
    except (ValueError, RunReadError, RecursionError):
        return None
    return records


def read_json(data: bytes | None) -> dict[str, Any]:
    try:
        value = json.loads(data) if data is not None else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
