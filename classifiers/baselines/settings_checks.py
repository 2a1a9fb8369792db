"""What a pixel baseline's settings can be, refused in one line before any work: by the rules kfold's --param
uses, then against the network the settings build (--size, the layer to unfreeze from, the schedule, the test
views). Apart from train.py, which trains what passes."""
from cnncodes.classifiers.heads.params import check_values
from cnncodes.classifiers.heads.registry import head_parameters
from cnncodes.classifiers.training.baseline_config import BaselineConfig
from cnncodes.features.errors import UserError
from cnncodes.pipeline.backbones import check_layer, check_size

from . import networks, view_choice


def check_config(config: BaselineConfig):
    """Every setting by the rules kfold's --param uses, then against the network it builds (--size, the layer
    to unfreeze from): before any work, in this process, for the CLI and Python callers alike."""
    check_values(config.kind, {name: getattr(config, name) for name in head_parameters(config.kind)})
    if config.kind == "finetune":  # the backbone's input is --size, whatever the images' size
        check_size(config.backbone, config.size)
        if config.unfreeze_from and config.unfreeze_from != networks.UNFREEZE_ALL:  # builds the network without
            check_layer(config.backbone, config.unfreeze_from)  # weights: seconds, not a phase of training first
        if config.progressive_size:
            check_progressive(config)
        if config.from_features and (config.progressive_size or config.crop_area < 1):
            option = "--progressive" if config.progressive_size else "--crop-area"
            raise UserError(f"{option} changes the pixels, and --from-features trains on maps already computed: "
                            f"fine-tune from pixels to use {option}")
        check_schedule(config)
    elif config.warmup_epochs or config.cosine:
        option = "--warmup-epochs" if config.warmup_epochs else "--cosine"
        raise UserError(f"{option} shapes finetune's phase-2 rate: {config.kind} has a schedule of its own (drop it)")
    elif config.from_features:
        raise UserError(f"--from-features is finetune's: {config.kind} trains on pixels")
    elif config.progressive_size:
        raise UserError(f"--progressive is finetune's: {config.kind} trains at its own size")
    elif config.kind == "airbench" and config.test_flip:
        raise UserError("airbench's model averages six views of each image, mirrors included, already: drop "
                        "--test-flip")
    if config.progressive_epochs and not config.progressive_size:
        raise UserError(f"progressive_epochs {config.progressive_epochs} without progressive_size: give both, as "
                        f"--progressive SIZE:EPOCHS does")
    if view_choice.asked(config):
        check_test_views(config)


def check_schedule(config: BaselineConfig):
    """finetune's two phases as given can run: phase 2 (the fine-tune itself) has epochs, and its warm-up leaves
    room for the cosine after it. Refused before any work, never trained as something else."""
    total, head = config.total_epochs, config.head_epochs
    if head >= total:
        raise UserError(f"--epochs {total} with --head-epochs {head} leaves no epoch to fine-tune in: phase 1 trains "
                        f"only the new head, for --head-epochs; give --epochs {head + 1} or more (the epochs count "
                        f"both phases), or fewer --head-epochs")
    tuned = total - head
    phase2 = f"phase 2's {tuned} epoch{'s' * (tuned > 1)} (--epochs {total} - --head-epochs {head})"
    if config.warmup_epochs > tuned:
        raise UserError(f"--warmup-epochs {config.warmup_epochs} is longer than {phase2}: give fewer warm-up epochs, "
                        f"or more --epochs")
    if config.cosine and config.warmup_epochs == tuned:
        raise UserError(f"--warmup-epochs {config.warmup_epochs} fills {phase2}, leaving none for --cosine: give "
                        f"fewer warm-up epochs, or more --epochs")


def check_test_views(config: BaselineConfig):
    """--test-sides and --test-flip: views of the test pixels, chosen on the validation slice."""
    option = "--test-sides" if config.test_sides else "--test-flip"
    if config.test_sides and config.kind != "finetune":
        raise UserError(f"--test-sides is finetune's: {config.kind} takes its images at their own size (drop it; "
                        f"--test-flip works for every kind)")
    if not config.patience:
        raise UserError(f"{option} is chosen on the validation slice, never on the test split: give --patience too")
    if config.from_features:
        raise UserError(f"{option} changes the pixels, and --from-features scores maps already computed: fine-tune "
                        f"from pixels to use {option}")
    for side in config.test_sides:
        check_size(config.backbone, side, option=f"--test-sides {side}")


def check_progressive(config: BaselineConfig):
    """--progressive SIZE:EPOCHS: a smaller side the backbone takes, for some but not all of the epochs (the
    model scored at the end is the one at --size)."""
    size, epochs = config.progressive_size, config.progressive_epochs
    if size >= config.size:
        raise UserError(f"--progressive {size}:{epochs}: the early side must be smaller than --size {config.size}")
    check_size(config.backbone, size, option=f"--progressive {size}:{epochs}")
    if not 0 < epochs < config.total_epochs:
        raise UserError(f"--progressive {size}:{epochs}: give from 1 to {config.total_epochs - 1} epochs at {size} "
                        f"(of --epochs {config.total_epochs}), so that the last ones train at --size {config.size}")
