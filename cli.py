"""cnncodes: the command line. A thin click layer over pipeline/, features/ and classifiers/."""
import errno
import json
import logging
import os
import re
import sys
from pathlib import Path

import click

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow start-up chatter is not for users

from cnncodes.features.errors import UserError
from cnncodes.features.limits import MAX_BATCH, MAX_CHUNK, MAX_IMAGE_SIDE, MAX_SEED, MAX_VIEWS
from cnncodes.features.outputs import check_new_output
from cnncodes.pipeline.console import printable


class Cli(click.Group):
    """Bad input ends in one line on stderr and a non-zero exit status, never a traceback."""

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


class Interrupted(Exception):
    """Ctrl-C in a command that says what it kept."""

    def __init__(self, kept: str):
        super().__init__(kept)
        self.kept = kept


def kept_features(store) -> str:
    """What an interrupted `features` kept: every committed chunk of each set in progress (the same command
    resumes from there), or nothing when the ingest had not finished."""
    from cnncodes.features import schema
    from cnncodes.features.store import FeatureStore

    if not schema.data_path(store).exists():
        return "the ingest had not finished: nothing was stored; the same command starts it again"
    sets = [s for s in FeatureStore.open(store).feature_sets() if not s.damaged and not s.complete]
    kept = "; ".join(f"{s.name} keeps {s.done} of {s.n} rows in committed chunks" for s in sets)
    return (kept or "the data and every complete feature set are kept") + "; the same command resumes from there"


PATH_ERRORS = {errno.ENOENT, errno.EEXIST, errno.EISDIR, errno.ENOTDIR}
FILE_SYSTEM_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM} | PATH_ERRORS
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
        from cnncodes.classifiers.registry import BASELINES, HEADS

        return [*HEADS, *(BASELINES if with_baselines else ())]

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
    from cnncodes.features.names import check_name

    return None if value is None else check_name(value, f"--{param.name}")


