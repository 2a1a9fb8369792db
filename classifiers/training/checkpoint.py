"""A baseline's checkpoint files: one per epoch, with what training goes on from."""
import zipfile
from pathlib import Path

import numpy as np

from cnncodes.features.errors import UserError
from cnncodes.features.outputs import atomic_write
from cnncodes.features.sealed import SealBroken, read_sealed, write_sealed

from .seeding import seed_states


class Checkpoint:
    """Everything training goes on from, in one file per epoch: the weights, the optimizer's variables
    (its step counter included), the random layers' seed states and, under early stopping, the best
    epoch's weights. state.json names the file and is replaced only once the file is complete, so a kill
    at any moment leaves a state and a checkpoint that belong together."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.state_file = folder / "state.json"

    def state(self) -> dict | None:
        if not self.state_file.exists():
            return None
        try:
            return read_sealed(self.state_file)
        except SealBroken as e:
            raise self.damaged(self.state_file, str(e)) from None

    def save(self, model, state: dict, best_weights: list | None = None):
        name = f"checkpoint-{state['epoch']}.npz"
        parts = {"weights": model.weights, "optimizer": model.optimizer.variables, "seeds": seed_states(model),
                 "best": best_weights or []}
        arrays = {f"{part}.{i}": np.asarray(v) for part, values in parts.items() for i, v in enumerate(values)}
        with atomic_write(self.folder / name) as (tmp,):  # a full disk: the last good checkpoint stays alone
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        state["checkpoint"] = name
        write_sealed(self.state_file, state)
        for old in self.folder.glob("checkpoint-*.npz"):
            if old.name != name:
                old.unlink()

    def restore(self, model) -> list | None:
        """Weights and seed states; returns the best epoch's weights when early stopping kept them."""
        saved = self._load()
        self._assign(model.weights, saved, "weights")
        self._assign(seed_states(model), saved, "seeds")
        return self._part(saved, "best") or None

    def restore_optimizer(self, model):
        model.optimizer.build(model.trainable_variables)
        self._assign(model.optimizer.variables, self._load(), "optimizer")

    def _load(self):
        name = (self.state() or {}).get("checkpoint")
        if name is None or not (self.folder / name).exists():
            raise self.damaged(self.folder / (name or "checkpoint-*.npz"))
        try:
            with np.load(self.folder / name) as saved:
                return dict(saved)
        except (OSError, ValueError, zipfile.BadZipFile):
            raise self.damaged(self.folder / name) from None

    def damaged(self, path, why: str = "is damaged or missing") -> UserError:
        return UserError(f"{path} {why}: delete {self.folder} to train this run from the start")

    @staticmethod
    def _part(saved: dict, part: str) -> list:
        return [saved[f"{part}.{i}"] for i in range(sum(k.startswith(f"{part}.") for k in saved))]

    def _assign(self, variables, saved: dict, part: str):
        values = self._part(saved, part)
        if [tuple(v.shape) for v in variables] != [a.shape for a in values]:
            raise UserError(f"the checkpoint in {self.folder} does not fit this model: delete {self.folder} "
                            "to train this run from the start")
        for v, a in zip(variables, values):
            v.assign(a)
