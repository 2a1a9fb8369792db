"""`cnncodes audit`: duplicates, likely wrong labels and outliers, from a feature set's codes."""

import click

from cnncodes.features.outputs import check_new_output
from cnncodes.options import PathType, features_option, label_option, quiet_option, store_option
from cnncodes.pipeline.console import printable


@click.command()
@store_option()
@features_option()
@label_option()
@click.option("--out", type=PathType(dir_okay=False), help="also write the table to FILE.csv [only into the store]")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True),
              help="cosine similarity of codes at or above which two images are duplicates [0.92: chosen on "
                   "planted duplicates, bench/HISTORY.md]")
@click.option("-k", "k", default=5, type=click.IntRange(min=2),
              help="folds over the training split for the out-of-fold label check (the store's, kept)")
@quiet_option()
def audit(store, features, label, out, threshold, k, quiet):
    """Duplicates (and test images with a duplicate in training), likely wrong labels and outliers, from the
    codes; saved in the store (audits/<set>/) for the report. Table columns: kind, source, other, given,
    suggested, score, most certain first."""
    from cnncodes.classifiers.audit.audit import format_audit, run_audit, write_table
    from cnncodes.classifiers.audit.duplicates import DUPLICATE_THRESHOLD

    check_new_output(out)
    record = run_audit(store, features=features, label=label, k=k, progress=not quiet,
                       threshold=DUPLICATE_THRESHOLD if threshold is None else threshold)
    click.echo(format_audit(record))
    if out is not None:
        write_table(out, record["rows"])
    click.echo(f"saved to {printable(record['path'])}" + (f" and {printable(out)}" if out is not None else ""))