@click.group(cls=Cli, context_settings={"show_default": True, "help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cnncodes")
def cli():
    """Transfer learning with cached CNN codes: extract once, fit heads from the store."""


def native_size(backbone: str) -> int:
    from cnncodes.pipeline.backbones import get_backbone

    return get_backbone(backbone).native_size


def default_store(dataset: str) -> Path:
    from cnncodes.pipeline.sources import dataset_name

    return Path("store") / dataset_name(dataset)


@cli.command()
@click.option("--dataset", required=True, help="cifar100, cifar10, digits or folder:PATH (directory, .tar or .zip)")
@store_option(required=False, help="store folder [store/<dataset>]")
@click.option("--backbone", default="resnet50", type=backbone_choice(), help="the frozen ImageNet CNN")
@click.option("--weights", default="imagenet",
              help="imagenet, none (seeded random) or a weights file (Keras; a PyTorch state dict for efficientnet_lite*)")
@click.option("--size", type=SIZE,
              help="side the images are resized to on the device [the backbone's native size: 224; 240, 260 for "
                   "efficientnet_lite1, efficientnet_lite2]")
@click.option("--layer", help="cut the backbone at this layer, or at each of A,B,C in one pass, each its own feature "
              "set (`cnncodes layers BACKBONE` lists them, marking block outputs) [its last]")
@click.option("--spatial", is_flag=True, help="also store the spatial maps (float16)")
@click.option("--flip-average", is_flag=True, help="average the codes of each image and its mirror image (2x the work)")
@click.option("--views", type=click.IntRange(1, MAX_VIEWS),
              help="also keep K seeded augmented views (random-resized crop, flip) of each training image's codes, "
                   "and maps with --spatial (about 1 + K x train/all the work) [none]")
@click.option("--view-area", type=click.FloatRange(0, 1, min_open=True),
              help="with --views: each view crops this much of the image's area and more (finetune's --crop-area) "
                   "[0.25]")
@click.option("--precision", type=PRECISION, default="fp32", help="arithmetic of the forward pass (codes are stored as float32)")
@click.option("--batch-size", default="64", help=f"images per device step (1 to {MAX_BATCH}), or auto (largest that fits)")
@click.option("--chunk-size", default=512, type=CHUNK,
              help="images per committed chunk (resume granularity)")
@click.option("--limit", type=POSITIVE, help="a stratified subset of N images per split [every image]")
@click.option("--name", callback=checked_name, help="feature set name [from the configuration]")
@click.option("--seed", default=0, type=SEED,
              help="seeds subsets, holdout, folds and --weights none")
@click.option("--holdout", default=0.2, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="test fraction for data without a test split")
@click.option("--image-size", type=click.IntRange(1, MAX_IMAGE_SIDE), help="folder data: square ingest size [first image's shorter side]")
@click.option("--folds", default="", help="k values whose fold assignments ingest computes, e.g. 5,10 "
              "[none: kfold computes any k when first asked for, and keeps it]")
@click.option("--skip-bad", is_flag=True, help="skip unreadable images (recorded in the store) instead of stopping")
@click.option("--data-dir", type=PathType(), help="where CIFAR archives are [$CNNCODES_DATA, ~/.keras/datasets]")
@click.option("--verify/--no-verify", default=True, help="check CIFAR archives against the official md5")
@click.option("--workers", default=1, type=WORKERS, help="local Dask worker processes extracting shards")
@click.option("--scheduler", help="address of a dask.distributed scheduler whose workers extract shards [none: "
              "this machine]")
@click.option("--reingest", is_flag=True, help="ingest the source again into this store (when it changed); feature "
              "sets of the old data are rebuilt when asked for")
@click.option("--quiet", is_flag=True, help="no progress bars")
def features(dataset, store, backbone, weights, size, layer, spatial, flip_average, views, view_area, precision, batch_size,
             chunk_size, limit, name, seed, holdout, image_size, folds, skip_bad, data_dir, verify, workers, scheduler,
             reingest, quiet):
    """Ingest a data set into a store (once) and cache its CNN codes (once per configuration)."""
    from cnncodes.features import schema
    from cnncodes.pipeline.backbones import check_size, checked_weights
    from cnncodes.pipeline.cluster import check_address, check_scheduler
    from cnncodes.pipeline.ingest import IngestConfig, ingest
    from cnncodes.pipeline.sources import canonical_dataset

    dataset, weights = canonical_dataset(dataset), checked_weights(weights, backbone)
    size = size or native_size(backbone)
    check_size(backbone, size)
    store = store or default_store(dataset)
    if batch_size != "auto" and not (batch_size.isdigit() and 0 < int(batch_size) <= MAX_BATCH):
        raise UserError(f"--batch-size {batch_size!r} is neither a whole number from 1 to {MAX_BATCH} nor auto")
    batch_size = batch_size if batch_size == "auto" else int(batch_size)
    try:
        ks = tuple(sorted({int(k) for k in folds.split(",") if k.strip()}))
    except ValueError:
        raise UserError(f"--folds {folds!r} is not a comma-separated list of integers, e.g. 5,6,10") from None
    if scheduler is not None:  # an empty one too: it would silently mean this machine
        check_address(scheduler)
    # What would stop the extraction is found before ingest writes a data file that is then left behind.
    writes_data = reingest or not schema.data_path(store).exists()
    if scheduler and writes_data:
        check_scheduler(scheduler)
    if view_area is not None and views is None:
        raise UserError(f"--view-area {view_area:g} sets how views crop: give --views K too")
    if views is not None:  # with the stored side where it is known before ingest (else the extractor checks it)
        from cnncodes.features.store import FeatureStore
        from cnncodes.pipeline.augment import check_views
        from cnncodes.pipeline.sources import FOLDER

        if writes_data:
            side = image_size if dataset.startswith(FOLDER) else None
        else:
            side = min(FeatureStore.open(store).image_shape[:2])
        check_views(views, side)
    cuts = [None] if layer is None else [part.strip() for part in layer.split(",")]
    if "" in cuts:
        raise UserError(f"--layer {layer!r} has an empty name: give layer names separated by commas, e.g. "
                        f"--layer top_activation,block6a_expand_activation")
    from cnncodes.pipeline.extract import FeatureConfig, check_layers, extract_layers  # loads no backend

    check_layers(cuts)
    if layer is not None or (writes_data and weights not in ("imagenet", "none")):  # builds the network
        from cnncodes.pipeline.backbones import check_backbone

        check_backbone(backbone, weights, [c for c in cuts if c is not None] or None)
    from cnncodes.pipeline.augment import Augmentation

    try:
        ingest(store, IngestConfig(dataset, limit, holdout, seed, image_size, skip_bad, ks), data_dir=data_dir,
               verify=verify, progress=not quiet, log=log, reingest=reingest)
        config = FeatureConfig(backbone, weights, size, cuts[0], spatial, precision, seed, flip_average, views or 0,
                               Augmentation() if view_area is None else Augmentation(scale=(view_area, 1.0)))
        for result in extract_layers(store, config, cuts, name=name, batch_size=batch_size, chunk_size=chunk_size,
                                     workers=workers, scheduler=scheduler, progress=not quiet, log=log):
            click.echo(f"{printable(result.name)}\t{result.status}\t{result.rows} rows\t{printable(result.path)}")
    except KeyboardInterrupt:
        raise Interrupted(kept_features(store)) from None


@cli.command()
@store_option(required=False)
@click.argument("store_argument", metavar="[STORE]", required=False, type=PathType())
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--check", is_flag=True, help="read every stored byte once and report each file as sound or damaged")
def info(store, store_argument, as_json, check):
    """What a store holds: data, splits, label sets, folds, feature sets."""
    from cnncodes.features.store import STALE, FeatureStore

    given = click.get_current_context().get_parameter_source("store") == click.core.ParameterSource.COMMANDLINE
    if store_argument and given and Path(store) != store_argument:  # $CNNCODES_STORE yields to the argument
        raise UserError(f"two stores given, {store_argument} and --store {store}: give one")
    store = store_argument or store  # `info STORE` as before, or --store like every other command
    if store is None:
        raise UserError("which store? give --store DIR (or set CNNCODES_STORE)")
    opened = FeatureStore.open(store)
    s = opened.summary()
    if check:
        s["check"] = opened.check()
    if as_json:
        click.echo(json.dumps(s, indent=2))
    else:
        click.echo(format_info(s))
    if check and any(why and not why.startswith(STALE) for why in s["check"].values()):
        sys.exit(1)  # damaged or not verifiable; a stale set is sound, and rebuilt when asked for


def format_info(s: dict) -> str:
    """The summary as text; every name in it comes from data, so each is escaped for the terminal."""
    p = printable
    lines = [f"store     {p(s['store'])}", f"dataset   {p(s['dataset'])}  ({p(s['source'])})",
             f"images    {s['images']['count']} x {tuple(s['images']['shape'])} uint8, "
             + ", ".join(f"{k} {v}" for k, v in s["splits"].items()) + (f", {s['skipped']} skipped" if s["skipped"] else ""),
             "labels    " + ", ".join(f"{p(k)} ({v} classes)" for k, v in s["label_sets"].items()),
             "folds     " + (", ".join(map(p, s["folds"])) or "none kept yet (kfold computes any k when first asked for)"),
             "sources   " + ("recorded per row" if s["sources"] else "not recorded (store made before cnncodes recorded them)"),
             f"features  {len(s['feature_sets'])}"]
    for f in s["feature_sets"]:
        if f.get("damaged"):
            lines.append(f"  {p(f['name'])}: DAMAGED ({p(f['damaged'])}): re-run `cnncodes features` with its options "
                         f"to rebuild it")
            continue
        if f.get("stale"):  # made from other data than data.h5 holds now: never read as this data's codes
            lines.append(f"  {p(f['name'])}: STALE ({p(f['stale'])}): re-run `cnncodes features` with its options to "
                         f"rebuild it")
            continue
        state = "complete" if f["complete"] else f"INCOMPLETE {f['rows']}"
        lines.append(f"  {p(f['name'])}: {tuple(f['shape'])} {f['dtype']}"
                     + (f" + spatial {tuple(f['spatial_shape'])}" if f["spatial_shape"] else "")
                     + (f" + {f['views']} views" if f.get("views") else "")
                     + f", {state}, {f['seconds']:.1f}s, fingerprint {f['fingerprint'][:12]}")
    if "check" in s:
        lines.append("check")
        for name, why in s["check"].items():
            # made before checksums covered it: not damaged, but not vouched for either (and so exit 1)
            unverified = bool(why) and why.startswith("not verifiable")
            stale = bool(why) and why.startswith("stale:")
            verdict = ("sound" if not why else "NOT VERIFIABLE" + why[14:] if unverified else
                       f"sound but STALE ({why[7:]})" if stale else f"DAMAGED ({why})")
            lines.append(f"  {p(name)}: {p(verdict)}")
    return "\n".join(lines)


@cli.command()
@store_option()
@click.option("--features", help="feature set name, or A+B to join sets' codes row by row [the store's only complete one]")
@click.option("--spatial", is_flag=True, help="export the spatial maps instead of the pooled codes")
@click.option("--out", required=True, type=PathType(), help="the .npz file to write")
def export(store, features, spatial, out):
    """Codes of both splits with every label set, split, sources and folds, as one .npz (no pickles)."""
    from cnncodes.features.export import export_feature_set

    check_new_output(out)
    path = export_feature_set(store, out, features, kind="spatial" if spatial else "pooled")
    click.echo(f"exported to {printable(path)}")


@cli.command()
@click.argument("backbone", type=backbone_choice())
@click.option("--size", type=SIZE, help="input side [the backbone's native size]")
def layers(backbone, size):
    """List a backbone's layer names and output shapes (for --layer); block outputs, where a cut keeps a whole
    representation, are marked."""
    from cnncodes.pipeline.backbones import block_outputs, build_backbone, check_size

    size = size or native_size(backbone)
    check_size(backbone, size)
    model = build_backbone(backbone, "none", size)
    ends = block_outputs(model)
    for layer in model.layers:
        click.echo(f"{layer.name}\t{tuple(layer.output.shape[1:])}" + ("\tblock output" if layer.name in ends else ""))


def image_inputs(images) -> list:
    """The inputs that IMAGE arguments (files, folders, globs, .txt lists) name, one per image or per thing that
    gave none; none that can give an image is one line."""
    from cnncodes.classifiers.image_inputs import expand_inputs, images_in

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


no_views_option = click.option("--no-views", "plain", is_flag=True,
                               help="train on the plain codes only, though the set has cached augmented views")


@cli.command()
@store_option()
@click.option("--head", required=True, type=head_choice(False), help="the head trained on the codes")
@click.option("--features", help="feature set name, or A+B to join sets' codes row by row [the store's only complete one]")
@click.option("--label", help="label set [the store's first, e.g. fine]")
@click.option("--spatial", is_flag=True, help="train on the spatial maps (gap, dense)")
@click.option("--epochs", type=POSITIVE, help="for the Keras heads (dense, gap) [their default]")
@click.option("--param", "params", multiple=True, help="head parameter KEY=VALUE (a JSON value), repeatable")
@no_views_option
@click.option("--quiet", is_flag=True, help="no progress (the C grid's fits, the Keras heads' epochs)")
def fit(store, head, features, label, spatial, epochs, params, plain, quiet):
    """Train a head on the training split's codes, test it, save it and its run record."""
    from cnncodes.classifiers.fit import fit_head
    from cnncodes.classifiers.runs import run_summary
    from cnncodes.classifiers.params import resolve_params

    params = resolve_params([head], parse_params(params), epochs)[head]
    if not quiet:
        params.setdefault("verbose", keras_verbosity())
    run, r = fit_head(store, head, features=features, label=label, spatial=spatial, params=params, views=not plain)
    click.echo(printable(run_summary(r)))
    click.echo(f"saved to {printable(run)}")


@cli.command()
@store_option()
@click.option("--head", "heads", required=True, multiple=True, type=head_choice(True),
              help="repeatable: a head on the codes, or a pixel baseline (cnn, finetune, wrn)")
@click.option("-k", "k", default=6, type=click.IntRange(min=2),
              help="folds: any k up to the smallest class count, computed once and kept in the store")
@click.option("--label", "labels", multiple=True, help="repeatable [the store's first label set]")
@click.option("--on", type=choice("train", "all"), default="train", help="rows the folds cover")
@click.option("--features", help="feature set name, or A+B to join sets' codes row by row [the store's only complete one]")
@click.option("--scheduler", help="address of a running dask.distributed scheduler [a local cluster]")
@click.option("--workers", default=1, type=WORKERS, help="local worker processes when no --scheduler")
@click.option("--epochs", type=POSITIVE, help="for the heads that train in epochs [their default]")
@click.option("--param", "params", multiple=True,
              help="KEY=VALUE for every requested head that has KEY, or HEAD.KEY=VALUE for one; repeatable")
@no_views_option
@click.option("--quiet", is_flag=True, help="no progress bar")
def kfold(store, heads, k, labels, on, features, scheduler, workers, epochs, params, plain, quiet):
    """k-fold evaluation over the store's folds, every (head, label, fold) a Dask task."""
    from cnncodes.classifiers.kfold import format_table, kfold_scores
    from cnncodes.classifiers.params import resolve_params

    heads = list(dict.fromkeys(heads))
    if scheduler is not None:  # a malformed (or empty) address is answered before any fold is computed or kept
        from cnncodes.pipeline.cluster import check_address

        check_address(scheduler)
    table = kfold_scores(store, heads, list(labels) or None, k=k, on=on, features=features,
                         params=resolve_params(heads, parse_params(params), epochs),
                         scheduler=scheduler, workers=workers, progress=not quiet, views=not plain)
    click.echo(format_table(table) + f"wall time {table['wall_seconds']} s, {table['tasks_run']} tasks run")
    if table.get("path"):
        click.echo(f"saved to {printable(table['path'])}")


@cli.command()
@store_option()
@click.option("--head", required=True, type=head_choice(False), help="the head every candidate is scored with")
@click.option("-k", "k", default=5, type=click.IntRange(min=2), help="folds over the training split")
@click.option("--features", "candidates", multiple=True,
              help="a candidate: a set, or A+B; repeatable [every complete set, and each extraction's cuts joined]")
@click.option("--label", help="label set [the store's first]")
@click.option("--scheduler", help="address of a running dask.distributed scheduler [a local cluster]")
@click.option("--workers", default=1, type=WORKERS, help="local worker processes when no --scheduler")
@click.option("--epochs", type=POSITIVE, help="for the heads that train in epochs [their default]")
@click.option("--param", "params", multiple=True, help="head parameter KEY=VALUE (a JSON value), repeatable")
@no_views_option
@click.option("--quiet", is_flag=True, help="no progress bars")
def sweep(store, head, k, candidates, label, scheduler, workers, epochs, params, plain, quiet):
    """Rank feature sets by the head's k-fold mean on the training split; fit the best; test it once."""
    from cnncodes.classifiers.params import resolve_params
    from cnncodes.classifiers.sweep import format_sweep, sweep as run_sweep

    if scheduler is not None:
        from cnncodes.pipeline.cluster import check_address

        check_address(scheduler)
    result = run_sweep(store, head, features=list(candidates), k=k, label=label,
                       params=resolve_params([head], parse_params(params), epochs), scheduler=scheduler,
                       workers=workers, progress=not quiet, views=not plain)
    click.echo(format_sweep(result) + f"saved to {printable(result['path'])}")


@cli.command()
@store_option()
@click.option("--head", required=True, type=head_choice(False), help="the head fitted at every point")
@click.option("--features", help="feature set, or A+B [the store's default]")
@click.option("--label", help="label set [the store's first]")
@click.option("--per-class", default="1,2,5,10,25,50,100,all", help="labelled training images per class, or all")
@click.option("--seeds", default=3, type=click.IntRange(1, 100), help="draws per point, seeded 0, 1, ... (a seeded "
              "head takes the draw's seed as its random_state)")
@click.option("--param", "params", multiple=True, help="head parameter KEY=VALUE (a JSON value), repeatable")
@click.option("--quiet", is_flag=True, help="no progress bar")
def curve(store, head, features, label, per_class, seeds, params, quiet):
    """What more labels would buy: test accuracy (mean ± std over seeds) against labelled images per class, each
    point the head fitted on a seeded draw of that many training images of each class. Resumes where it stopped."""
    from cnncodes.classifiers.label_curve import format_curve, label_curve, parse_per_class

    record = label_curve(store, head, features=features, label=label, per_class=parse_per_class(per_class),
                         seeds=tuple(range(seeds)), params=parse_params(params), progress=not quiet)
    click.echo(format_curve(record) + f"saved to {printable(record['path'])}")


@cli.command()
@store_option()
@click.option("--features", help="feature set name, or A+B to join sets' codes row by row [the store's only complete one]")
@click.option("--label", help="label set [the store's first]")
@click.option("--out", type=PathType(dir_okay=False), help="also write the table to FILE.csv [only into the store]")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True),
              help="cosine similarity of codes at or above which two images are duplicates [0.92: chosen on "
                   "planted duplicates, bench/RESULTS.md]")
