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
@click.option("--spoil", is_flag=True, help="Triage mystery code too (the verdict names the answer; "
              "`breaklab hint RUN` gives graded hints instead).")
@click.option("--secret", metavar="TEXT", help="With --spoil: the secret the mystery run was made with "
              "[default: $BREAKLAB_SECRET, else this install's].")
def triage(run: Path | None, seed, break_name, batch_size, lr, amp, out_dir, spoil, secret) -> None:
    """Run the senior engineer's procedure on the training code: (1) overfit one batch, (2) the
    inputs of both splits, (3) labels and batch order, (4) the loss by hand, (5) the parameters
    and the optimizer, (6) gradients and updates, (7) float16 against float32, (8) a
    learning-rate sweep, (9) the schedule, (10) per-layer statistics, (11) train/eval mode, (12)
    the evaluation, (13) memory kept between steps, (14) checkpoint and resume.

    Each step prints what it ran, what it saw, what that rules in or out, and its time; the
    procedure stops at the first step that establishes the cause. Give RUN (a run folder or
    tarball) to reuse its configuration, or --break/--seed to triage a fresh configuration.
    Mystery code needs --spoil. A whole triage takes 5-10 s of CPU time, 2.6-2.8 s of it importing
    torch (measured on a 2-core x86-64; on a busy machine the wall time is several times that).

    \b
    Example:
      breaklab triage runs/huge_lr_42
      breaklab triage --break eval_mode --seed 3
    """
    from breaklab.doctor import RunReadError, read_run_files
    from breaklab.triage import Triage, TriageSetup, format_verdict
    from breaklab import catalogue
    from breaklab.breaks import UnknownBreak
    from breaklab.canonical_setup import SetupError
    from breaklab.mystery import RevealError, spoiler_refusal
    import json

    setup, meta = TriageSetup(), None
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
    if not catalogue.is_known(setup.break_name):
        raise click.UsageError(catalogue.unknown_message(setup.break_name))
    out_dir = out_dir or Path("runs") / f"triage_{setup.seed}"
    shown = "mystery (hidden)" if setup.break_name == catalogue.MYSTERY else setup.break_name
    if setup.break_name == catalogue.MYSTERY:
        if not spoil:
            raise click.ClickException(spoiler_refusal(run, "triage"))
        try:
            setup.break_name = mystery_code(meta, setup.seed, secret)
        except RevealError as e:
            raise click.ClickException(str(e)) from None
    click.echo(f"triage:  code {shown}, seed {setup.seed}, batch {setup.batch_size}, lr {setup.lr:g}"
               f"{', amp' if setup.amp else ''}; stops at the first step that establishes a cause\n")
    try:
        report = Triage(setup, out_dir, echo=lambda s: click.echo(s + "\n")).run()
    except (SetupError, UnknownBreak) as e:
        raise click.ClickException(str(e)) from None
    click.echo(format_verdict(report))


def mystery_code(meta: dict | None, seed: int, secret: str | None) -> str:
    """The break that mystery code runs: the run's commitment opened with the secret, or (no run)
    the choice for this seed under the secret."""
    from breaklab.breaks import MYSTERY, mystery_choice
    from breaklab.mystery import RevealError, find_answer
    from breaklab.secret import SecretError, resolve

    if isinstance(meta, dict) and meta.get("break") == MYSTERY:
        return find_answer(meta, secret)[0]
    try:
        return mystery_choice(seed, resolve(secret))
    except SecretError as e:
        raise RevealError(str(e)) from None
