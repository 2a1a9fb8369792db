"""Every output tells the truth (issue 36): every head's fit ends in its line and a listed run; a fine-tune whose
schedule cannot run is refused, and a run's record says what each phase trained; audit counts are totals; a report
says what it left out and refuses a map it cannot draw; stale sets are called stale; a sweep names what it left out;
an interrupted `features` says what it kept."""
import shutil
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cnncodes.classifiers.heads.registry import HEADS
from cnncodes.cli import cli
from cnncodes.features.store import FeatureStore
from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest

quiet = dict(progress=False, log=lambda m: None)
LITE = FeatureConfig("efficientnet_lite0", "none", 32)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """200 digits a split, EfficientNet-Lite0 codes (random weights) at 32 px: seconds to make."""
    store = tmp_path_factory.mktemp("truthful") / "s"
    ingest(store, IngestConfig("digits", limit=200), **quiet)
    extract_features(store, LITE, name="lite", **quiet)
    return store


@pytest.fixture
def store(small_store, tmp_path):
    return shutil.copytree(small_store, tmp_path / "s")


# -- fit: every head's line, and a run only for a command that succeeded -------------------------------------
QUICK = {"dense": ["--epochs", "1"], "gap": ["--epochs", "1"], "svm": ["--param", "Cs=[0.1]"],
         "logreg": ["--param", "Cs=[0.1]"], "knn": []}


@pytest.mark.parametrize("head", list(HEADS))
def test_every_head_fits_through_the_command_and_its_run_is_listed(store, head):
    done = invoke("fit", "--store", store, "--head", head, "--quiet", *QUICK.get(head, []))
    assert done.exit_code == 0, done.output
    said = done.output.splitlines()
    assert said[0].startswith(f"{head} on lite (digit): test accuracy ") and said[1].startswith("saved to ")
    if head == "knn":  # knn's model is its training rows: it records no training accuracy, and says so
        assert ", train –;" in said[0] or ", train –," in said[0]
    listed = invoke("runs", "--store", store)
    assert listed.exit_code == 0 and listed.output.count(f"\n{head} ") == 1, listed.output


# -- baseline finetune: a schedule that cannot run is refused; the record says what each phase trained -------
@pytest.mark.parametrize("options, says", [
    (["--head-epochs", "5", "--epochs", "2", "--warmup-epochs", "3", "--cosine"],
     "--epochs 2 with --head-epochs 5 leaves no epoch to fine-tune in"),
    (["--epochs", "2"], "--epochs 2 with --head-epochs 2 leaves no epoch to fine-tune in"),
    (["--epochs", "4", "--head-epochs", "1", "--warmup-epochs", "4"],
     "--warmup-epochs 4 is longer than phase 2's 3 epochs (--epochs 4 - --head-epochs 1)"),
    (["--epochs", "4", "--head-epochs", "1", "--warmup-epochs", "3", "--cosine"],
     "--warmup-epochs 3 fills phase 2's 3 epochs (--epochs 4 - --head-epochs 1), leaving none for --cosine"),
])
def test_a_finetune_schedule_that_cannot_run_is_refused_before_any_work(store, options, says):
    done = invoke("baseline", "finetune", "--store", store, "--backbone", "efficientnet_lite0", "--weights", "none",
                  "--size", "32", *options)
    assert done.exit_code == 1 and done.output.strip().count("\n") == 0 and says in done.output, done.output
    assert not (store / "runs").exists()


@pytest.mark.parametrize("kind, option", [("cnn", "--cosine"), ("wrn", "--warmup-epochs")])
def test_finetunes_schedule_options_are_refused_for_the_other_baselines(store, kind, option):
    done = invoke("baseline", kind, "--store", store, *([option] if option == "--cosine" else [option, "1"]))
    assert done.exit_code == 1 and f"{option} shapes finetune's phase-2 rate: {kind} has a schedule of its own" \
        in done.output


def test_a_finetunes_record_says_what_each_phase_trained(store):
    from cnncodes.classifiers.baselines.train import train_baseline
    from cnncodes.classifiers.training.baseline_config import BaselineConfig

    config = BaselineConfig("finetune", backbone="efficientnet_lite0", weights="none", size=32, epochs=3,
                            head_epochs=1, batch_size=64, limit=40, warmup_epochs=1, cosine=True, optimizer="sgd",
                            learning_rate=0.01, unfreeze_from="all")
    _, record = train_baseline(store, config, progress=False, log=lambda m: None)
    assert record["phases"] == [
        {"phase": 1, "epochs": [1, 1], "trains": "the new head; the backbone frozen", "optimizer": "adam, rate 0.001"},
        {"phase": 2, "epochs": [2, 3], "trains": "the head and every backbone layer, BatchNorm frozen",
         "optimizer": "sgd (Nesterov 0.9) rate 0.01; warm-up 1 epoch then cosine"}]
    assert record["chosen"]["schedule"] == "warm-up 1 epoch then cosine"