@click.option("-k", "k", default=5, type=click.IntRange(min=2),
              help="folds over the training split for the out-of-fold label check (the store's, kept)")
@click.option("--quiet", is_flag=True, help="no progress bars")
def audit(store, features, label, out, threshold, k, quiet):
    """Duplicates (and test images with a duplicate in training), likely wrong labels and outliers, from the
    codes; saved in the store (audits/<set>/) for the report. Table columns: kind, source, other, given,
    suggested, score, most certain first."""
    from cnncodes.classifiers.audit import format_audit, run_audit, write_table
    from cnncodes.classifiers.duplicates import DUPLICATE_THRESHOLD

    check_new_output(out)
    record = run_audit(store, features=features, label=label, k=k, progress=not quiet,
                       threshold=DUPLICATE_THRESHOLD if threshold is None else threshold)
    click.echo(format_audit(record))
    if out is not None:
        write_table(out, record["rows"])
    click.echo(f"saved to {printable(record['path'])}" + (f" and {printable(out)}" if out is not None else ""))


@cli.command()
@click.option("--model", "run", required=True, type=PathType(exists=True, file_okay=False),
              help="a run folder made by fit")
@click.option("--top", default=5, type=POSITIVE, help="classes shown per image")
@click.option("--out", type=PathType(dir_okay=False), help="write FILE.csv: path, class, score, the next classes and "
              "scores up to --top, and why a file could not be read")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.option("--trust-model", is_flag=True,
              help="load a run saved by an older cnncodes (model.joblib: a pickle, which can run code): only runs you made yourself")
