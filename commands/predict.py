"""`cnncodes predict`: the top classes of image files, folders, globs and lists of paths."""

import click

from cnncodes.features.outputs import check_new_output
from cnncodes.options import POSITIVE, PathType, image_inputs, quiet_option, report_unreadable
from cnncodes.pipeline.console import printable


@click.command()
@click.option("--model", "run", required=True, type=PathType(exists=True, file_okay=False),
              help="a run folder made by fit")
@click.option("--top", default=5, type=POSITIVE, help="classes shown per image")
@click.option("--out", type=PathType(dir_okay=False), help="write FILE.csv: path, class, score, the next classes and "
              "scores up to --top, and why a file could not be read")
@quiet_option("no progress bar")
@click.option("--trust-model", is_flag=True,
              help="load a run saved by an older cnncodes (model.joblib: a pickle, which can run code): "
                   "only runs you made yourself")
@click.argument("images", nargs=-1, required=True)
def predict(run, top, out, quiet, trust_model, images):
    """Top classes for images: files, folders, glob patterns ("photos/**/*.jpg") or .txt lists of paths.
    Probabilities, or an SVM's decision scores (labelled as such). A file that cannot be read is listed with
    its reason and the exit status is 1; the others are still classified."""
    from cnncodes.classifiers.serving.predict import predict_files, write_predictions_csv

    paths = image_inputs(images)
    check_new_output(out)
    kind, predictions = predict_files(run, paths, top=top, trust_pickle=trust_model, progress=not quiet)
    if out is not None:
        write_predictions_csv(out, predictions, top)
    else:
        click.echo(f"top {top} classes by {kind}" + (" (margins, not probabilities)" if kind != "probability" else ""))
        for p in predictions:  # file names and the run's class names are data
            click.echo(f"{printable(p.path)}: " + (f"cannot be used: {printable(p.error)}" if p.error else
                                                   ", ".join(f"{printable(name)} {s:.3f}" for name, s in p.top)))
    report_unreadable("predict", predictions, "classified",
                      f" into {printable(out)} ({kind} scores)" if out is not None else "", out)
