"""The Wide ResNet's learning-rate schedule (its paper's steps), as plain functions of the run's epochs."""
from .baseline_config import BaselineConfig


def wrn_steps(epochs: int) -> list[int]:
    """The epochs after which the WRN paper's rate drops x0.2: 30%, 60% and 80% of the run (SGD only).
    A short run keeps only the steps that fit, each at least one epoch after the one before, so none
    falls on the first epoch (1 epoch: no step; 3 epochs: after epochs 1 and 2)."""
    steps = []
    for fraction in (0.3, 0.6, 0.8):
        step = max(int(epochs * fraction), (steps[-1] if steps else 0) + 1)
        if step < epochs:
            steps.append(step)
    return steps


def wrn_schedule(config: BaselineConfig):
    """The learning rate of each (0-based) epoch under wrn_steps."""
    base, steps = config.final_learning_rate, wrn_steps(config.total_epochs)
    return lambda epoch: base * 0.2 ** sum(epoch >= s for s in steps)