# -- audit: totals are totals --------------------------------------------------------------------------------
def test_audit_counts_every_pair_of_a_group_larger_than_the_neighbor_lists(tmp_path):
    """42 identical images (30 training, 12 test): every image has more copies than its 10 listed neighbors."""
    image = np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    for split, n in (("train", 15), ("test", 6)):
        for cls in ("a", "b"):
            (tmp_path / "tree" / split / cls).mkdir(parents=True)
            for i in range(n):
                cv2.imwrite(str(tmp_path / "tree" / split / cls / f"{i}.png"), image)
    store = tmp_path / "s"
    ingest(store, IngestConfig(f"folder:{tmp_path / 'tree'}"), **quiet)
    extract_features(store, LITE, name="lite", **quiet)
    done = invoke("audit", "--store", store, "--quiet", "-k", "3")
    assert done.exit_code == 0, done.output
    from cnncodes.classifiers.audit.audit import load_audits

    (audit,) = load_audits(store)
    c = audit["counts"]
    assert (c["duplicate_within_train"], c["duplicate_within_test"], c["duplicate_across_splits"]) == (435, 66, 360)
    assert c["duplicate"] == c["duplicate_exact"] == 861 and c["duplicate_listed"] < 861
    assert audit["leakage"]["leaked"] == audit["leakage"]["leaked_exact"] == 12
    assert "duplicates: 861 pairs" in done.output and "66 within test" in done.output
    assert {r["evidence"] for r in audit["rows"] if r["kind"] == "duplicate"} == {"exact"}
    assert f"the table lists {c['duplicate_listed']} of them" in done.output


