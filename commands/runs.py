"""`cnncodes runs`: the store's fit and baseline runs as a table."""

import click

from cnncodes.options import log, store_option
from cnncodes.pipeline.console import printable


@click.command()
@store_option()
@click.option("--all", "every", is_flag=True, help="every run, not only the latest of each configuration")
def runs(store, every):
    """The store's fit and baseline runs as a table: head, features, weights, accuracies."""
    from cnncodes.classifiers.runs.records import STALE_EXPLAINED, damage_warnings, format_runs, latest_runs
    from cnncodes.features.store import FeatureStore

    path = FeatureStore.open(store).path
    for line in damage_warnings(path):
        log(line)
    found = latest_runs(path, every=every)
    click.echo(format_runs(found) if found else f"{printable(store)} has no runs yet: train one with `cnncodes fit`",
               nl=not found)
    if any(r.get("stale") for r in found):
        click.echo(STALE_EXPLAINED)
