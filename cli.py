"""cnncodes: the command line. A thin click layer over pipeline/, features/ and classifiers/."""
import json
import os
import sys
from pathlib import Path

import click

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow start-up chatter is not for users

from features.errors import UserError


class Cli(click.Group):
    """Bad input ends in one line on stderr and exit status 1, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)


@click.group(cls=Cli)
def cli():
    """Transfer learning with cached CNN codes: extract once, fit heads from the store."""


def default_store(dataset: str) -> Path:
    from pipeline.sources import dataset_name

    return Path("store") / dataset_name(dataset)


@cli.command()
@click.option("--dataset", required=True, help="cifar100, cifar10, digits or folder:PATH (directory, .tar or .zip)")
@click.option("--store", type=click.Path(path_type=Path), help="store folder [store/<dataset>]")
@click.option("--backbone", default="resnet50", show_default=True, help="resnet50, vgg16 or mobilenet_v2")
@click.option("--weights", default="imagenet", show_default=True, help="imagenet, none (seeded random) or a Keras weights file")
@click.option("--size", default=224, show_default=True, help="side the images are resized to on the device")
@click.option("--layer", help="cut the backbone at this layer [its last]")
@click.option("--spatial", is_flag=True, help="also store the spatial maps (float16)")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--chunk-size", default=512, show_default=True, help="images per committed chunk (resume granularity)")
@click.option("--limit", type=int, help="a stratified subset of N images per split")
@click.option("--name", help="feature set name [from the configuration]")
@click.option("--seed", default=0, show_default=True, help="seeds subsets, holdout, folds and --weights none")
@click.option("--holdout", default=0.2, show_default=True, help="test fraction for data without a test split")
@click.option("--image-size", type=int, help="folder data: square ingest size [first image's shorter side]")
@click.option("--folds", default="5,6,10", show_default=True, help="k values whose fold assignments are stored")
@click.option("--skip-bad", is_flag=True, help="skip unreadable images (recorded in the store) instead of stopping")
@click.option("--data-dir", type=click.Path(path_type=Path), help="where CIFAR archives are [$CNNCODES_DATA, ~/.keras/datasets]")
@click.option("--verify/--no-verify", default=True, help="check CIFAR archives against the official md5")
@click.option("--quiet", is_flag=True, help="no progress bars")
def features(dataset, store, backbone, weights, size, layer, spatial, precision, batch_size, chunk_size, limit,
             name, seed, holdout, image_size, folds, skip_bad, data_dir, verify, quiet):
    """Ingest a data set into a store (once) and cache its CNN codes (once per configuration)."""
    from pipeline.extract import FeatureConfig, extract_features
    from pipeline.ingest import IngestConfig, ingest

    store = store or default_store(dataset)
    try:
        ks = tuple(sorted({int(k) for k in folds.split(",")}))
    except ValueError:
        raise UserError(f"--folds {folds!r} is not a comma-separated list of integers, e.g. 5,6,10") from None
    ingest(store, IngestConfig(dataset, limit, holdout, seed, image_size, skip_bad, ks),
           data_dir=data_dir, verify=verify, progress=not quiet, log=lambda m: click.echo(m, err=True))
    config = FeatureConfig(backbone, weights, size, layer, spatial, precision, seed)
    result = extract_features(store, config, name=name, batch_size=batch_size, chunk_size=chunk_size,
                              progress=not quiet, log=lambda m: click.echo(m, err=True))
    click.echo(f"{result.name}\t{result.status}\t{result.rows} rows\t{result.path}")


@cli.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def info(store, as_json):
    """What a store holds: data, splits, label sets, folds, feature sets."""
    from features.store import FeatureStore

    s = FeatureStore.open(store).summary()
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    click.echo(f"store     {s['store']}\ndataset   {s['dataset']}  ({s['source']})")
    click.echo(f"images    {s['images']['count']} x {tuple(s['images']['shape'])} uint8, "
               + ", ".join(f"{k} {v}" for k, v in s["splits"].items()) + (f", {s['skipped']} skipped" if s["skipped"] else ""))
    click.echo("labels    " + ", ".join(f"{k} ({v} classes)" for k, v in s["label_sets"].items()))
    click.echo("folds     " + ", ".join(s["folds"]))
    click.echo(f"features  {len(s['feature_sets'])}")
    for f in s["feature_sets"]:
        state = "complete" if f["complete"] else f"INCOMPLETE {f['rows']}"
        click.echo(f"  {f['name']}: {tuple(f['shape'])} {f['dtype']}"
                   + (f" + spatial {tuple(f['spatial_shape'])}" if f["spatial_shape"] else "")
                   + f", {state}, {f['seconds']:.1f}s, fingerprint {f['fingerprint'][:12]}")


@cli.command()
@click.argument("backbone")
@click.option("--size", default=224, show_default=True)
def layers(backbone, size):
    """List a backbone's layer names and output shapes (for --layer)."""
    from pipeline.backbones import build_backbone

    for layer in build_backbone(backbone, "none", size).layers:
        click.echo(f"{layer.name}\t{tuple(layer.output.shape[1:])}")


if __name__ == "__main__":
    cli()
