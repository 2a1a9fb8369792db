"""`cnncodes curve`: test accuracy against labelled images per class."""

import click

from cnncodes.options import (
    features_option,
    head_choice,
    label_option,
    param_option,
    parse_params,
    quiet_option,
    store_option,
)
from cnncodes.pipeline.console import printable


@click.command()
@store_option()
@click.option("--head", required=True, type=head_choice(True),
              help="the head fitted at every point, or a pixel baseline (airbench) trained on the same draws")
@features_option("feature set, or A+B [the store's default; none for a baseline]")
@label_option()
@click.option("--per-class", default="1,2,5,10,25,50,100,all", help="labelled training images per class, or all")
@click.option("--seeds", default=3, type=click.IntRange(1, 100), help="draws per point, seeded 0, 1, ... (a seeded "
              "head takes the draw's seed as its random_state)")
@param_option()
@quiet_option("no progress bar")
def curve(store, head, features, label, per_class, seeds, params, quiet):
    """What more labels would buy: test accuracy (mean ± std over seeds) against labelled images per class, each
    point the head fitted on a seeded draw of that many training images of each class. A pixel baseline trains on
    the same draws (airbench: batches and epochs by the draw's size, docs/cli.md). Resumes where it stopped."""
    from cnncodes.classifiers.evaluation.label_curve import format_curve, label_curve, parse_per_class

    record = label_curve(store, head, features=features, label=label, per_class=parse_per_class(per_class),
                         seeds=tuple(range(seeds)), params=parse_params(params), progress=not quiet)
    click.echo(format_curve(record) + f"saved to {printable(record['path'])}")
