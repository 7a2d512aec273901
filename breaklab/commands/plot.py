"""`breaklab plot RUN`: draw a run's one-page figure (report.png), over a clean run of the same seed."""
from __future__ import annotations

from pathlib import Path

import click


@click.command(name="plot")
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the PNG [default: RUN/report.png for a folder, "
                   "<tarball name>_report.png for a tarball].")
@click.option("--reference", type=click.Path(exists=True, path_type=Path),
              help="A clean run (folder or tarball) to draw in grey under every curve "
                   "[default: runs/none_SEED beside RUN, when it has the same options].")
@click.option("--no-reference", is_flag=True, help="Draw the run alone, without a clean run.")
def plot(run: Path, out: Path | None, reference: Path | None, no_reference: bool) -> None:
    """Draw RUN's report.png: one panel per measurement that can show a symptom (loss, accuracy,
    learning rate, gradient norms, step size, dead units, zero gradients, BatchNorm statistics,
    outputs fed to the loss), each over a clean run of the same seed in grey, with the step where
    a symptom starts marked. Every training run already writes one; run this again after training
    the clean run, or to compare with another one.

    \b
    Example:
      ./demo_run.sh 42 none && ./demo_run.sh 42 huge_lr   # the clean run first
      breaklab plot runs/huge_lr_42                      # draws runs/none_42 in grey
      breaklab plot run_huge_lr_42.tgz --reference runs/none_42 --out huge_lr.png
    """
    from breaklab.atomic import atomic_write_bytes
    from breaklab.doctor import RunReadError
    from breaklab.plots import prepare_report

    if reference is not None and no_reference:
        raise click.UsageError("--reference and --no-reference contradict each other; give one")
    if out is None:
        out = run / "report.png" if run.is_dir() else Path(run.name.removesuffix(".tgz") + "_report.png")
    try:
        report = prepare_report(run, reference=False if no_reference else (reference or True))
        atomic_write_bytes(out, report.png())
    except RunReadError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"cannot write {out} ({e.strerror}); choose another --out") from None
    click.echo(f"figure:   {out}")
    if report.reference is not None:
        click.echo(f"in grey:  {report.reference_path} ({report.reference_label})")
    elif report.reference_note:
        click.echo(f"note:     {report.reference_note}")
