"""`cnncodes sweep`: feature sets ranked by k-fold on the training split; the test split scored once, for the best."""
import json
from pathlib import Path

import pytest

from cnncodes.classifiers.evaluation import sweep as sweep_module
from cnncodes.classifiers.report.report import build_report
from cnncodes.features.errors import UserError
from cnncodes.features.sealed import read_sealed
from cnncodes.features.store import FeatureStore
from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_layers
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest
from conftest import run_cli

quiet = dict(progress=False, log=lambda m: None)


@pytest.fixture(scope="module")
def cuts_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("sweep") / "s"
    ingest(store, IngestConfig("digits", limit=30), **quiet)
    extract_layers(store, FeatureConfig("efficientnet_lite0", "none", 32), ["block6a_expand_activation", None],
                   name="lite", **quiet)
    return store


def test_sweep_ranks_on_training_folds_and_reads_the_test_split_only_for_the_chosen_fit(cuts_store, monkeypatch,
                                                                                         tmp_path):
    reads = []
    real_features, real_fit = FeatureStore.features, sweep_module.fit_head

    def spy_features(self, name=None, split=None, **kw):
        reads.append((name, split))
        return real_features(self, name, split=split, **kw)

    def spy_fit(*a, **kw):
        reads.append(("fit", kw["features"]))
        return real_fit(*a, **kw)

    monkeypatch.setattr(FeatureStore, "features", spy_features)
    monkeypatch.setattr(sweep_module, "fit_head", spy_fit)
    result = sweep_module.sweep(cuts_store, "logreg", k=3, progress=False)
    names = [r["features"] for r in result["candidates"]]
    # by default every set, and the cuts of one extraction joined
    assert sorted(names) == sorted(["lite-block6a_expand_activation", "lite-last",
                                    "lite-block6a_expand_activation+lite-last"])
    means = [r["mean"] for r in result["candidates"]]
    assert means == sorted(means, reverse=True) and result["chosen"] == names[0]
    fitting = reads.index(("fit", result["chosen"]))
    assert all(split == "train" for _, split in reads[:fitting])  # ranking never saw a test row
    joined = next(r for r in result["candidates"] if "+" in r["features"])
    assert joined["dims"] == 672 + 1280
    # one pass made both cuts: its cost is counted once for the pair
    assert joined["extraction_seconds"] == pytest.approx(max(r["extraction_seconds"] for r in result["candidates"]),
                                                         abs=0.1)
    assert Path(result["path"]).parent.name.startswith(f"sweep-logreg-{result['label']}-k3-")
    record = read_sealed(Path(result["path"]).parent / "sweep.json")
    assert record["chosen"] == result["chosen"] and record["code"]["source_sha256"]
    run = json.loads((cuts_store / "runs" / record["run"] / "record.json").read_text())
    assert run["features"] == result["chosen"] and run["test_accuracy"] == record["test_accuracy"]
    page = build_report(cuts_store, tmp_path / "report").read_text()
    assert "Feature-set sweeps" in page and f"★ {result['chosen']}" in page
    assert f"{100 * record['test_accuracy']:.2f}%" in page.split("Feature-set sweeps")[1]


def test_sweep_on_the_command_line_shows_the_ranking_and_the_test_figure_apart(cuts_store):
    result = run_cli("sweep", "--store", cuts_store, "--head", "logreg", "-k", "3", "--quiet",
                     "--features", "lite-last", "--features", "LITE-block6a_expand_activation+lite-last")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "| 1 |" in out and "| 2 |" in out and "| 3 |" not in out
    assert "test accuracy, scored once for the chosen set only" in out


def test_an_unknown_candidate_is_refused_before_any_fold(cuts_store, tmp_path):
    before = sorted(p.name for p in (cuts_store / "runs").glob("*")) if (cuts_store / "runs").exists() else []
    with pytest.raises(UserError, match="no feature set 'nosuch'"):
        sweep_module.sweep(cuts_store, "logreg", features=["lite-last", "lite-last+nosuch"], k=3, progress=False)
    after = sorted(p.name for p in (cuts_store / "runs").glob("*")) if (cuts_store / "runs").exists() else []
    assert after == before


def test_a_long_join_keeps_its_kfold_folder_within_a_file_names_length(cuts_store, monkeypatch):
    from cnncodes.classifiers.evaluation import kfold

    joined = "lite-block6a_expand_activation+lite-last"
    assert kfold.folder_name(joined) == joined  # short names keep the folders they always had
    long = kfold.folder_name("x" * 300)
    assert len(long) == 100 and long != kfold.folder_name("x" * 299)
    real = kfold.folder_name
    monkeypatch.setattr(kfold, "folder_name", lambda name: real(name, 20))  # as a join past 100 characters is
    table = kfold.kfold_scores(cuts_store, ["logreg"], k=3, features=joined, progress=False)
    assert Path(table["path"]).parent.name == f"kfold-{real(joined, 20)}-k3-train" and table["features"] == joined


def test_a_new_set_name_may_not_hold_the_join_sign(cuts_store):
    with pytest.raises(UserError, match=r"\+ joins feature sets"):
        extract_layers(cuts_store, FeatureConfig("efficientnet_lite0", "none", 32), [None], name="a+b", **quiet)


def test_exporting_a_join_with_a_damaged_part_is_one_line_naming_it(cuts_store, tmp_path):
    import shutil

    from test_store import flip_byte_in_chunk

    from cnncodes.features.errors import DamagedError
    from cnncodes.features.export import export_feature_set

    copy = tmp_path / "s"
    shutil.copytree(cuts_store, copy)
    flip_byte_in_chunk(copy / "features" / "lite-last.h5", "pooled")
    with pytest.raises(DamagedError, match="lite-last"):
        export_feature_set(copy, tmp_path / "codes.npz", "lite-block6a_expand_activation+lite-last")
    assert not list(tmp_path.glob("*.npz")) and not list(tmp_path.glob(".codes.npz*"))
