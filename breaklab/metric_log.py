"""MetricLogger: writes metrics.jsonl (one JSON object per line) and drives the progress bar.

It wraps the training loop the way torchvision's reference scripts do, so the loop itself has no
scattered prints. Records are written compactly, in a fixed key order, so two runs with the same
seed give byte-identical files.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from breaklab import METRICS_SCHEMA_VERSION


# One encoder for every line: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def dumps(record: dict[str, Any]) -> str:
    return _ENCODER.encode(record)


class MetricLogger:
    """Writes the records of a run, and keeps them: `records` is the file's content as
    read_metrics would parse it, for the end-of-run summary without reading the file back."""

    def __init__(self, path: Path, *, keep_lines: list[str] | None = None, show_progress: bool,
                 observer: Callable[[dict[str, Any]], Iterable[str]] | None = None):
        self.path = path
        self.observer = observer  # sees every record as it is written; returns lines to print
        self._records: list[dict[str, Any]] = []
        if keep_lines:  # a resumed run: the records the checkpoint already covers
            # Rewritten atomically, then appended to: a resumed run interrupted at any moment
            # still leaves those records in place for the next --resume.
            from breaklab.atomic import atomic_write_text

            atomic_write_text(path, "".join(line if line.endswith("\n") else line + "\n"
                                            for line in keep_lines))
            self._f = open(path, "a", encoding="utf-8")
            self._records = parse_metrics("\n".join(keep_lines), str(path))
        else:
            self._f = open(path, "w", encoding="utf-8")
            self.write({"type": "header", "schema": "breaklab.metrics", "version": METRICS_SCHEMA_VERSION})
        self.show_progress = show_progress
        self._bar = None

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(dumps(record) + "\n")
        self._records.append(record)

    @property
    def records(self) -> list[dict[str, Any]]:
        """Every record of the file, header first: equal to read_metrics(path) once the file is
        closed (a record is written as compact JSON, which gives back the same values: str
        keys, and floats written in their shortest exact form). The records are the objects
        that were logged, not copies: change none of them after logging it."""
        return self._records

    def log_step(self, record: dict[str, Any]) -> None:
        self.write(record)
        self._observe(record)
        if self._bar is not None:
            loss = record.get("loss")
            self._bar.set_postfix_str(f"loss {loss:.4g}" if loss is not None else "loss non-finite",
                                      refresh=False)

    def log_epoch(self, record: dict[str, Any]) -> None:
        self.write(record)
        self._f.flush()
        self._observe(record)

    def _observe(self, record: dict[str, Any]) -> None:
        """Hand the record to the observer (early warnings) and print the lines it returns, above
        the progress bar when there is one."""
        if self.observer is None:
            return
        for line in self.observer(record):
            if self._bar is not None:
                self._bar.write(line, file=sys.stderr)
            else:
                print(line, file=sys.stderr, flush=True)

    def progress(self, batches: Iterable, *, total: int, desc: str) -> Iterator:
        if not self.show_progress:
            yield from batches
            return
        from tqdm import tqdm

        with tqdm(batches, total=total, desc=desc, unit="step", leave=False, file=sys.stderr,
                  dynamic_ncols=True) as bar:
            self._bar = bar
            yield from bar
        self._bar = None

    def close(self) -> None:
        self._f.close()


def read_metrics(path: Path | str, *, warn=None) -> list[dict[str, Any]]:
    """Read metrics.jsonl. A cut-off last line (an interrupted run) is dropped with a warning;
    a bad line elsewhere is an error that names the file and the line."""
    path = Path(path)
    return parse_metrics(path.read_text(encoding="utf-8", errors="replace"), str(path), warn=warn)


def parse_metrics(text: str, where: str, *, warn=None) -> list[dict[str, Any]]:
    """read_metrics' rules on text already in memory; `where` names it in messages."""
    lines = text.splitlines()
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except (ValueError, RecursionError) as e:  # RecursionError: absurdly deep nesting
            if i == len(lines):
                if warn:
                    warn(f"{where}: line {i} is cut off or malformed; using the {len(records)} good records before it")
                break
            raise ValueError(f"{where}: line {i} is not a valid metrics record ({e})") from None
        records.append(rec)
    return records
