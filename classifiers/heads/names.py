"""The names of the heads and the pixel baselines, without their code: what the command line offers before
anything heavy loads (registry.py registers a head under each, and refuses to load if they differ)."""
HEAD_NAMES = ("dense", "gap", "svm", "logreg", "knn")
BASELINE_NAMES = ("cnn", "finetune", "wrn", "airbench")  # pixel baselines (baselines/train.py): heads of kfold too