@click.argument("images", nargs=-1, required=True)
def predict(run, top, out, quiet, trust_model, images):
    """Top classes for images: files, folders, glob patterns ("photos/**/*.jpg") or .txt lists of paths.
    Probabilities, or an SVM's decision scores (labelled as such). A file that cannot be read is listed with
    its reason and the exit status is 1; the others are still classified."""
    from cnncodes.classifiers.predict import predict_files, write_predictions_csv

    paths = image_inputs(images)
    check_new_output(out)
    kind, predictions = predict_files(run, paths, top=top, trust_pickle=trust_model, progress=not quiet)
    if out is not None:
        write_predictions_csv(out, predictions, top)
    else:
        click.echo(f"top {top} classes by {kind}" + (" (margins, not probabilities)" if kind != "probability" else ""))
        for p in predictions:  # file names and the run's class names are data
            click.echo(f"{printable(p.path)}: " + (f"cannot be used: {printable(p.error)}" if p.error else
                                                   ", ".join(f"{printable(name)} {s:.3f}" for name, s in p.top)))
    report_unreadable("predict", predictions, "classified",
                      f" into {printable(out)} ({kind} scores)" if out is not None else "", out)


@cli.command()
@store_option()
@click.option("--features", help="feature set name, or A+B to join sets' codes row by row [the store's only complete one]")
@click.option("-k", "--k", "k", default=8, type=POSITIVE, help="stored images shown per image")
@click.option("--split", type=choice("train", "test", "all"), default="train", help="the stored images searched")
@click.option("--out", type=PathType(dir_okay=False), help="write FILE.csv: path, rank, similarity, split, label, "
              "source, row, and why a file could not be read")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.argument("images", nargs=-1, required=True)
