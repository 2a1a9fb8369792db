"""A baseline run's folder and state: where a configuration's run lives, what it has trained, whether it
is finished, and the hyperparameters it reports as chosen. Every epoch's state is the checkpoint's."""
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

from cnncodes.classifiers.runs.records import read_record
from cnncodes.classifiers.training.baseline_config import BaselineConfig, resume_settings
from cnncodes.classifiers.training.checkpoint import Checkpoint
from cnncodes.classifiers.training.schedules import wrn_steps
from cnncodes.features import schema
from cnncodes.features.errors import UserError
from cnncodes.features.store import FeatureStore


def run_folder(store: Path, config: BaselineConfig, label: str) -> Path:
    """The latest run folder with these settings, or the path of a new one (made only once training starts)."""
    runs = Path(store) / schema.RUNS_DIR
    existing = sorted(runs.glob(f"*-{config.run_name(label)}")) if runs.exists() else []
    if existing:
        return existing[-1]
    return runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{config.run_name(label)}"


@contextmanager
def kept_if_resumable(run: Path):
    """Makes the run folder; a run that fails before its first checkpoint leaves no empty folder
    behind, one with a checkpoint stays to resume from."""
    new = not run.exists()
    run.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        if new and not Checkpoint(run).state_file.exists():
            shutil.rmtree(run, ignore_errors=True)
        raise


def phase_done(state: dict, phase: int, until: int) -> bool:
    return state["epoch"] >= until or state["phase"] > phase or (state["phase"] == phase and state["stopped"])


def phases(config: BaselineConfig) -> list[tuple[int, int]]:
    """(phase, the epoch it trains until): finetune's frozen and unfrozen phases, one phase otherwise."""
    if config.kind == "finetune":
        return [(1, min(config.head_epochs, config.total_epochs)), (2, config.total_epochs)]
    return [(1, config.total_epochs)]


def run_state(run: Path, config: BaselineConfig) -> dict:
    """The run's training state (a fresh one for a new run), checked against these settings."""
    fresh = {"epoch": 0, "phase": 1, "stopped": False, "best": None, "history": {}, "seconds": 0.0}
    state = {**fresh, **(Checkpoint(run).state() or {"config": asdict(config)})}
    if resume_settings(state["config"]) != resume_settings(asdict(config)):
        raise UserError(f"{run} holds a run with other settings: delete it and run the same command again")
    if state["epoch"] > config.total_epochs:
        raise UserError(f"{run} has trained {state['epoch']} epochs already: give --epochs {state['epoch']} or more")
    return state


def is_finished(state: dict, config: BaselineConfig) -> bool:
    return bool(state.get("done")) and all(phase_done(state, p, until) for p, until in phases(config))


def finished_run(store_dir, config: BaselineConfig) -> Path | None:
    """The run folder of these settings when it has nothing left to train, else None: what
    train_baseline would only read back."""
    store = FeatureStore.open(store_dir)
    config = with_stored_label(store, config)
    run = run_folder(store.path, config, store.canonical_label_set(config.label))
    if not is_finished(run_state(run, config), config):
        return None
    record, _ = read_record(run / "record.json")  # a damaged one: train_baseline says so
    return run if record and scored_as_asked(record, config) else None


def scored_as_asked(record: dict, config: BaselineConfig) -> bool:
    """Whether a finished run's record was scored with the test views (--test-sides, --test-flip) `config`
    asks for: a finished run asked for others is scored again, not trained again."""
    params = record.get("params") or {}
    return (tuple(params.get("test_sides") or ()) == config.test_sides
            and bool(params.get("test_flip")) == config.test_flip)


def with_stored_label(store: FeatureStore, config: BaselineConfig) -> BaselineConfig:
    """--label CLASS as the store names it (`class`), so both find the same run; None stays the default. The
    same for --from-features: the set's own name."""
    if config.from_features:
        config = replace(config, from_features=store.feature_set(config.from_features).name)
    return config if config.label is None else replace(config, label=store.canonical_label_set(config.label))


def trained_phases(config: BaselineConfig, state: dict) -> list[dict]:
    """What the run trained, phase by phase: the epochs each phase actually ran (early stopping may end one before
    its last), what it trained and with which optimizer and rate schedule. A phase that ran no epoch is absent."""
    starts = {int(p): e for p, e in state.get("phase_starts", {}).items()} or {  # checkpoints from before they
        p: (0 if p == 1 else min(config.head_epochs, config.total_epochs)) for p, _ in phases(config)}  # were kept
    out = []
    for phase, _ in phases(config):
        if phase not in starts:
            continue
        later = [e for p, e in starts.items() if p > phase]
        until = min(later) if later else state["epoch"]
        if until <= starts[phase]:
            continue
        entry = {"phase": phase, "epochs": [starts[phase] + 1, until]}
        if config.kind != "finetune":
            entry |= {"trains": "every layer", "optimizer": phase_optimizer(config)}
        elif phase == 1:
            entry |= {"trains": "the new head; the backbone frozen", "optimizer": "adam, rate 0.001"}
        else:
            start = config.unfreeze_from or "its last stage"
            entry |= {"trains": "the head and " + ("every backbone layer" if start == "all" else f"the backbone from "
                                                   f"{start} on") + ("" if config.train_batchnorm else
                                                                     ", BatchNorm frozen"),
                      "optimizer": phase_optimizer(config)}
        out.append(entry)
    return out


def phase_optimizer(config: BaselineConfig) -> str:
    """The trained phase's optimizer and rate schedule, in words (no commas: k-fold tables separate values by them)."""
    name = {"sgd": "sgd (Nesterov 0.9)", "adam": "adam", "adamw": "adamw"}[config.optimizer]
    if config.kind == "cnn":
        name = "rmsprop"
    text = f"{name} rate {config.final_learning_rate:g}"
    if config.kind == "finetune" and (config.warmup_epochs or config.cosine):
        text += f"; {finetune_schedule_text(config)}"
    if config.weight_decay and config.kind != "cnn":
        text += f"; weight decay {config.weight_decay:g}"
    return text


def finetune_schedule_text(config: BaselineConfig) -> str:
    warmup = f"warm-up {config.warmup_epochs} epoch{'s' * (config.warmup_epochs > 1)}" if config.warmup_epochs else ""
    fills = config.warmup_epochs >= config.total_epochs - config.head_epochs  # nothing after the warm-up
    return " then ".join(filter(None, [warmup, "cosine" if config.cosine else "" if fills else "constant"]))


def chosen_params(config: BaselineConfig, state: dict) -> dict:
    """`fit`'s chosen hyperparameters: the epochs trained and the one whose weights were kept (the best
    under --patience, else the last), the learning rate (wrn's first), and the steps wrn's schedule took."""
    best = state["best"]["epoch"] if state["best"] else state["epoch"]
    chosen = {"best_epoch": best, "epochs_trained": state["epoch"], "learning_rate": config.final_learning_rate,
              "batch_size": config.batch_size}
    if config.kind == "finetune" and (config.warmup_epochs or config.cosine):  # no commas: see below
        chosen["schedule"] = finetune_schedule_text(config)
    if config.kind == "wrn" and config.optimizer == "sgd":  # the steps taken (early stopping may come first)
        steps = [str(s) for s in wrn_steps(config.total_epochs) if s < state["epoch"]]
        # no commas: k-fold tables separate each fold's value by them
        chosen["schedule"] = f"x0.2 after epoch{'s' * (len(steps) > 1)} {'/'.join(steps)}" if steps else "constant"
    return chosen
