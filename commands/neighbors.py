"""`cnncodes neighbors`: the stored images most like the given ones."""

import click

from cnncodes.features.outputs import check_new_output
from cnncodes.options import (
    POSITIVE,
    PathType,
    choice,
    features_option,
    image_inputs,
    quiet_option,
    report_unreadable,
    store_option,
)
from cnncodes.pipeline.console import printable


@click.command()
@store_option()
@features_option()
@click.option("-k", "--k", "k", default=8, type=POSITIVE, help="stored images shown per image")
@click.option("--split", type=choice("train", "test", "all"), default="train", help="the stored images searched")
@click.option("--out", type=PathType(dir_okay=False), help="write FILE.csv: path, rank, similarity, split, label, "
              "source, row, and why a file could not be read")
@quiet_option("no progress bar")
@click.argument("images", nargs=-1, required=True)
def neighbors(store, features, k, split, out, quiet, images):
    """The stored images most like the given ones (files, folders, globs, .txt lists), by cosine similarity of codes
    made as the feature set's were. A file that cannot be read is listed with its reason and the exit status is 1;
    the others are still searched."""
    from cnncodes.classifiers.serving.similar_images import similar_images, write_neighbors_csv

    paths = image_inputs(images)
    check_new_output(out)
    name, lookups = similar_images(store, paths, features=features, k=k, split=split.lower(), progress=not quiet)
    if out is not None:
        write_neighbors_csv(out, lookups)
    else:
        click.echo(printable(f"most similar {split} images by cosine similarity of {name} codes: "
                             f"rank, similarity, split, store row, label, source"))
        for lookup in lookups:  # file names, class names and sources are data
            if lookup.error:
                click.echo(f"{printable(lookup.path)}: cannot be used: {printable(lookup.error)}")
                continue
            click.echo(f"{printable(lookup.path)}:")
            for n in lookup.neighbors:
                click.echo(f"  {n.rank}\t{n.similarity:.3f}\t{n.split}\t{n.row}\t{printable(n.label)}\t"
                           f"{printable(n.source)}")  # the row finds the image where no source was recorded
    report_unreadable("neighbors", lookups, "searched", f", written to {printable(out)}" if out is not None else "",
                      out)
