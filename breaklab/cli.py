"""The `breaklab` command: one click group, each subcommand in its own module."""
from __future__ import annotations

import click

from breaklab import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="breaklab")
def cli() -> None:
    """breaklab: cause a silent ML training bug on purpose, watch its symptom, diagnose it,
    fix it, and prove the fix.

    \b
    Quick start:
      ./demo_run.sh 42 huge_lr      train with the learning rate x100, pack the run
      breaklab list                 the breaks you can switch on
      breaklab train --break NAME   train with one break (same as python trainer.py)
    """


def _register() -> None:
    from breaklab.commands.list_breaks import list_breaks
    from breaklab.commands.pack import pack
    from trainer import build_command

    cli.add_command(build_command(), "train")
    cli.add_command(list_breaks)
    cli.add_command(pack)


_register()