# -- report: a map it cannot draw is refused before work; what it leaves out is said -------------------------
def test_report_refuses_a_umap_map_without_umap_learn_before_any_work(store, monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # import umap raises ImportError
    done = invoke("report", "--store", store, "--map", "umap")
    assert done.exit_code == 1 and done.output.strip().count("\n") == 0
    assert "--map umap needs umap-learn" in done.output and "cnncodes[map]" in done.output
    assert not (store / "report").exists()


def test_report_says_on_the_console_what_it_left_out(store):
    run = store / "runs" / "20260101-000000-fit-logreg-digit"
    run.mkdir(parents=True)
    (run / "record.json").write_text("{not json")
    done = invoke("report", "--store", store)
    assert done.exit_code == 0
    assert f"report: run {run.name} left out: " in done.output and "with 1 part left out" in done.output


# -- stale sets: info and check call them stale; sweep names what it left out ----------------------------------
@pytest.fixture
def stale_store(tmp_path):
    """`old` made from the data before --reingest (stale), `new` from the data now."""
    store = tmp_path / "s"
    ingest(store, IngestConfig("digits", limit=30), **quiet)
    extract_features(store, LITE, name="old", **quiet)
    ingest(store, IngestConfig("digits", limit=30, seed=1), reingest=True, **quiet)
    extract_features(store, LITE, name="new", **quiet)
    return store


def test_info_and_check_call_a_set_of_other_data_stale_not_complete_nor_damaged(stale_store):
    shown = invoke("info", "--store", stale_store)
    assert shown.exit_code == 0
    (old,) = [line for line in shown.output.splitlines() if line.startswith("  old:")]
    assert old.startswith("  old: STALE (was made from other data than this store's data.h5") and "complete" not in old
    checked = invoke("info", "--store", stale_store, "--check")
    assert checked.exit_code == 0, checked.output  # every byte sound: nothing damaged
    assert "old.h5: sound but STALE (was made from other data" in checked.output and "DAMAGED" not in checked.output


def test_sweep_names_the_sets_it_left_out_and_why(stale_store):
    done = invoke("sweep", "--store", stale_store, "--head", "logreg", "-k", "2", "--param", "Cs=[0.1]", "--quiet")
    assert done.exit_code == 0, done.output
    assert "sweep: old left out: was made from other data" in done.output
    assert "left out: old: was made from other data" in done.output  # in the table the sweep saved, too


# -- features: Ctrl-C says what was kept, and the same command resumes ----------------------------------------
def test_an_interrupted_features_says_what_it_kept_and_the_same_command_resumes(tmp_path, monkeypatch):
    from cnncodes.pipeline.extraction import extract

    store = tmp_path / "s"
    args = ["features", "--dataset", "digits", "--limit", "40", "--store", store, "--backbone", "efficientnet_lite0",
            "--weights", "none", "--size", "32", "--chunk-size", "16", "--name", "lite", "--quiet"]
    real, calls = extract.DeviceStep.__call__, []

    def ctrl_c_at_the_third_chunk(self, *inputs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *inputs)

    monkeypatch.setattr(extract.DeviceStep, "__call__", ctrl_c_at_the_third_chunk)
    done = invoke(*args)
    assert done.exit_code == 130 and "Aborted!" not in done.output
    assert "interrupted: lite keeps 32 of 80 rows in committed chunks; the same command resumes from there" \
        in done.output
    monkeypatch.setattr(extract.DeviceStep, "__call__", real)
    again = invoke(*args)
    assert again.exit_code == 0 and "lite\tresumed" in again.output
    assert FeatureStore.open(store).features("lite").shape[0] == 80


# -- what the second hostile pass found ------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["knn", "dense", "logreg"])
def test_a_holdout_that_leaves_nothing_to_train_on_is_one_line(store, head):
    done = invoke("fit", "--store", store, "--head", head, "--quiet", "--param", "validation_fraction=0.999")
    assert done.exit_code == 1 and done.output.strip().count("\n") == 0, done.output
    assert "validation_fraction 0.999 of 200 training rows holds out every one" in done.output
    assert not (store / "runs").exists() or not any((store / "runs").iterdir())


def test_knn_records_the_k_it_used_not_one_above_its_rows(store):
    from cnncodes.classifiers.evaluation.fit import fit_head

    _, record = fit_head(store, "knn", params={"ks": [1, 50000]}, log=lambda m: None)
    # 200 training rows, 20 of them the holdout: a k of 50,000 searches the 180 there are, and says so
    assert {k for k, _ in record["validation_scores"]} == {1, 180} and record["chosen"]["k"] in (1, 180)


def test_a_warm_up_that_fills_phase_two_is_not_said_to_be_followed_by_a_constant_rate():
    from cnncodes.classifiers.baselines.baseline_runs import finetune_schedule_text
    from cnncodes.classifiers.training.baseline_config import BaselineConfig

    assert finetune_schedule_text(BaselineConfig("finetune", epochs=3, warmup_epochs=1)) == "warm-up 1 epoch"
    assert finetune_schedule_text(BaselineConfig("finetune", epochs=4, warmup_epochs=1)) == \
        "warm-up 1 epoch then constant"


def test_a_broken_umap_install_is_one_line_too(store, tmp_path, monkeypatch):
    class Broken:  # imports, but is not umap-learn
        pass

    monkeypatch.setitem(sys.modules, "umap", Broken())
    done = invoke("report", "--store", store, "--map", "umap")
    assert done.exit_code == 1 and "is not umap-learn's" in done.output and not (store / "report").exists()


def test_runs_of_data_the_store_no_longer_holds_are_marked_stale(stale_store):
    from cnncodes.classifiers.evaluation.fit import fit_head

    fit_head(stale_store, "logreg", features="new", params={"Cs": [0.1]}, log=lambda m: None)
    before = invoke("runs", "--store", stale_store)
    assert "[stale]" not in before.output
    ingest(stale_store, IngestConfig("digits", limit=30, seed=2), reingest=True, **quiet)
    after = invoke("runs", "--store", stale_store)
    assert after.exit_code == 0 and "new [stale]" in after.output
    assert "[stale]: made from codes or images" in after.output


def test_an_existing_export_model_out_is_refused_before_the_backend_loads(tmp_path):
    import subprocess

    (tmp_path / "m.keras").write_text("mine")
    probe = ("import sys\nfrom click.testing import CliRunner\nfrom cnncodes.cli import cli\n"
             f"r = CliRunner().invoke(cli, ['export-model', '--model', {str(tmp_path)!r}, '--out', "
             f"{str(tmp_path / 'm.keras')!r}])\n"
             "print(r.exit_code, 'keras' in sys.modules, 'already exists' in r.output)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.stdout.split()[-3:] == ["1", "False", "True"], out.stdout + out.stderr
