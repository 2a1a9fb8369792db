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
@click.option("--ratio", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="codes: two images are duplicates when each is closer to the other than this times the distance "
                   "to its next neighbour [0.65: chosen on planted copies, bench/HISTORY.md]")
@click.option("--hash-distance", type=click.IntRange(0, 31),
              help="hashes: two images are duplicates when their pHash and dHash differ in at most this many bits "
                   "of 64 [8]")
@click.option("--label-features", help="features of the label check [the sweep's choice, else every set joined]")
@click.option("--label-probability", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="flag a label when its calibrated out-of-fold probability is below this [0.01: chosen on "
                   "planted wrong labels]")
@click.option("-k", "k", default=5, type=click.IntRange(min=2),
              help="folds over the training split for the out-of-fold label check (the store's, kept)")
@quiet_option()
def audit(store, features, label, out, ratio, hash_distance, label_features, label_probability, k, quiet):
    """Duplicates (and test images with a duplicate in training) by perceptual hashes and codes, likely wrong
    labels and outliers; saved in the store (audits/<set>/) for the report. Table columns: kind, source, other,
    given, suggested, score, evidence, most certain first."""
    from cnncodes.classifiers.audit.audit import format_audit, run_audit, write_table
    from cnncodes.classifiers.audit.duplicates import HASH_DISTANCE, RATIO
    from cnncodes.classifiers.audit.label_issues import LABEL_PROBABILITY

    check_new_output(out)
    record = run_audit(store, features=features, label=label, k=k, progress=not quiet,
                       ratio=RATIO if ratio is None else ratio,
                       hash_distance=HASH_DISTANCE if hash_distance is None else hash_distance,
                       label_set=label_features,
                       below=LABEL_PROBABILITY if label_probability is None else label_probability)
    click.echo(format_audit(record))
    if out is not None:
        write_table(out, record["rows"])
    click.echo(f"saved to {printable(record['path'])}" + (f" and {printable(out)}" if out is not None else ""))
