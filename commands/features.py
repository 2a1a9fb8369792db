"""`cnncodes features`: ingest a data set into a store (once) and cache its CNN codes (once per configuration)."""

import click

from cnncodes.features.errors import MAX_BATCH, MAX_IMAGE_SIDE, MAX_VIEWS, UserError
from cnncodes.options import (
    CHUNK,
    POSITIVE,
    PRECISION,
    SEED,
    SIZE,
    WORKERS,
    Interrupted,
    PathType,
    backbone_choice,
    checked_name,
    default_store,
    log,
    native_size,
    quiet_option,
    store_option,
)
from cnncodes.pipeline.console import printable


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


@click.command()
@click.option("--dataset", required=True, help="cifar100, cifar10, digits or folder:PATH (directory, .tar or .zip)")
@store_option(required=False, help="store folder [store/<dataset>]")
@click.option("--backbone", default="resnet50", type=backbone_choice(), help="the frozen ImageNet CNN")
@click.option("--weights", default="imagenet",
              help="imagenet, none (seeded random) or a weights file "
                   "(Keras; a PyTorch state dict for efficientnet_lite*)")
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
@click.option("--precision", type=PRECISION, default="fp32",
              help="arithmetic of the forward pass (codes are stored as float32)")
@click.option("--batch-size", default="64",
              help=f"images per device step (1 to {MAX_BATCH}), or auto (largest that fits)")
@click.option("--chunk-size", default=512, type=CHUNK,
              help="images per committed chunk (resume granularity)")
@click.option("--limit", type=POSITIVE, help="a stratified subset of N images per split [every image]")
@click.option("--name", callback=checked_name, help="feature set name [from the configuration]")
@click.option("--seed", default=0, type=SEED,
              help="seeds subsets, holdout, folds and --weights none")
@click.option("--holdout", default=0.2, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="test fraction for data without a test split")
@click.option("--image-size", type=click.IntRange(1, MAX_IMAGE_SIDE),
              help="folder data: square ingest size [first image's shorter side]")
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
@quiet_option()
def features(dataset, store, backbone, weights, size, layer, spatial, flip_average, views, view_area, precision,
             batch_size,
             chunk_size, limit, name, seed, holdout, image_size, folds, skip_bad, data_dir, verify, workers, scheduler,
             reingest, quiet):
    """Ingest a data set into a store (once) and cache its CNN codes (once per configuration)."""
    from cnncodes.features import schema
    from cnncodes.pipeline.backbones import check_size, checked_weights
    from cnncodes.pipeline.extraction.cluster import check_address, check_scheduler
    from cnncodes.pipeline.sources import canonical_dataset
    from cnncodes.pipeline.sources.ingest import IngestConfig, ingest

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
        from cnncodes.pipeline.extraction.augment import check_views
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
    from cnncodes.pipeline.extraction.extract import FeatureConfig, check_layers, extract_layers  # loads no backend

    check_layers(cuts)
    if layer is not None or (writes_data and weights not in ("imagenet", "none")):  # builds the network
        from cnncodes.pipeline.backbones import check_backbone

        check_backbone(backbone, weights, [c for c in cuts if c is not None] or None)
    from cnncodes.pipeline.extraction.augment import Augmentation

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