def neighbors(store, features, k, split, out, quiet, images):
    """The stored images most like the given ones (files, folders, globs, .txt lists), by cosine similarity of codes
    made as the feature set's were. A file that cannot be read is listed with its reason and the exit status is 1;
    the others are still searched."""
    from cnncodes.classifiers.similar_images import similar_images, write_neighbours_csv

    paths = image_inputs(images)
    check_new_output(out)
    name, lookups = similar_images(store, paths, features=features, k=k, split=split.lower(), progress=not quiet)
    if out is not None:
        write_neighbours_csv(out, lookups)
    else:
        click.echo(printable(f"most similar {split} images by cosine similarity of {name} codes: "
                             f"rank, similarity, split, store row, label, source"))
        for lookup in lookups:  # file names, class names and sources are data
            if lookup.error:
                click.echo(f"{printable(lookup.path)}: cannot be used: {printable(lookup.error)}")
                continue
            click.echo(f"{printable(lookup.path)}:")
            for n in lookup.neighbours:
                click.echo(f"  {n.rank}\t{n.similarity:.3f}\t{n.split}\t{n.row}\t{printable(n.label)}\t"
                           f"{printable(n.source)}")  # the row finds the image where no source was recorded
    report_unreadable("neighbors", lookups, "searched", f", written to {printable(out)}" if out is not None else "",
                      out)


