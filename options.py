"""The command line's shared pieces: the options every command names the same way, their types, and how commands
print what they did and read what they were given."""
import json
import os
import sys
from pathlib import Path

import click

from cnncodes.features.errors import MAX_CHUNK, MAX_IMAGE_SIDE, MAX_SEED, UserError
from cnncodes.pipeline.console import printable


class Interrupted(Exception):
    """Ctrl-C in a command that says what it kept."""

    def __init__(self, kept: str):
        super().__init__(kept)
        self.kept = kept


POSITIVE = click.IntRange(min=1)
CHUNK = click.IntRange(1, MAX_CHUNK)
WORKERS = click.IntRange(1, os.cpu_count() or 1)  # local worker processes: one a core at most
SEED = click.IntRange(0, MAX_SEED)
SIZE = click.IntRange(8, MAX_IMAGE_SIDE)  # ImageNet CNNs take 32..~600 px


class PathType(click.Path):
    """A path that is never empty: Path("") is the current folder, where nothing was asked to be read or written."""

    def __init__(self, **kwargs):
        super().__init__(path_type=Path, **kwargs)

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value:
            self.fail("an empty path; give a folder or file name", param, ctx)
        return super().convert(value, param, ctx)


def store_option(required: bool = True, help: str = "the store folder"):
    """Every command names its store the same way: --store, or $CNNCODES_STORE."""
    return click.option("--store", envvar="CNNCODES_STORE", show_envvar=True, required=required, type=PathType(),
                        help=help)


def log(message: str):
    """Progress messages, which may name classes, files and sets from data."""
    click.echo(printable(message), err=True)


def choice(*values):
    return click.Choice(values, case_sensitive=False)


class LazyChoice(click.Choice):
    """A case-insensitive choice whose values come from a registry, imported only when an option is
    parsed or its help shown (so `cnncodes --help` and other commands stay fast)."""

    def __init__(self, load):
        self.load, self.case_sensitive = load, False

    @property
    def choices(self):
        return tuple(self.load())


def head_choice(with_baselines: bool):
    def load():
        from cnncodes.classifiers.heads.names import BASELINE_NAMES, HEAD_NAMES

        return [*HEAD_NAMES, *(BASELINE_NAMES if with_baselines else ())]

    return LazyChoice(load)


def backbone_choice():
    def load():
        from cnncodes.pipeline.backbones import BACKBONES

        return list(BACKBONES)

    return LazyChoice(load)


PRECISION = choice("fp32", "bf16", "fp16")


def keras_verbosity() -> int:
    """Keras's live progress bar on a terminal; one plain line an epoch in a log file (no control codes)."""
    return 1 if sys.stdout.isatty() else 2


def checked_name(ctx, param, value):
    from cnncodes.features.errors import check_name

    return None if value is None else check_name(value, f"--{param.name}")


def native_size(backbone: str) -> int:
    from cnncodes.pipeline.backbones import get_backbone

    return get_backbone(backbone).native_size


def default_store(dataset: str) -> Path:
    from cnncodes.pipeline.sources import dataset_name

    return Path("store") / dataset_name(dataset)


def image_inputs(images) -> list:
    """The inputs that IMAGE arguments (files, folders, globs, .txt lists) name, one per image or per thing that
    gave none; none that can give an image is one line."""
    from cnncodes.classifiers.serving.image_inputs import expand_inputs, images_in

    inputs = expand_inputs(list(images))
    if not images_in(inputs):
        raise UserError(f"no images in {' '.join(images)}: give image files, folders holding some, a glob that "
                        f"matches some, or a .txt list of paths")
    return inputs


def report_unreadable(command: str, results: list, done: str, where_written: str, out):
    """The closing count of a command over image inputs; exit status 1 when some gave no image (each result has
    `path` and `error`: a file that could not be read, a pattern that matched nothing...), the first named."""
    failed = [r for r in results if r.error]
    log(f"{command}: {len(results) - len(failed)} of {len(results)} inputs {done}{where_written}")
    if failed:
        where = f" in {printable(out)}" if out is not None else ""
        log(f"{command}: {len(failed)} could not be used, listed with their reason{where}, e.g. "
            f"{printable(failed[0].path)}: {printable(failed[0].error)}")
        sys.exit(1)


def parse_params(pairs) -> dict:
    """--param KEY=VALUE, VALUE read as JSON where it parses (numbers, lists, true) else as a string."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UserError(f"--param {pair!r} is not KEY=VALUE, e.g. --param epochs=20")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def features_option(help: str = "feature set name, or A+B to join sets' codes row by row [the store's only complete "
                                  "one]"):
    return click.option("--features", help=help)


def label_option(help: str = "label set [the store's first]"):
    return click.option("--label", help=help)


def quiet_option(help: str = "no progress bars"):
    return click.option("--quiet", is_flag=True, help=help)


def param_option(help: str = "head parameter KEY=VALUE (a JSON value), repeatable"):
    return click.option("--param", "params", multiple=True, help=help)


def epochs_option(help: str = "for the heads that train in epochs [their default]"):
    return click.option("--epochs", type=POSITIVE, help=help)


def dask_options(command):
    """--scheduler and --workers, as the Dask stages over heads (kfold, sweep) take them."""
    command = click.option("--workers", default=1, type=WORKERS, help="local worker processes when no --scheduler")(
        command)
    return click.option("--scheduler", help="address of a running dask.distributed scheduler [a local cluster]")(
        command)


no_views_option = click.option("--no-views", "plain", is_flag=True,
                               help="train on the plain codes only, though the set has cached augmented views")
