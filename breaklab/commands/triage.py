"""`breaklab triage`: the ordered debugging procedure, run as short experiments."""
from __future__ import annotations

from pathlib import Path

import click


@click.command(name="triage")
@click.argument("run", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=None, help="Seed [default: the run's, or 42].")
@click.option("--break", "break_name", default=None, metavar="NAME",
              help="The code to triage: a break's name, none or mystery [default: the run's, or none].")
@click.option("--batch-size", type=click.IntRange(min=8), default=None, help="Batch size [default: the run's, or 64].")
@click.option("--lr", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="Requested learning rate [default: the run's, or 0.1].")
@click.option("--amp", is_flag=True, default=None, help="Mixed precision on (as trainer.py --amp).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the picture of inputs and labels [default: runs/triage_SEED].")
def triage(run: Path | None, seed, break_name, batch_size, lr, amp, out_dir) -> None:
    """Run the senior engineer's procedure on the training code: (1) overfit one batch, (2) data
    and label sanity, (3) the loss by hand, (4) gradients and updates, (5) a learning-rate sweep,
    (6) float32 instead of AMP, (7) per-layer statistics, (8) train/eval mode.

    Each step prints what it ran, what it saw, what that rules in or out, and its time; the
    procedure stops at the first step that establishes the cause. Give RUN (a run folder or
    tarball) to reuse its configuration, or --break/--seed to triage a fresh configuration.
    A whole triage takes 8-9 s of CPU time, 2.6-2.8 s of it importing torch (measured on a 2-core
    x86-64; on a busy machine the wall time is several times that).

    \b
    Example:
      breaklab triage runs/huge_lr_42
      breaklab triage --break eval_mode --seed 7
    """
    from breaklab.doctor import RunReadError, read_run_files
    from breaklab.triage import Triage, TriageSetup, format_verdict
    from breaklab.breaks import BREAK_NAMES, MYSTERY, UnknownBreak
    from breaklab.canonical_setup import SetupError
    import json

    setup = TriageSetup()
    if run is not None:
        try:
            files = read_run_files(run)
            meta = json.loads(files["meta.json"]) if "meta.json" in files else None
        except (RunReadError, ValueError) as e:
            raise click.ClickException(str(e)) from None
        if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
            raise click.ClickException(f"{run} has no meta.json with its configuration: give "
                                       f"--break NAME --seed N instead")
        setup = TriageSetup.from_meta(meta)
    for name, value in (("seed", seed), ("break_name", break_name), ("batch_size", batch_size), ("lr", lr)):
        if value is not None:
            setattr(setup, name, value)
    if amp:
        setup.amp = True
    if setup.break_name not in ["none"] + BREAK_NAMES + [MYSTERY]:
        raise click.UsageError(f"unknown break {setup.break_name!r}; valid: "
                               f"{', '.join(['none'] + BREAK_NAMES + [MYSTERY])}")
    out_dir = out_dir or Path("runs") / f"triage_{setup.seed}"
    shown = "mystery (hidden)" if setup.break_name == MYSTERY else setup.break_name
    click.echo(f"triage:  code {shown}, seed {setup.seed}, batch {setup.batch_size}, lr {setup.lr:g}"
               f"{', amp' if setup.amp else ''}; stops at the first step that establishes a cause\n")
    try:
        report = Triage(setup, out_dir, echo=lambda s: click.echo(s + "\n")).run()
    except (SetupError, UnknownBreak) as e:
        raise click.ClickException(str(e)) from None
    click.echo(format_verdict(report))
