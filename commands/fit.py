"""`cnncodes fit`: train a head on the training split's codes, test it, save the run."""

import click

from cnncodes.options import (
    epochs_option,
    features_option,
    head_choice,
    keras_verbosity,
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
@click.option("--head", required=True, type=head_choice(False), help="the head trained on the codes")
@features_option()
@label_option("label set [the store's first, e.g. fine]")
@click.option("--spatial", is_flag=True, help="train on the spatial maps (gap, dense)")
@epochs_option("for the Keras heads (dense, gap) [their default]")
@param_option()
@no_views_option
@quiet_option("no progress (the C grid's fits, the Keras heads' epochs)")
def fit(store, head, features, label, spatial, epochs, params, plain, quiet):
    """Train a head on the training split's codes, test it, save it and its run record."""
    from cnncodes.classifiers.evaluation.fit import fit_head
    from cnncodes.classifiers.heads.params import resolve_params
    from cnncodes.classifiers.runs.records import run_summary

    params = resolve_params([head], parse_params(params), epochs)[head]
    if not quiet:
        params.setdefault("verbose", keras_verbosity())
    run, r = fit_head(store, head, features=features, label=label, spatial=spatial, params=params, views=not plain)
    click.echo(printable(run_summary(r)))
    click.echo(f"saved to {printable(run)}")
