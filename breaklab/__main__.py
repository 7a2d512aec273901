"""`python -m breaklab ...`: the same as the `breaklab` command."""
from breaklab.cli import cli

cli(prog_name="breaklab")
