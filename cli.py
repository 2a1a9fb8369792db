"""cnncodes: the command line. A thin click group over commands/, one module a command, each loaded only when it
runs (so `--help` and argument errors stay quick): errors end in one line and a non-zero exit status."""
import errno
import importlib
import logging
import os
import sys

import click

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow start-up chatter is not for users

from cnncodes.features.errors import UserError  # noqa: E402  (after the setting above, which TensorFlow reads)
from cnncodes.options import Interrupted  # noqa: E402
from cnncodes.pipeline.console import printable  # noqa: E402

# command name -> its module in commands/, whose function of the same name is the click command
COMMANDS = {name: name.replace("-", "_") for name in (
    "features", "info", "export", "layers", "fit", "kfold", "sweep", "curve", "audit", "predict", "neighbors",
    "export-model", "runs", "report", "baseline")}


class Cli(click.Group):
    """Bad input ends in one line on stderr and a non-zero exit status, never a traceback. Commands are loaded
    by name from commands/ when they run, or when their help is shown."""

    def list_commands(self, ctx) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx, name: str):
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"cnncodes.commands.{COMMANDS[name]}")
        return getattr(module, COMMANDS[name])

    def invoke(self, ctx):
        from cnncodes.pipeline.console import filter_native_stderr

        filter_native_stderr()  # the backend's C++ start-up lines never reach the console
        logging.getLogger("tensorflow").setLevel(logging.ERROR)  # nor its Python warnings (tf.function retracing)
        try:
            return super().invoke(ctx)
        except click.UsageError as e:  # a bad option value or a missing argument: one line, not click's three
            command = f" {e.ctx.command.name}" if e.ctx and e.ctx.command and e.ctx.command is not self else ""
            click.echo(f"error: {printable(e.format_message())} (see `cnncodes{command} --help`)", err=True)
            sys.exit(2)
        except (KeyboardInterrupt, Interrupted) as e:  # Ctrl-C: what was kept and how to go on, not "Aborted!"
            kept = e.kept if isinstance(e, Interrupted) else KEPT_AFTER_INTERRUPT.get(
                ctx.invoked_subcommand, "nothing half-written was kept; run the command again")
            click.echo(f"\ninterrupted: {printable(kept)}", err=True)
            sys.exit(130)
        except UserError as e:  # its text may quote data (class folders, member names): escaped for the terminal
            click.echo(f"error: {printable(e)}", err=True)
            sys.exit(1)
        except OSError as e:  # disk full, read-only, missing or vanished files: the system's reason and the file
            if e.errno not in FILE_SYSTEM_ERRORS or not e.strerror:
                raise
            fix = ("check the path, or choose another" if e.errno in PATH_ERRORS else
                   "free space, or choose a writable --store; committed work is kept and the same command resumes")
            click.echo(f"error: {e.strerror}" + (f": {printable(e.filename)}" if e.filename else "") + f" - {fix}",
                       err=True)
            sys.exit(1)


# What an interrupted command leaves, and how it goes on (`features` says what it kept: kept_features).
KEPT_AFTER_INTERRUPT = {
    "fit": "nothing was saved (a run is saved only when it finishes)",
    "kfold": "the folds that finished are kept; the same command computes only the rest",
    "sweep": "the folds that finished are kept; the same command computes only the rest",
    "curve": "the points that finished are kept; the same command computes only the rest",
    "baseline": "the epochs that finished are kept (a checkpoint each); the same command resumes after the last",
}


PATH_ERRORS = {errno.ENOENT, errno.EEXIST, errno.EISDIR, errno.ENOTDIR, errno.ENAMETOOLONG}
FILE_SYSTEM_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM} | PATH_ERRORS


@click.group(cls=Cli, context_settings={"show_default": True, "help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cnncodes")
def cli():
    """Transfer learning with cached CNN codes: extract once, fit heads from the store."""


if __name__ == "__main__":
    cli()
