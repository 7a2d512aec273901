"""The `breaklab` command: one click group, each subcommand in its own module."""
from __future__ import annotations

import click

from breaklab import __version__


class _Group(click.Group):
    """`train` is built from breaklab.trainer.py's Config, and trainer.py imports torch (2 s): it is
    loaded only when asked for, so that pack, doctor, compare... start without torch."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "train"})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "train" and name not in self.commands:
            from breaklab.trainer import build_command

            self.add_command(build_command(), "train")
        return super().get_command(ctx, name)


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
      breaklab exercise new ...     a plain training script with bugs to find, like an interview
    """


def _register() -> None:
    from breaklab.commands.compare import compare
    from breaklab.commands.doctor import doctor
    from breaklab.commands.exercise import exercise
    from breaklab.commands.grade import grade
    from breaklab.commands.kit import kit
    from breaklab.commands.list_breaks import list_breaks
    from breaklab.commands.pack import pack
    from breaklab.commands.plot import plot
    from breaklab.commands.reveal import reveal
    from breaklab.commands.submit import submit
    from breaklab.commands.triage import triage

    cli.add_command(list_breaks)  # `train` is added by _Group on first use
    cli.add_command(pack)
    cli.add_command(doctor)
    cli.add_command(triage)
    cli.add_command(compare)
    cli.add_command(plot)
    cli.add_command(reveal)
    cli.add_command(submit)
    cli.add_command(grade)
    cli.add_command(kit)
    cli.add_command(exercise)


_register()
