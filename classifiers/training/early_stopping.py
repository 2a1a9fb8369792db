"""The one early-stopping policy, for the heads that train in epochs (dense, gap) and the pixel baselines
(cnn, finetune, wrn) alike: keep the epoch with the highest validation accuracy, ties broken by the lower
validation loss, and stop once `patience` epochs have passed without a better one; the kept epoch's weights
are the model's at the end.

Accuracy, not loss: the loss keeps rising after the accuracy peaks (more so with smoothed labels), and
accuracy is what is reported; the loss breaks ties, which matter on small validation slices, where accuracy
moves in steps. `monitor="loss"` ranks by the loss instead (ties broken by accuracy): the dense head's default,
with patience 20, the best of six rules by 3-fold on the training split (bench/choose_early_stopping.py). The
policy's memory is plain data (the best epoch's record and weights), so a baseline's checkpoint keeps it and a
resumed run stops where an uninterrupted one would."""
from dataclasses import dataclass


@dataclass
class BestEpoch:
    patience: int
    record: dict | None = None     # {"epoch": epochs done at the best, "val_accuracy", "val_loss"}
    weights: list | None = None    # the best epoch's weights
    monitor: str = "accuracy"      # or "loss"

    def score(self, record: dict) -> tuple:
        """Higher is better. A record saved before accuracy ranked epochs (a checkpoint of cnncodes 0.3) has
        only its loss: any epoch with an accuracy ranks above it."""
        accuracy = record.get("val_accuracy", float("-inf"))
        return (-record["val_loss"], accuracy) if self.monitor == "loss" else (accuracy, -record["val_loss"])

    def should_stop(self, epochs_done: int, logs: dict, model) -> bool:
        """Called at the end of each epoch with Keras's logs; keeps the model's weights when the epoch is the
        best so far. NaN never ranks as better."""
        epoch = {"epoch": epochs_done, "val_accuracy": float(logs["val_accuracy"]), "val_loss": float(logs["val_loss"])}
        if self.record is None or self.score(epoch) > self.score(self.record):
            self.record, self.weights = epoch, model.get_weights()
            return False
        return epochs_done - self.record["epoch"] >= self.patience