class InputSize(click.ParamType):
    """N or HxW: the one size of the images an exported model takes."""
    name = "N|HxW"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = str(value).lower().split("x")
        try:
            hw = tuple(int(n) for n in parts) * (2 if len(parts) == 1 else 1)
        except ValueError:
            hw = ()
        if len(hw) != 2 or not all(1 <= n <= MAX_IMAGE_SIDE for n in hw):
            self.fail(f"{value!r} is not N or HxW with sides of 1 to {MAX_IMAGE_SIDE} pixels, e.g. 32 or 480x640",
                      param, ctx)
        return hw


@cli.command("export-model")
@click.option("--model", "run", required=True, type=PathType(exists=True, file_okay=False),
              help="a run folder made by fit")
@click.option("--out", required=True, type=PathType(),
              help="PATH.keras, PATH.tflite, or a new folder for a SavedModel (TF Serving)")
@click.option("--quantize", type=choice("fp16", "int8"), help="for .tflite: float16 weights, or int8 calibrated on "
              "the store's training images")
@click.option("--input-size", type=InputSize(), help="the images' size, N or HxW [the store's image size]; others "
              "are scaled and centre-cropped to it in the model, as the ingest does")
@store_option(required=False, help="the store whose images calibrate int8 [the store the run folder lies in]")
@click.option("--trust-model", is_flag=True,
              help="load a run saved by an older cnncodes (model.joblib: a pickle, which can run code): only runs you made yourself")
