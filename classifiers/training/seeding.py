"""Where a baseline's random draws come from: every seed derived from the run's seed and a place in the model,
the same in every process, so a run (or a k-fold task on a Dask worker) never depends on process-wide state."""
import hashlib

import numpy as np


def derived_seed(seed: int, *where) -> int:
    """A seed of its own for each place in the model, the same in every process."""
    return int(hashlib.sha256("/".join(map(str, (seed, *where))).encode()).hexdigest()[:8], 16) % (2**31 - 1)


def seed_states(model) -> list:
    """The random layers' seed states: model variables that are not weights, and not saved with them."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def seed_new_layers(built, seed: int):
    """Re-draws the new layers' weights from their own initializers, and every seed state, from
    (seed, position in the model).

    Keras seeds unseeded layers from Python's process-wide `random` when it makes them, and a Dask
    worker's heartbeat draws from it on another thread (dask.sizeof), so a baseline trained as a k-fold
    task started from weights that depended on timing. Positions, not names: Keras numbers layer names
    by what was built before in the process. The backbone is left as build_backbone made it."""
    for i, layer in enumerate(built.model.layers):
        if layer is built.backbone:
            continue
        for j, var in enumerate(layer.weights):
            init = getattr(layer, f"{var.name}_initializer", None)
            if init is None:
                raise RuntimeError(f"no initializer found for {var.path}")
            config = init.get_config()
            if "seed" in config:
                init = init.__class__.from_config({**config, "seed": derived_seed(seed, i, j)})
            var.assign(init(var.shape, dtype=var.dtype))
    for i, state in enumerate(seed_states(built.model)):
        state.assign(np.array([derived_seed(seed, "rng", i), 0], dtype=state.dtype))
