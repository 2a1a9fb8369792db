"""Run records: saving and loading a run's model and numbers, and ranking runs without the test split."""