def export_model(run, out, quantize, input_size, store, trust_model):
    """One model from raw uint8 images to class probabilities (an SVM's decision scores) that needs no cnncodes."""
    from cnncodes.classifiers.export_model import export_model as write_model

    write_model(run, out, quantize=quantize, input_hw=input_size, store=store, trust_pickle=trust_model, log=log)


@cli.command()
@store_option()
@click.option("--all", "every", is_flag=True, help="every run, not only the latest of each configuration")
def runs(store, every):
    """The store's fit and baseline runs as a table: head, features, weights, accuracies."""
    from cnncodes.classifiers.runs import damage_warnings, format_runs, latest_runs
    from cnncodes.features.store import FeatureStore

    path = FeatureStore.open(store).path
    for line in damage_warnings(path):
        log(line)
    found = latest_runs(path, every=every)
    click.echo(format_runs(found) if found else f"{printable(store)} has no runs yet: train one with `cnncodes fit`",
               nl=not found)


@cli.command()
@store_option()
@click.option("--out", type=PathType(), help="folder [STORE/report]")
@click.option("--map", "map_method", default="pca", type=choice("pca", "umap"),
              help="how the codes are laid out in 2-D (umap: pip install 'cnncodes[map]')")
def report(store, out, map_method):
    """One HTML page over every run in the store: tables, curves, confusion matrices, misclassified images, label
    curves, a map of the codes and their nearest neighbours."""
    from cnncodes.classifiers.report import build_report

    if out is not None and out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the report and its images")
    left_out = []
    page = build_report(store, out, map_method, note=left_out.append)
    for line in left_out:
        log(f"report: {line}")
    click.echo(f"report written to {printable(page)}" + (f", with {len(left_out)} part{'s' * (len(left_out) > 1)} "
                                                         f"left out (above)" if left_out else ""))


def progressive_option(value: str | None) -> tuple[int | None, int]:
    """--progressive SIZE:EPOCHS as (SIZE, EPOCHS); (None, 0) when not given."""
    if value is None:
        return None, 0
    size, _, epochs = value.partition(":")
    if not (re.fullmatch("[0-9]+", size) and re.fullmatch("[0-9]+", epochs)):
        raise click.BadParameter(f"give SIZE:EPOCHS, e.g. 128:3, not {value!r}", param_hint="--progressive")
    return int(size), int(epochs)


def sides_option(value: str | None) -> tuple[int, ...]:
    """--test-sides 144,160 as (144, 160); () when not given."""
    if value is None:
        return ()
    sides = value.split(",")
    if not all(re.fullmatch(r"\s*[0-9]+\s*", side) for side in sides):  # not isdigit(): "²" is a digit to it
        raise click.BadParameter(f"give input sides separated by commas, e.g. 144,160, not {value!r}",
                                 param_hint="--test-sides")
    return tuple(int(side) for side in sides)


@cli.command()
@click.argument("kind", type=choice("cnn", "finetune", "wrn"))
@store_option()
@click.option("--label", help="label set [the store's first]")
@click.option("--epochs", type=POSITIVE, help="[cnn 100, finetune 20, wrn 200]")
@click.option("--fold", type=click.IntRange(min=0), help="test on this fold of the -k split of the training rows instead "
              "of the test split")
