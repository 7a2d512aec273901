"""`breaklab doctor RUN`: diagnose a finished run from its measurements."""
from __future__ import annotations

from pathlib import Path

import click


@click.command(name="doctor")
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the diagnosis as JSON (see docs/DOCTOR.md).")
@click.option("--spoil", is_flag=True, help="Diagnose a mystery run too (it names the answer; "
              "`breaklab hint RUN` gives graded hints instead).")
def doctor(run: Path, as_json: bool, spoil: bool) -> None:
    """Diagnose RUN (a run folder or a run tarball): healthy, or which fault, with a confidence,
    the ranked hypotheses and their evidence, the check to run next and the fix to try.

    The verdict comes from the run's measurements only (metrics.jsonl and the checkpoint's
    tensors), never from the recorded break or configuration. On a mystery run it asks for
    --spoil first.

    \b
    Example:
      ./demo_run.sh 42 huge_lr && breaklab doctor runs/huge_lr_42
    """
    from breaklab.doctor import RunReadError, diagnose, format_diagnosis, load_run, to_json_text
    from breaklab.mystery import is_mystery, spoiler_refusal

    try:
        loaded = load_run(run)
    except RunReadError as e:
        raise click.ClickException(str(e)) from None
    if is_mystery(loaded.meta) and not spoil:
        raise click.ClickException(spoiler_refusal(run, "doctor"))
    diagnosis = diagnose(loaded)
    click.echo(to_json_text(diagnosis) if as_json else format_diagnosis(loaded, diagnosis))
