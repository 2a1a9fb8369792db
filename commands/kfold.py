"""`cnncodes kfold`: k-fold evaluation over the store's folds, every (head, label, fold) a Dask task."""

import click

from cnncodes.options import (
    choice,
    dask_options,
    epochs_option,
    features_option,
    head_choice,
    no_views_option,
    param_option,
    parse_params,
    quiet_option,
    store_option,
)
from cnncodes.pipeline.console import printable


@click.command()
@store_option()
@click.option("--head", "heads", required=True, multiple=True, type=head_choice(True),
              help="repeatable: a head on the codes, or a pixel baseline (cnn, finetune, wrn)")
@click.option("-k", "k", default=6, type=click.IntRange(min=2),
              help="folds: any k up to the smallest class count, computed once and kept in the store")
@click.option("--label", "labels", multiple=True, help="repeatable [the store's first label set]")
@click.option("--on", type=choice("train", "all"), default="train", help="rows the folds cover")
@features_option()
@dask_options
@epochs_option()
@param_option("KEY=VALUE for every requested head that has KEY, or HEAD.KEY=VALUE for one; repeatable")
@no_views_option
@quiet_option("no progress bar")
def kfold(store, heads, k, labels, on, features, scheduler, workers, epochs, params, plain, quiet):
    """k-fold evaluation over the store's folds, every (head, label, fold) a Dask task."""
    from cnncodes.classifiers.evaluation.kfold import format_table, kfold_scores
    from cnncodes.classifiers.heads.params import resolve_params

    heads = list(dict.fromkeys(heads))
    if scheduler is not None:  # a malformed (or empty) address is answered before any fold is computed or kept
        from cnncodes.pipeline.extraction.cluster import check_address

        check_address(scheduler)
    table = kfold_scores(store, heads, list(labels) or None, k=k, on=on, features=features,
                         params=resolve_params(heads, parse_params(params), epochs),
                         scheduler=scheduler, workers=workers, progress=not quiet, views=not plain)
    click.echo(format_table(table) + f"wall time {table['wall_seconds']} s, {table['tasks_run']} tasks run")
    if table.get("path"):
        click.echo(f"saved to {printable(table['path'])}")
