"""The `breaklab` command: one click group, each subcommand in its own module."""
from __future__ import annotations

import click

from breaklab import __version__


class _Group(click.Group):
    """The commands import torch & co. only when they run: a missing one is a one-line hint."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as e:
            if (e.name or "breaklab").split(".")[0] == "breaklab":
                raise
            raise click.ClickException(f"{e.name} is not installed for this Python: activate the "
                                       f"environment (. .venv/bin/activate) or install it "
                                       f"(pip install -e .)") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="breaklab")
def cli() -> None:
    """breaklab: cause a silent ML training bug on purpose, watch its symptom, diagnose it,
    fix it, and prove the fix.

    \b
    Quick start:
      ./demo_run.sh 42 huge_lr      train with the learning rate x100, pack the run
      breaklab list                 the breaks you can switch on
      breaklab train --break NAME   train with one break (same as python trainer.py)
      breaklab doctor RUN           diagnose a finished run from its measurements
      breaklab triage --break NAME  the ordered debugging procedure, as short experiments
      ./demo_run.sh 5 mystery       a hidden break: breaklab hint RUN, breaklab reveal RUN --guess NAME
      breaklab exercise new ...     a plain training script with bugs to find, like an interview
    """
    from breaklab.process_gc import heavy_imports_frozen, skip_final_garbage_collection

    skip_final_garbage_collection()
    heavy_imports_frozen()


def _register() -> None:
    from breaklab.commands.autograder import autograder
    from breaklab.commands.compare import compare
    from breaklab.commands.doctor import doctor
    from breaklab.commands.exercise import exercise
    from breaklab.commands.grade import grade
    from breaklab.commands.hint import hint
    from breaklab.commands.kit import kit
    from breaklab.commands.list_breaks import list_breaks
    from breaklab.commands.pack import pack
    from breaklab.commands.plot import plot
    from breaklab.commands.reveal import reveal
    from breaklab.commands.submit import submit
    from breaklab.commands.train import build_command as build_train_command
    from breaklab.commands.triage import triage

    cli.add_command(build_train_command(), "train")
    cli.add_command(list_breaks)
    cli.add_command(pack)
    cli.add_command(doctor)
    cli.add_command(triage)
    cli.add_command(compare)
    cli.add_command(plot)
    cli.add_command(hint)
    cli.add_command(reveal)
    cli.add_command(submit)
    cli.add_command(grade)
    cli.add_command(kit)
    cli.add_command(autograder)
    cli.add_command(exercise)


_register()
