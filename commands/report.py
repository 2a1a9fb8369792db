"""`cnncodes report`: one HTML page over every run, curve and audit in the store."""

import click

from cnncodes.features.errors import UserError
from cnncodes.options import PathType, choice, log, store_option
from cnncodes.pipeline.console import printable


@click.command()
@store_option()
@click.option("--out", type=PathType(), help="folder [STORE/report]")
@click.option("--map", "map_method", default="pca", type=choice("pca", "umap"),
              help="how the codes are laid out in 2-D (umap: pip install 'cnncodes[map]')")
def report(store, out, map_method):
    """One HTML page over every run in the store: tables, curves, confusion matrices, misclassified images, label
    curves, a map of the codes and their nearest neighbors."""
    from cnncodes.classifiers.report.report import build_report

    if out is not None and out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the report and its images")
    left_out = []
    page = build_report(store, out, map_method, note=left_out.append)
    for line in left_out:
        log(f"report: {line}")
    click.echo(f"report written to {printable(page)}" + (f", with {len(left_out)} part{'s' * (len(left_out) > 1)} "
                                                         f"left out (above)" if left_out else ""))
