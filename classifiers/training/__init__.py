"""The Keras training loop's parts: settings of a pixel baseline, schedules, early stopping, checkpoints, seeding."""
