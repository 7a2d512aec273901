"""The end of a run: its summary.json and its figure, from the files training wrote.

Training (trainer.py) writes metrics.jsonl, checkpoint.pt and meta.json; this measurement-layer
step reads the metrics back and adds what a person looks at first: summary.json (final numbers
and the symptoms the rule book sees) and report.png. `train_and_summarize` is the whole run as
`python trainer.py` and `breaklab train` make it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from breaklab.atomic import atomic_write_text
from breaklab.metric_log import read_metrics
from breaklab.symptoms import summarize


def finish_run(out: Path | str, trained: dict[str, Any], figure: bool = True) -> dict[str, Any]:
    """Write summary.json (and report.png) for the run in `out` that train() just returned from.
    Returns the summary, with the loop's and the whole run's seconds added (printed, never written:
    they are not reproducible)."""
    out = Path(out)
    records = trained.get("records")
    summary = summarize(records if records is not None else read_metrics(out / "metrics.jsonl"),  # a mystery run: numbers, no mechanism words
                        wording="measurements" if trained.get("mystery") else "symptoms")
    summary.update(epochs_done=trained["epochs_done"], epochs_total=trained["epochs_total"],
                   checkpoint_sha256=trained["checkpoint_sha256"])
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    if figure:
        from breaklab.plots import write_report

        write_report(out)  # report.png: the run's curves on one page, the symptom's first step marked
    summary["seconds"] = trained["seconds"]
    summary["total_seconds"] = time.perf_counter() - trained["started"]
    return summary


def train_and_summarize(cfg, figure: bool = True, warn: bool = False) -> dict[str, Any]:
    """Train (or resume) the run `cfg` describes, then write its summary and figure. With warn,
    the doctor's detectors run during training and print a line the moment one fires (never for
    a mystery run: a warning would name its answer)."""
    from breaklab.trainer import train

    observer = None
    if warn and cfg.break_name != "mystery":
        from breaklab.early_warnings import EarlyWarnings

        observer = EarlyWarnings().observe
    return finish_run(cfg.out, train(cfg, observer=observer), figure=figure)
