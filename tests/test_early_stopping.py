"""One early-stopping policy for the heads and the baselines: the best validation accuracy, ties broken by
the lower validation loss, stopping after `patience` epochs without a better one."""
import numpy as np
import pytest

from cnncodes.classifiers.training.early_stopping import BestEpoch


class Model:
    """Weights that say which epoch they are from."""

    def __init__(self):
        self.epoch = 0

    def get_weights(self):
        return [np.array(self.epoch)]


def run(policy: BestEpoch, epochs: list[tuple[float, float]], model=None, first=1) -> int:
    """Feeds (val_accuracy, val_loss) per epoch; returns the epochs done when it stopped (or all)."""
    model = model or Model()
    for done, (accuracy, loss) in enumerate(epochs, first):
        model.epoch = done
        if policy.should_stop(done, {"val_accuracy": accuracy, "val_loss": loss}, model):
            return done
    return first + len(epochs) - 1


def test_the_best_accuracy_wins_though_its_loss_is_higher_and_ties_go_to_the_lower_loss():
    policy = BestEpoch(patience=3)
    stopped = run(policy, [(0.5, 1.0), (0.7, 1.2), (0.6, 0.5), (0.7, 1.1), (0.65, 0.4), (0.7, 1.15), (0.6, 0.3)])
    assert policy.record == {"epoch": 4, "val_accuracy": 0.7, "val_loss": 1.1} and int(policy.weights[0]) == 4
    assert stopped == 7  # three epochs after the fourth without a better one


@pytest.mark.parametrize("patience", [1, 2, 5])
def test_it_stops_patience_epochs_after_the_best(patience):
    policy = BestEpoch(patience)
    assert run(policy, [(0.9, 0.1)] + [(0.5, 1.0)] * 10) == 1 + patience


def test_a_resumed_run_stops_where_an_uninterrupted_one_would():
    curve = [(0.5, 1.0), (0.6, 0.9), (0.55, 0.8), (0.6, 0.95), (0.58, 0.7), (0.57, 0.6), (0.56, 0.5)]
    whole = BestEpoch(2)
    stopped = run(whole, curve)
    first = BestEpoch(2)
    run(first, curve[:3])
    resumed = BestEpoch(2, first.record, first.weights)  # what a checkpoint keeps
    assert run(resumed, curve[3:], first=4) == stopped and resumed.record == whole.record


def test_nan_never_ranks_as_better_and_an_old_checkpoint_record_yields_to_any_accuracy():
    policy = BestEpoch(5)
    run(policy, [(0.5, 1.0), (float("nan"), float("nan"))])
    assert policy.record["epoch"] == 1
    old = BestEpoch(5, {"epoch": 3, "val_loss": 0.2})  # saved when baselines stopped on the loss alone
    run(old, [(0.1, 5.0)], first=4)
    assert old.record["epoch"] == 4


def test_heads_and_baselines_share_it():
    from cnncodes.classifiers.baselines import train
    from cnncodes.classifiers.training import keras_training

    assert isinstance(keras_training.KeepBestEpoch(3).policy, BestEpoch)  # the heads' callback
    assert train.BestEpoch is BestEpoch  # the baselines' loop, which hands it to EndOfEpoch


def test_monitor_loss_keeps_the_lowest_loss_ties_going_to_the_higher_accuracy():
    """The candidate rule the heads' default is chosen against (bench/choose_early_stopping.py)."""
    policy = BestEpoch(patience=2, monitor="loss")
    stopped = run(policy, [(0.5, 1.0), (0.7, 0.6), (0.8, 0.6), (0.9, 0.7), (0.95, 0.65), (0.99, 0.8)])
    assert policy.record == {"epoch": 3, "val_accuracy": 0.8, "val_loss": 0.6} and stopped == 5


def test_the_heads_take_monitor_and_refuse_another_value(monkeypatch):
    from cnncodes.classifiers.heads.registry import make_head
    from cnncodes.classifiers.training import keras_training
    from cnncodes.features.errors import UserError

    policies = []
    keep = keras_training.KeepBestEpoch.__init__

    def spy(self, patience, monitor="accuracy"):
        keep(self, patience, monitor)
        policies.append(self.policy)

    monkeypatch.setattr(keras_training.KeepBestEpoch, "__init__", spy)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(120, 6)).astype("float32"), np.arange(120) % 3
    for name in ("dense", "gap"):
        make_head(name, monitor="loss", epochs=2, patience=7).fit(X, y)
    assert [(p.monitor, p.patience) for p in policies] == [("loss", 7), ("loss", 7)]
    for name in ("dense", "gap"):
        make_head(name, epochs=1).fit(X, y)
    defaults = [(p.monitor, p.patience) for p in policies[-2:]]
    assert defaults == [("loss", 20), ("accuracy", 10)]  # dense's chosen by k-fold (bench/choose_early_stopping.py)
    with pytest.raises(UserError, match="monitor"):
        make_head("gap", monitor="val_loss").fit(X, y)
