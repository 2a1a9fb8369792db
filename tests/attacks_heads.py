"""Hostile-input rows: heads. Each row is an Attack (tests/hostile.py); test_hostile.py runs them."""
from hostile import Attack

FITTED = {}  # one fit for every row: each row's store is a copy of the same digits store


def fitted_run(store, tmp, edit=lambda record: record, seal="again"):
    """A logreg fitted on the store, at STORE/runs/victim, its record changed by `edit` and then sealed
    `again` (as a forger would), its old seal `kept` (as a hand edit leaves it) or `none` (as cnncodes 0.2
    wrote it); and an image at TMP/digit.png to predict."""
    import json
    import shutil

    import cv2

    from cnncodes.classifiers.evaluation.fit import fit_head
    from cnncodes.features.sealed import SEAL_KEY, write_sealed
    from cnncodes.features.store import FeatureStore

    if "run" not in FITTED:
        made, _ = fit_head(store, "logreg", params={"Cs": [0.1]})
        FITTED["run"] = shutil.copytree(made, tmp / "fitted")  # pytest keeps tmp for the session
        shutil.rmtree(made)
    run = shutil.copytree(FITTED["run"], store / "runs" / "victim")
    cv2.imwrite(str(tmp / "digit.png"), FeatureStore.open(store).images(split="test")[0])
    record = edit(json.loads((run / "record.json").read_text()))
    if seal == "again":
        write_sealed(run / "record.json", record)
    else:
        (run / "record.json").write_text(json.dumps(record if seal == "kept" else
                                                    {k: v for k, v in record.items() if k != SEAL_KEY}))


def predict(*more):
    return ("predict", "--model", "{store}/runs/victim", *more, "{tmp}/digit.png")


FIT = ("fit", "--store", "{store}", "--quiet")

HEADS_ATTACKS = [
    # issue 19, item 4: non-finite parameters were a FloatingPointError, or a run record holding NaN
    Attack("C=Infinity", (*FIT, "--head", "svm", "--param", "C=Infinity"), r"svm: C takes a positive number up to 1e6"),
    Attack("Cs=[1e308]", (*FIT, "--head", "svm", "--param", "Cs=[1e308]"), r"svm: Cs takes a non-empty list"),
    Attack("learning_rate=Infinity", (*FIT, "--head", "dense", "--param", "learning_rate=Infinity"),
           r"dense: learning_rate takes a positive number up to 10, not inf"),
    Attack("learning_rate=1e300", (*FIT, "--head", "gap", "--param", "learning_rate=1e300"),
           r"gap: learning_rate takes a positive number up to 10, not 1e\+300"),
    Attack("tol=1e309", (*FIT, "--head", "logreg", "--param", "tol=1e309"), r"logreg: tol takes .* not inf"),
    Attack("epochs beyond int32", (*FIT, "--head", "dense", "--epochs", "99999999999"), r"epochs takes a whole number"),
    Attack("baseline --learning-rate inf", ("baseline", "cnn", "--store", "{store}", "--learning-rate", "inf"),
           r"cnn: learning_rate takes a positive number up to 10, or null, not inf"),
    Attack("baseline wrn --depth 10000", ("baseline", "wrn", "--store", "{store}", "--depth", "10000"),
           r"wrn: depth takes a whole number 6n\+4 from 10 to 1000"),
    # item 5: scikit-learn's ValueError, the backend's ResourceExhaustedError, a traceback from a Dask worker
    Attack("cv=1000", (*FIT, "--head", "svm", "--param", "cv=1000"),
           r"cv=1000 folds needs 1000 training rows of every class; the smallest class has \d+: give cv=\d+ or less"),
    Attack("kfold cv=1000", ("kfold", "--store", "{store}", "--head", "svm", "-k", "3", "--quiet", "--param",
                             "cv=1000"), r"the smallest class has \d+", store_changes=True),  # folds kept
    Attack("hidden=1000000000", (*FIT, "--head", "dense", "--param", "hidden=1000000000"),
           r"dense: hidden takes a whole number from 1 to 65536"),
    Attack("kfold finetune backbone=bogus", ("kfold", "--store", "{store}", "--head", "finetune", "--param",
                                             "backbone=bogus"), r"finetune: backbone takes one of resnet50, "),
    Attack("kfold finetune weights missing", ("kfold", "--store", "{store}", "--head", "finetune", "--param",
                                              "weights={tmp}/no-such.weights.h5"),
           r"finetune: weights takes imagenet, none or a weights file that exists"),
    Attack("baseline finetune --unfreeze-from bogus", ("baseline", "finetune", "--store", "{store}", "--size", "32",
                                                      "--unfreeze-from", "conv9_block1_out"),
           r"resnet50 has no layer 'conv9_block1_out'"),
    # item 3: a run record changed on disk is a damaged run, never a result; item 5: absurd shapes
    Attack("predict an edited record", predict(), r"victim is damaged \(record.json fails its checksum",
           prepare=lambda store, tmp: fitted_run(store, tmp, lambda r: {**r, "test_accuracy": 0.97}, seal="kept")),
    Attack("predict an unsealed record", predict(), r"record.json has no checksum \(written by cnncodes before 0.3",
           prepare=lambda store, tmp: fitted_run(store, tmp, seal="none")),
    Attack("predict image_shape [100000,100000,3]", predict(), r"image_shape \[100000, 100000, 3\], not \(side, side",
           prepare=lambda store, tmp: fitted_run(store, tmp, lambda r: {**r, "image_shape": [100000, 100000, 3]})),
    Attack("predict a record of NaN", predict(), r"record.json holds a number that is not finite",
           prepare=lambda store, tmp: fitted_run(store, tmp, lambda r: {**r, "train_accuracy": float("nan")})),
]
