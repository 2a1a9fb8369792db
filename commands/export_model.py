"""`cnncodes export-model`: a fitted run as one model from uint8 images to class scores."""

import click

from cnncodes.features.errors import MAX_IMAGE_SIDE
from cnncodes.features.outputs import check_new_output
from cnncodes.options import PathType, choice, log, store_option


class InputSize(click.ParamType):
    """N or HxW: the one size of the images an exported model takes."""
    name = "N|HxW"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = str(value).lower().split("x")
        try:
            hw = tuple(int(n) for n in parts) * (2 if len(parts) == 1 else 1)
        except ValueError:
            hw = ()
        if len(hw) != 2 or not all(1 <= n <= MAX_IMAGE_SIDE for n in hw):
            self.fail(f"{value!r} is not N or HxW with sides of 1 to {MAX_IMAGE_SIDE} pixels, e.g. 32 or 480x640",
                      param, ctx)
        return hw


@click.command("export-model")
@click.option("--model", "run", required=True, type=PathType(exists=True, file_okay=False),
              help="a run folder made by fit")
@click.option("--out", required=True, type=PathType(),
              help="PATH.keras, PATH.tflite, or a new folder for a SavedModel (TF Serving)")
@click.option("--quantize", type=choice("fp16", "int8"), help="for .tflite: float16 weights, or int8 calibrated on "
              "the store's training images")
@click.option("--input-size", type=InputSize(), help="the images' size, N or HxW [the store's image size]; others "
              "are scaled and centre-cropped to it in the model, as the ingest does")
@store_option(required=False, help="the store whose images calibrate int8 [the store the run folder lies in]")
@click.option("--trust-model", is_flag=True,
              help="load a run saved by an older cnncodes (model.joblib: a pickle, which can run code): "
                   "only runs you made yourself")
def export_model(run, out, quantize, input_size, store, trust_model):
    """One model from raw uint8 images to class probabilities (an SVM's decision scores) that needs no cnncodes."""
    check_new_output(out)  # at once: the exporter's module loads the backend
    if out.suffix.lower() == ".tflite":
        check_new_output(out.with_name(out.name + ".classes.json"), option="--out's class names")
    from cnncodes.classifiers.serving.export_model import export_model as write_model

    write_model(run, out, quantize=quantize, input_hw=input_size, store=store, trust_pickle=trust_model, log=log)