@click.option("-k", "k", default=6, type=click.IntRange(min=2), help="with --fold")
@click.option("--batch-size", default=128, type=POSITIVE, help="images per training step")
@click.option("--precision", type=PRECISION, default="fp32", help="arithmetic of training (mixed precision for bf16, fp16)")
@click.option("--seed", default=0, type=SEED, help="weights, augmentation and batch order")
@click.option("--patience", type=POSITIVE, help="early stopping on a 10% validation slice [none: every epoch]")
@click.option("--limit", type=POSITIVE, help="train on a stratified subset of N training rows [every row]")
@click.option("--learning-rate", type=click.FloatRange(0, min_open=True), help="[cnn 1e-4, finetune 1e-4 (phase 2), wrn sgd 0.1 / adam 1e-3]")
@click.option("--backbone", default="resnet50", type=backbone_choice(), help="finetune")
@click.option("--weights", default="imagenet", help="finetune: imagenet, none or PATH")
@click.option("--size", type=SIZE, help="finetune: input side, resized on the device [the backbone's native size]")
@click.option("--head-epochs", default=2, type=click.IntRange(min=0),
              help="finetune: phase-1 epochs, backbone frozen")
@click.option("--unfreeze-from", help="finetune: first layer trained in phase 2, or all [the last stage; "
                   "with --from-features, the layer after its cut]")
@click.option("--label-smoothing", default=0.0, type=click.FloatRange(0, 1, max_open=True),
              help="every kind: 1 - s on the class, s spread over all classes")
@click.option("--weight-decay", default=0.0, type=click.FloatRange(0, 1, max_open=True),
              help="finetune phase 2, wrn: decoupled, never on BatchNorm or biases")
@click.option("--warmup-epochs", default=0, type=click.IntRange(min=0), help="finetune phase 2: the rate rises from 0")
@click.option("--cosine", is_flag=True, help="finetune phase 2: then falls along a half cosine to 0")
@click.option("--crop-area", default=1.0, type=click.FloatRange(0, 1, min_open=True),
              help="finetune: random-resized crops of this much of the area and more, and flips [1: flips only]")
@click.option("--train-batchnorm", is_flag=True,
              help="finetune phase 2: train BatchNorm on batch statistics [frozen, inference mode]")
@click.option("--from-features", metavar="SET",
              help="finetune: train the layers above SET's cut on its stored maps (`features --layer X --spatial`), "
                   "drawing per image and epoch among its views' maps when it has them (`--views K`)")
@click.option("--progressive", callback=lambda ctx, param, value: progressive_option(value), metavar="SIZE:EPOCHS",
              help="finetune: the first EPOCHS epochs at the smaller side SIZE, the rest at --size [off]")
@click.option("--test-sides", callback=lambda ctx, param, value: sides_option(value), metavar="SIDE,...",
              help="finetune from pixels, with --patience: also score at these input sides; the validation slice "
                   "chooses the side the test split is scored at [--size only]")
@click.option("--test-flip", is_flag=True, help="from pixels, with --patience: also score each image averaged with its "
              "mirror, kept if the validation slice scores it better [off]")
@click.option("--depth", default=28, type=click.IntRange(min=10), help="wrn: 6n+4 (16, 22, 28, 40)")
@click.option("--width", default=10, type=POSITIVE, help="wrn")
@click.option("--dropout", default=0.0, type=click.FloatRange(0, 1, max_open=True), help="wrn")
@click.option("--optimizer", type=choice("sgd", "adam", "adamw"), default="sgd",
              help="wrn; finetune phase 2 (sgd: Nesterov momentum 0.9)")
@click.option("--quiet", is_flag=True, help="no per-epoch lines")
def baseline(kind, store, quiet, **options):
    """Train a pixel baseline (basic CNN, fine-tuned backbone, Wide ResNet) on the store's images."""
    from cnncodes.classifiers.params import check_values
    from cnncodes.classifiers.baseline_config import BaselineConfig
    from cnncodes.classifiers.baseline_runs import finished_run
    from cnncodes.classifiers.runs import run_summary
    from cnncodes.classifiers.train import check_config, train_baseline

    options["size"] = options["size"] or native_size(options["backbone"])
    options["progressive_size"], options["progressive_epochs"] = options.pop("progressive")
    check_values(kind, options)  # the rules kfold's --param uses for baselines (a WRN's depth is 6n+4, ...)
    if kind == "finetune":
        from cnncodes.pipeline.backbones import checked_weights

        options["weights"] = checked_weights(options["weights"], options["backbone"])
    config = BaselineConfig(kind=kind, **options)
    check_config(config)  # before the store is read: what the options ask for can be at all
    done = finished_run(store, config)  # asked again for what is already trained: its record, nothing saved
    run, r = train_baseline(store, config, progress=not quiet, log=log)
    click.echo(printable(run_summary(r)))
    click.echo(f"already done: {printable(run)}" if done else f"saved to {printable(run)}")


if __name__ == "__main__":
    cli()
