"""`cnncodes export`: a feature set's codes with labels, split, sources and folds as one .npz."""

import click

from cnncodes.features.outputs import check_new_output
from cnncodes.options import PathType, features_option, store_option
from cnncodes.pipeline.console import printable


@click.command()
@store_option()
@features_option()
@click.option("--spatial", is_flag=True, help="export the spatial maps instead of the pooled codes")
@click.option("--out", required=True, type=PathType(), help="the .npz file to write")
def export(store, features, spatial, out):
    """Codes of both splits with every label set, split, sources and folds, as one .npz (no pickles)."""
    from cnncodes.features.export import export_feature_set

    check_new_output(out)
    path = export_feature_set(store, out, features, kind="spatial" if spatial else "pooled")
    click.echo(f"exported to {printable(path)}")
