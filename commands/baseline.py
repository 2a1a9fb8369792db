"""`cnncodes baseline`: train a pixel baseline (basic CNN, fine-tune, Wide ResNet, airbench) on the store's
images."""
import re

import click

from cnncodes.options import (
    POSITIVE,
    PRECISION,
    SEED,
    SIZE,
    backbone_choice,
    choice,
    label_option,
    log,
    native_size,
    quiet_option,
    store_option,
)
from cnncodes.pipeline.console import printable


def progressive_option(value: str | None) -> tuple[int | None, int]:
    """--progressive SIZE:EPOCHS as (SIZE, EPOCHS); (None, 0) when not given."""
    if value is None:
        return None, 0
    size, _, epochs = value.partition(":")
    if not (re.fullmatch("[0-9]+", size) and re.fullmatch("[0-9]+", epochs)):
        raise click.BadParameter(f"give SIZE:EPOCHS, e.g. 128:3, not {value!r}", param_hint="--progressive")
    return int(size), int(epochs)


def sides_option(value: str | None) -> tuple[int, ...]:
    """--test-sides 144,160 as (144, 160); () when not given."""
    if value is None:
        return ()
    sides = value.split(",")
    if not all(re.fullmatch(r"\s*[0-9]+\s*", side) for side in sides):  # not isdigit(): "²" is a digit to it
        raise click.BadParameter(f"give input sides separated by commas, e.g. 144,160, not {value!r}",
                                 param_hint="--test-sides")
    return tuple(int(side) for side in sides)


@click.command()
@click.argument("kind", type=choice("cnn", "finetune", "wrn", "airbench"))
@store_option()
@label_option()
@click.option("--epochs", type=POSITIVE, help="[cnn 100, finetune 20, wrn 200, airbench 10]")
@click.option("--fold", type=click.IntRange(min=0),
              help="test on this fold of the -k split of the training rows instead "
              "of the test split")
@click.option("-k", "k", default=6, type=click.IntRange(min=2), help="with --fold")
@click.option("--batch-size", type=POSITIVE, help="images per training step [128; airbench: 1024, smaller for "
              "fewer than 8,192 training images]")
@click.option("--precision", type=PRECISION, help="arithmetic of training (mixed precision for bf16, fp16) [fp32; "
              "airbench: bf16 where the CPU or device has it natively]")
@click.option("--seed", default=0, type=SEED, help="weights, augmentation and batch order")
@click.option("--patience", type=POSITIVE, help="early stopping on a 10% validation slice [none: every epoch]")
@click.option("--limit", type=POSITIVE, help="train on a stratified subset of N training rows [every row]")
@click.option("--learning-rate", type=click.FloatRange(0, min_open=True),
              help="[cnn 1e-4, finetune 1e-4 (phase 2), wrn sgd 0.1 / adam 1e-3, airbench 11.5 per 1024 images]")
@click.option("--backbone", default="resnet50", type=backbone_choice(), help="finetune")
@click.option("--weights", default="imagenet", help="finetune: imagenet, none or PATH")
@click.option("--size", type=SIZE, help="finetune: input side, resized on the device [the backbone's native size]")
@click.option("--head-epochs", default=2, type=click.IntRange(min=0),
              help="finetune: phase-1 epochs, backbone frozen")
@click.option("--unfreeze-from", help="finetune: first layer trained in phase 2, or all [the last stage; "
                   "with --from-features, the layer after its cut]")
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True),
              help="every kind: 1 - s on the class, s spread over all classes [0; airbench 0.2]")
@click.option("--weight-decay", type=click.FloatRange(0, 1, max_open=True),
              help="finetune phase 2, wrn: decoupled, never on BatchNorm or biases [0]; airbench: per 1024 images "
                   "[0.0153]")
@click.option("--warmup-epochs", default=0, type=click.IntRange(min=0), help="finetune phase 2: the rate rises from 0")
@click.option("--cosine", is_flag=True, help="finetune phase 2: then falls along a half cosine to 0")
@click.option("--crop-area", default=1.0, type=click.FloatRange(0, 1, min_open=True),
              help="finetune: random-resized crops of this much of the area and more, and flips [1: flips only]")
@click.option("--train-batchnorm", is_flag=True,
              help="finetune phase 2: train BatchNorm on batch statistics [frozen, inference mode]")
@click.option("--from-features", metavar="SET",
              help="finetune: train the layers above SET's cut on its stored maps (`features --layer X --spatial`), "
                   "drawing per image and epoch among its views' maps when it has them (`--views K`)")
@click.option("--progressive", callback=lambda ctx, param, value: progressive_option(value), metavar="SIZE:EPOCHS",
              help="finetune: the first EPOCHS epochs at the smaller side SIZE, the rest at --size [off]")
@click.option("--test-sides", callback=lambda ctx, param, value: sides_option(value), metavar="SIDE,...",
              help="finetune from pixels, with --patience: also score at these input sides; the validation slice "
                   "chooses the side the test split is scored at [--size only]")
@click.option("--test-flip", is_flag=True, help="from pixels, with --patience: also score each image averaged with its "
              "mirror, kept if the validation slice scores it better [off]")
@click.option("--depth", default=28, type=click.IntRange(min=10), help="wrn: 6n+4 (16, 22, 28, 40)")
@click.option("--width", default=10, type=POSITIVE, help="wrn")
@click.option("--dropout", default=0.0, type=click.FloatRange(0, 1, max_open=True), help="wrn")
@click.option("--optimizer", type=choice("sgd", "adam", "adamw"), default="sgd",
              help="wrn; finetune phase 2 (sgd: Nesterov momentum 0.9)")
@quiet_option("no per-epoch lines")
def baseline(kind, store, quiet, **options):
    """Train a pixel baseline (basic CNN, fine-tuned backbone, Wide ResNet, airbench) on the store's images.

    airbench trains a small network from scratch at the images' own side with airbench94's recipe (the fastest
    published one for CIFAR-10; docs/cli.md says what it fixes)."""
    from cnncodes.classifiers.baselines.baseline_runs import finished_run
    from cnncodes.classifiers.baselines.settings_checks import check_config
    from cnncodes.classifiers.baselines.train import train_baseline
    from cnncodes.classifiers.heads.params import check_values
    from cnncodes.classifiers.runs.records import run_summary
    from cnncodes.classifiers.training.baseline_config import BaselineConfig

    options["size"] = options["size"] or native_size(options["backbone"])
    options["progressive_size"], options["progressive_epochs"] = options.pop("progressive")
    check_values(kind, options)  # the rules kfold's --param uses for baselines (a WRN's depth is 6n+4, ...)
    if kind == "finetune":
        from cnncodes.pipeline.backbones import checked_weights

        options["weights"] = checked_weights(options["weights"], options["backbone"])
    config = BaselineConfig(kind=kind, **options)
    check_config(config)  # before the store is read: what the options ask for can be at all
    done = finished_run(store, config)  # asked again for what is already trained: its record, nothing saved
    run, r = train_baseline(store, config, progress=not quiet, log=log)
    click.echo(printable(run_summary(r)))
    click.echo(f"already done: {printable(run)}" if done else f"saved to {printable(run)}")
