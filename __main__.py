"""`python -m cnncodes`: the command line."""
from cnncodes.cli import cli

cli(prog_name="cnncodes")
