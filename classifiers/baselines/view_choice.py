"""The view of the test images a baseline from pixels is scored with, chosen on its validation slice.

Random-resized crops make objects look larger in training than in the plain resize a test image gets, so a
fine-tuned network often scores better fed a little above the side it trained at (Touvron et al. 2019,
"Fixing the train-test resolution discrepancy"): --test-sides gives the sides to try. A network trained with
random flips often scores better on the average of an image's and its mirror's probabilities: --test-flip
tries that too. Each candidate is scored on the run's validation slice (the rows that chose its epoch), the
best one is kept (ties: the first of them in candidates()' order, plain views before flip-averaged ones, smaller
sides first) and the test split is scored once, with it. The test split is never scored to choose.
"""
import numpy as np


def candidates(config) -> list[tuple[int | None, bool]]:
    """(input side, flip-averaged) to try, in the order that breaks ties: --size and --test-sides from the smallest
    (None: the kind's own input), plain, then the same flip-averaged when --test-flip asks."""
    sides = sorted({config.size, *config.test_sides}) if config.kind == "finetune" else [None]
    return [(side, flip) for flip in sorted({False, config.test_flip}) for side in sides]


def probabilities(model, images, flip: bool = False):
    """The model's class probabilities (inference mode); with `flip`, the mean of the images' and their mirror
    images' (width reversed: images are NHWC)."""
    p = model.predict(images, batch_size=256, verbose=0)
    if flip:
        p = (p + model.predict(np.ascontiguousarray(images[:, :, ::-1]), batch_size=256, verbose=0)) / 2
    return p


def choose_view(model_at, config, X_val, y_val) -> tuple[dict, list[dict]]:
    """(the view that validates best, every candidate's row); `model_at(side)` is the kept model at that side."""
    rows = []
    for side in dict.fromkeys(side for side, _ in candidates(config)):  # one model per side, plain and flipped
        model = model_at(side)
        for flip in sorted({False, config.test_flip}):
            accuracy = float((probabilities(model, X_val, flip).argmax(1) == y_val).mean())
            rows.append({"size": side, "flip": flip, "validation_accuracy": accuracy})
    order = {view: i for i, view in enumerate(candidates(config))}
    best = max(rows, key=lambda r: (r["validation_accuracy"], -order[r["size"], r["flip"]]))
    return best, sorted(rows, key=lambda r: order[r["size"], r["flip"]])


def asked(config) -> bool:
    return bool(config.test_sides or config.test_flip)


def chosen_view(view: dict) -> dict:
    """The view as `chosen` hyperparameters of the run record."""
    return {**({"test_size": view["size"]} if view["size"] is not None else {}), "test_flip": view["flip"]}
