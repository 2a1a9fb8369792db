"""`cnncodes sweep`: rank feature sets by a head's k-fold mean on the training split; fit the best."""

import click

from cnncodes.options import (
    dask_options,
    epochs_option,
    head_choice,
    label_option,
    no_views_option,
    param_option,
    parse_params,
    quiet_option,
    store_option,
)
from cnncodes.pipeline.console import printable


@click.command()
@store_option()
@click.option("--head", required=True, type=head_choice(False), help="the head every candidate is scored with")
@click.option("-k", "k", default=5, type=click.IntRange(min=2), help="folds over the training split")
@click.option("--features", "candidates", multiple=True,
              help="a candidate: a set, or A+B; repeatable [every complete set, and each extraction's cuts joined]")
@label_option()
@dask_options
@epochs_option()
@param_option()
@no_views_option
@quiet_option()
def sweep(store, head, k, candidates, label, scheduler, workers, epochs, params, plain, quiet):
    """Rank feature sets by the head's k-fold mean on the training split; fit the best; test it once."""
    from cnncodes.classifiers.evaluation.sweep import format_sweep
    from cnncodes.classifiers.evaluation.sweep import sweep as run_sweep
    from cnncodes.classifiers.heads.params import resolve_params

    if scheduler is not None:
        from cnncodes.pipeline.extraction.cluster import check_address

        check_address(scheduler)
    result = run_sweep(store, head, features=list(candidates), k=k, label=label,
                       params=resolve_params([head], parse_params(params), epochs), scheduler=scheduler,
                       workers=workers, progress=not quiet, views=not plain)
    click.echo(format_sweep(result) + f"saved to {printable(result['path'])}")
