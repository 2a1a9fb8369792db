"""The command line as a newcomer meets it: quiet, fast where there is nothing to do, consistent."""
import os
import re
import shutil
import subprocess
import sys

import h5py
import pytest

from attacks_inputs import INPUTS_ATTACKS
from cnncodes.features.errors import UserError
from cnncodes.features.store import FeatureStore
from conftest import ROOT, run_cli, run_process
from hostile import CONTROL, run_attack

BACKEND_NOISE = ("oneDNN", "absl::InitializeLog", "cpu_feature_guard", "rebuild TensorFlow", "WARNING:tensorflow")


@pytest.fixture
def store(digits_store, tmp_path):
    return shutil.copytree(digits_store, tmp_path / "store")


def loads_backend(*args, cwd=None) -> tuple[int, bool, str]:
    """Runs `cnncodes ARGS` in a fresh interpreter: (exit code, whether Keras or TensorFlow was imported, output)."""
    probe = ("import sys\nfrom click.testing import CliRunner\nfrom cnncodes.cli import cli\n"
             "r = CliRunner().invoke(cli, sys.argv[1:])\n"
             "print(r.output)\nprint('BACKEND', 'keras' in sys.modules or 'tensorflow' in sys.modules, r.exit_code)")
    out = subprocess.run([sys.executable, "-c", probe, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                         env={**os.environ})
    last = out.stdout.strip().splitlines()[-1].split()
    return int(last[2]), last[1] == "True", out.stdout + out.stderr  # errors go to the console's stderr


def test_commands_with_nothing_to_do_never_load_the_backend(store, resnet_weights):
    code, backend, _ = loads_backend("info", "--store", store)
    assert code == 0 and not backend
    code, backend, output = loads_backend("features", "--dataset", "digits", "--store", store, "--weights",
                                          resnet_weights, "--size", 32, "--name", "r50", "--quiet")
    assert code == 0 and "cached" in output and not backend
    for args in (["fit", "--store", store, "--head", "svm", "--epochs", 0],
                 ["features", "--dataset", "digits", "--size", 0],
                 ["kfold", "--store", store, "--head", "nosuch"]):
        code, backend, _ = loads_backend(*args)
        assert code == 2 and not backend, args


def test_names_in_any_case_and_path_mistakes_are_answered_before_the_backend_starts(store, resnet_weights, tmp_path):
    code, backend, output = loads_backend("features", "--dataset", "DIGITS", "--store", store, "--weights",
                                          resnet_weights, "--size", 32, "--name", "r50", "--quiet")
    assert code == 0 and "cached" in output and not backend  # DIGITS is digits: the same store, reused
    for args, says in (
            (["features", "--dataset", "digits", "--weights", tmp_path / "missing.h5", "--store", tmp_path / "new"],
             "--weights .*missing.h5: no such file; give imagenet, none or the path"),
            (["features", "--dataset", "Folder:" + str(tmp_path / "nowhere"), "--store", tmp_path / "new"],
             "nowhere does not exist"),
            (["baseline", "finetune", "--store", store, "--weights", tmp_path / "missing.h5"],
             r"weights .*missing\.h5"),
            (["features", "--dataset", "digits", "--backbone", "resnet50", "--size", 8, "--store", tmp_path / "new"],
             "--size 8 is too small for resnet50, which takes at least 32x32 px"),  # was Keras's traceback
            (["info", store, "--store", tmp_path], "two stores given"),
            (["report", "--store", store, "--out", resnet_weights], "is a file; give a folder"),
            (["export", "--store", store, "--out", tmp_path / "no" / "codes.npz"],
             "no/codes.npz: its folder does not exist")):
        code, backend, output = loads_backend(*args)
        assert code == 1 and not backend and re.search(says, output), (args, output)
    assert not (tmp_path / "new").exists()  # a failed first ingest leaves no half-made store


def test_weights_named_in_any_case_are_the_words_for_python_callers_and_kfold_too():
    from cnncodes.classifiers.training.baseline_config import BaselineConfig
    from cnncodes.pipeline.extraction.extract import FeatureConfig

    assert BaselineConfig("finetune", weights="NONE").weights == "none"  # kfold --param finetune.weights=NONE
    assert FeatureConfig(weights="ImageNet").weights == "imagenet"
    assert FeatureConfig(weights="/w/NONE.h5").weights == "/w/NONE.h5"  # a file keeps its name


def test_a_failed_first_ingest_leaves_nothing_behind(tmp_path):
    tree = tmp_path / "tree"
    (tree / "ant").mkdir(parents=True)  # a class folder without images
    result = run_cli("features", "--dataset", f"folder:{tree}", "--store", tmp_path / "store")
    assert result.returncode == 1 and "class folder 'ant'" in result.stderr and not (tmp_path / "store").exists()
    nested = run_cli("features", "--dataset", f"folder:{tree}", "--store", tmp_path / "new" / "stores" / "s")
    assert nested.returncode == 1 and not (tmp_path / "new").exists()  # nor the parents it made
    kept = tmp_path / "mine"
    kept.mkdir()
    (kept / "notes.txt").write_text("the user's")  # a folder that was there before is never removed
    assert run_cli("features", "--dataset", f"folder:{tree}", "--store", kept).returncode == 1
    assert (kept / "notes.txt").read_text() == "the user's"


def test_an_unreachable_scheduler_is_one_line_and_found_before_ingest(tmp_path):
    """In a fresh process, as the CLI meets it: Dask's event loop does not recover from a failed client in
    a process that has run other clients (the test session). Malformed addresses are rows of the hostile
    table (tests/attacks_inputs.py): they are answered without connecting."""
    probe = ("import sys\nfrom cnncodes.pipeline.extraction import cluster\ncluster.CONNECT_SECONDS = 1\n"
             "from cnncodes.cli import cli\ncli()\n")
    store = tmp_path / "new"
    out = subprocess.run([sys.executable, "-c", probe, "features", "--dataset", "digits", "--store", store,
                          "--scheduler", "tcp://127.0.0.1:1", "--quiet"], capture_output=True, text=True)
    assert out.returncode == 1 and re.fullmatch("error: --scheduler tcp://127.0.0.1:1: no Dask scheduler answers "
                                                "there .*dask scheduler.*\n", out.stderr), out.stderr
    assert not store.exists()  # it was left with a data file, found only when the extraction started


NEW_STORE_ATTACKS = [a for a in INPUTS_ATTACKS if "{tmp}/new" in a.args]


@pytest.mark.parametrize("attack", NEW_STORE_ATTACKS, ids=str)
def test_a_refused_first_features_run_leaves_no_store(attack, store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_attack(attack, store, tmp_path, monkeypatch)
    assert not (tmp_path / "new").exists()


def test_features_checks_the_weights_and_scheduler_before_it_writes_a_data_file(store, resnet_weights, monkeypatch):
    """Only then: a store with its data reuses it, and a cached set answers without the backend (see above)."""
    from click.testing import CliRunner

    from cnncodes.cli import cli
    from cnncodes.pipeline import backbones
    from cnncodes.pipeline.extraction import cluster
    from cnncodes.pipeline.sources import ingest

    checked, calls = [], []
    monkeypatch.setattr(backbones, "check_backbone", lambda *a: checked.append(("weights", a)))
    monkeypatch.setattr(cluster, "check_scheduler", lambda a: checked.append(("scheduler", a)))

    def refused(*args, **kwargs):
        calls.append(kwargs)
        raise UserError("stop here")

    monkeypatch.setattr(ingest, "ingest", refused)
    args = ["features", "--dataset", "digits", "--weights", str(resnet_weights), "--scheduler", "tcp://10.0.0.5:8786",
            "--quiet", "--store"]
    assert CliRunner().invoke(cli, [*args, str(store)]).exit_code == 1
    assert checked == [] and calls[-1]["reingest"] is False
    assert CliRunner().invoke(cli, [*args, str(store), "--reingest"]).exit_code == 1  # a data file is written again
    assert checked == [("scheduler", "tcp://10.0.0.5:8786"), ("weights", ("resnet50", str(resnet_weights), None))]
    assert calls[-1]["reingest"] is True


def test_reading_commands_never_load_the_backend(store, tmp_path):
    """report, runs and export read what is stored: answering them never starts TensorFlow."""
    from cnncodes.classifiers.evaluation.fit import fit_head

    fit_head(store, "logreg", params={"Cs": [1.0]})
    for args, says in ((["report", "--store", store, "--out", tmp_path / "report"], "report written to "),
                       (["runs", "--store", store], "logreg"),
                       (["export", "--store", store, "--out", tmp_path / "codes.npz"], "exported to ")):
        code, backend, output = loads_backend(*args)
        assert code == 0 and not backend and says in output, (args, output)
    assert list((tmp_path / "report").glob("*.html")) and (tmp_path / "codes.npz").exists()


@pytest.mark.slow
def test_no_backend_start_up_lines_on_the_console(store):
    for args in (["layers", "efficientnet_lite0", "--size", 32],
                 ["fit", "--store", store, "--head", "logreg", "--param", "Cs=[1.0]", "--quiet"],
                 # a network per fold: TensorFlow's Python logger warned of tf.function retracing
                 ["kfold", "--store", store, "--head", "dense", "-k", 3, "--epochs", 1, "--param", "hidden=8",
                  "--quiet"]):
        result = run_process(*args)
        assert result.returncode == 0, result.stderr
        assert not [line for line in result.stderr.splitlines() if any(n in line for n in BACKEND_NOISE)], result.stderr


def test_the_filter_covers_child_processes_and_passes_everything_else():
    """Dask workers write to the descriptor they inherit: their lines go through the same filter."""
    child = ("import os\nos.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to "
             "STDERR\\nI0000 00:00:1795534654.618488   29958 port.cc:153] oneDNN custom operations are on.\\n"
             "a real error\\n')")
    parent = ("import subprocess, sys\nfrom cnncodes.pipeline.console import filter_native_stderr\n"
              "filter_native_stderr()\nsubprocess.run([sys.executable, '-c', sys.argv[1]])\n"
              "print('python stderr', file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", parent, child], capture_output=True, text=True)
    # the order of the two is the filter thread's timing, not a property: under load it forwards later
    assert sorted(result.stderr.splitlines()) == ["a real error", "python stderr"]


def test_keras_progress_in_a_log_file_is_plain_lines(store):
    result = run_cli("fit", "--store", store, "--head", "dense", "--epochs", 2)
    assert result.returncode == 0, result.stderr
    assert "Epoch 1/2" in result.stdout + result.stderr
    for text in (result.stdout, result.stderr):
        assert "\x1b" not in text and "\r" not in text and "\b" not in text
    assert "saved to " in result.stdout and "validation" in result.stdout


def test_progress_in_a_log_is_a_line_now_and_then_and_one_at_the_end(capsys):
    from cnncodes.pipeline.console import LogProgress

    with LogProgress(total=4, desc="ingest", unit="img", every=3600) as bar:
        bar.update(4)
        bar.close()  # `with` closes it again: still one line
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("ingest: 100%") and "4/4" in line
    lines = []
    for every in (3600, 0):
        assert list(LogProgress(range(3), desc="kfold", unit="fold", every=every)) == [0, 1, 2]
        lines.append(capsys.readouterr().err)
    assert len(lines[0].splitlines()) == 1 and "3/3" in lines[0]
    assert len(lines[1].splitlines()) == 4 and "1/3" in lines[1] and "\r" not in lines[1]  # each update, then the end


def test_every_option_is_documented_and_choices_ignore_case():
    from cnncodes.cli import cli

    for name, command in cli.commands.items():
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert param.help, f"{name} {param.opts} has no help"
    result = run_cli("fit", "--store", "nowhere", "--head", "SVM")
    assert "no store at nowhere" in result.stderr  # SVM was accepted as svm; the store is what is missing


def test_the_store_can_come_from_the_environment(store):
    result = run_cli("info", env={"CNNCODES_STORE": str(store)})
    assert result.returncode == 0 and f"store     {store}" in result.stdout
    assert run_cli("info", "--store", store).stdout == result.stdout == run_cli("info", store).stdout
    given = run_cli("info", store, env={"CNNCODES_STORE": "/elsewhere"})  # the argument wins over the environment
    assert given.returncode == 0 and given.stdout == result.stdout


@pytest.mark.slow
def test_predict_labels_an_svms_decision_scores_and_its_calibrated_probabilities(store, tmp_path):
    import cv2

    from cnncodes.classifiers.evaluation.fit import fit_head

    run, _ = fit_head(store, "svm", params={"Cs": [1.0]})
    image = tmp_path / "digit.png"
    cv2.imwrite(str(image), FeatureStore.open(store).images(split="test")[0])
    result = run_cli("predict", "--model", run, "--top", 3, image)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "top 3 classes by decision score (margins, not probabilities)"
    fit_run, _ = fit_head(store, "svm", params={"Cs": [1.0], "probability": True})  # calibrated: probabilities
    assert run_cli("predict", "--model", fit_run, image).stdout.startswith("top 5 classes by probability")
    missing = run_cli("predict", "--model", fit_run, tmp_path / "missing.png")  # listed, with the exit status
    assert missing.returncode == 1 and "missing.png: cannot be used: not found" in missing.stdout


def test_an_in_memory_data_set_shows_no_images_per_second(tmp_path, capsys):
    from cnncodes.pipeline.sources.ingest import IngestConfig, ingest

    ingest(tmp_path / "d", IngestConfig("digits", limit=30), progress=True, log=lambda m: None)
    err = capsys.readouterr().err
    assert "ingest digits" in err and "img/s" not in err and "it/s" not in err


def test_a_store_from_a_newer_cnncodes_is_refused(store):
    with h5py.File(store / "data.h5", "r+") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(UserError, match="written by a newer cnncodes .*upgrade cnncodes"):
        FeatureStore.open(store)


def test_a_plain_install_is_one_cnncodes_package(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True)
    names = {p.name for p in target.iterdir()}
    assert "cnncodes" in names and not names & {"features", "pipeline", "classifiers", "cli.py", "cli"}
    probe = ("import cnncodes, cnncodes.cli, cnncodes.features.store, cnncodes.pipeline.backbones; "
             "print(cnncodes.__file__)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(target)})
    assert out.returncode == 0 and out.stdout.strip() == str(target / "cnncodes" / "__init__.py"), out.stderr
    help_text = subprocess.run([sys.executable, "-m", "cnncodes", "--help"], capture_output=True, text=True,
                               cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(target)})
    assert help_text.stdout.startswith("Usage: cnncodes")


def test_predict_works_for_a_head_fitted_on_spatial_maps(tmp_path, resnet_weights):
    import cv2

    from cnncodes.classifiers.evaluation.fit import fit_head
    from cnncodes.classifiers.serving.predict import predict_images
    from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features
    from cnncodes.pipeline.sources.ingest import IngestConfig, ingest

    store = ingest(tmp_path / "s", IngestConfig("digits", limit=30), progress=False, log=lambda m: None).path
    extract_features(store, FeatureConfig(weights=str(resnet_weights), size=64, spatial=True), name="maps",
                     progress=False, log=lambda m: None)
    run, record = fit_head(store, "gap", features="maps", spatial=True, params={"epochs": 2})
    assert record["spatial"] is True
    image = tmp_path / "digit.png"
    cv2.imwrite(str(image), FeatureStore.open(store).images(split="test")[0])
    (best,) = predict_images(run, [image], top=3)
    assert len(best) == 3 and best[0][0] == record["class_names"][record["test_predictions"][0]]


ESC = "\x1b]0;pwned\x07\x1b[2J"  # sets the window title, then clears the screen


def test_names_from_data_reach_the_terminal_escaped(tmp_path, monkeypatch):
    """Class folders, the tree's own name and image paths can hold ESC sequences; features, info and
    predict show them as visible escapes."""
    from click.testing import CliRunner

    from cnncodes.classifiers.serving import predict
    from cnncodes.cli import cli
    from cnncodes.pipeline.extraction import extract
    from conftest import write_mixed_tree

    tree = write_mixed_tree(tmp_path / f"{ESC}pets", classes=(f"{ESC}cat", "dog"), per_class=2)
    result = extract.ExtractResult(f"{ESC}codes", "cached", 8, 0.0, 0.0, tmp_path / "s" / f"{ESC}codes.h5")
    monkeypatch.setattr(extract, "extract_layers", lambda *a, **k: [result])
    runner = CliRunner()
    said = runner.invoke(cli, ["features", "--dataset", f"folder:{tree}", "--store", str(tmp_path / "s"), "--quiet"])
    shown = runner.invoke(cli, ["info", "--store", str(tmp_path / "s")])
    image = tmp_path / f"{ESC}.png"
    image.write_bytes(b"")
    monkeypatch.setattr(predict, "predict_files", lambda run, paths, **k: (
        "probability", [predict.Prediction(paths[0], [(f"{ESC}cat", 0.9)])]))
    predicted = runner.invoke(cli, ["predict", "--model", str(tmp_path), str(image), "--quiet"])
    for result in (said, shown, predicted):
        assert result.exit_code == 0 and not CONTROL.search(result.output), result.output
    assert "\\x1b]0;pwned\\x07\\x1b[2Jpets" in said.stderr + shown.output  # the source named in the ingest log
    assert "\\x1b]0;pwned\\x07\\x1b[2Jcodes" in said.stdout
    assert "\\x1b]0;pwned\\x07\\x1b[2Jcat 0.900" in predicted.output


def test_a_changed_source_is_ingested_again_with_reingest(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from cnncodes.cli import cli
    from cnncodes.pipeline.extraction import extract
    from conftest import write_mixed_tree

    tree = write_mixed_tree(tmp_path / "pets", classes=("cat", "dog"), per_class=2)
    monkeypatch.setattr(extract, "extract_layers", lambda *a, **k: [extract.ExtractResult(
        "codes", "cached", 0, 0.0, 0.0, tmp_path / "codes.h5")])  # the ingest is what is tested here
    args = ["features", "--dataset", f"folder:{tree}", "--store", str(tmp_path / "s"), "--image-size", "16", "--quiet"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    (tree / "train" / "cat" / "000.jpg").rename(tree / "train" / "dog" / "100.jpg")  # a cat was a dog
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1 and "--reingest" in refused.stderr
    again = CliRunner().invoke(cli, [*args, "--reingest"])
    assert again.exit_code == 0, again.output
    assert "train/dog/100.jpg" in FeatureStore.open(tmp_path / "s").sources().tolist()


def test_help_and_argument_errors_of_every_command_load_nothing_heavy():
    """In a fresh interpreter: `--help`, every command's help and an argument error of each import none of the
    backend, scikit-learn, h5py or dask (each command's module is loaded only when it runs)."""
    probe = ("import sys\nfrom click.testing import CliRunner\nfrom cnncodes.cli import COMMANDS, cli\n"
             "codes = [CliRunner().invoke(cli, args).exit_code for args in [['--help']] + [[c, '--help'] for c in "
             "COMMANDS] + [[c, '--no-such-option'] for c in COMMANDS]]\n"
             "heavy = sorted(m for m in ('tensorflow', 'keras', 'sklearn', 'h5py', 'dask', 'torch', 'jax') "
             "if m in sys.modules)\nprint(len(COMMANDS), sorted(set(codes)), heavy)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.split("\n")[0] == "15 [0, 2] []", out.stdout + out.stderr
