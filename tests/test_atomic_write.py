"""Every kind of output cnncodes writes, its writer SIGKILLed midway: while its content is flushed, just before
it is moved into place (the old output is there, whole) and just after (the new one is), never a partial one; a
publish of several outputs cut short is taken back; what the killed writer staged is gone after the next write
into that folder. The child pauses inside its real writer, at the first fsync of the output's staged content or
at the call that moves it into place, and is killed there; the child also checks that every file it moves was
flushed first."""
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from cnncodes.features import outputs
from cnncodes.features.store import FeatureStore
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest
from conftest import ROOT

POINTS = ["staged", "before-move", "after-move"]
# Runs in the child before the writer: it pauses (and says where in MARKER) at POINT of the write whose staging
# folder is named for PREFIX, and exits with 3 if that write moves anything it has not flushed.
PAUSE = """
import os, sys, time
from pathlib import Path
from cnncodes.features import outputs
POINT, MARKER, PREFIX = sys.argv[1], sys.argv[2], sys.argv[3]
fsync, synced = os.fsync, set()

def ours(folder):
    return outputs.staging_owner(folder.name) and folder.name.startswith("." + PREFIX)

def pause(where):
    Path(MARKER).write_text(where)
    time.sleep(600)

def pausing_fsync(fd):
    fsync(fd)
    path = os.readlink(f"/proc/self/fd/{fd}")
    synced.add(path)
    if POINT == "staged" and any(ours(p) for p in Path(path).parents):
        pause(path)

def moving(move):
    def wrapper(source, target, *args):
        source = Path(source)
        if not ours(source.parent):
            return move(source, target, *args)
        every = [source, *source.rglob("*")] if source.is_dir() else [source]
        if left := [str(p) for p in every if str(p) not in synced]:
            Path(MARKER).write_text("moved before it was flushed: " + " ".join(left))
            os._exit(3)
        if POINT == "before-move":
            pause(str(source))
        done = move(source, target, *args)
        if POINT == "after-move" and done is not False:  # rename_noreplace says False when it cannot
            pause(str(target))
        return done
    return wrapper

os.fsync = pausing_fsync
os.replace, os.rename, os.link = moving(os.replace), moving(os.rename), moving(os.link)
outputs.rename_noreplace = moving(outputs.rename_noreplace)
"""


def kill_at(point: str, prefix: str, code: str, tmp_path: Path):
    """Runs `code` in a new process and SIGKILLs it at `point` of the write whose target name starts with
    `prefix`."""
    marker = tmp_path / f"paused-{time.monotonic_ns()}"
    child = subprocess.Popen([sys.executable, "-c", PAUSE + textwrap.dedent(code), point, str(marker), prefix],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not marker.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    _, err = child.communicate()
    assert marker.exists(), f"the writer never reached {point}: {err.decode()[-2000:]}"
    assert not marker.read_text().startswith("moved before"), marker.read_text()


def staged_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*") if outputs.staging_owner(p.name)]


def write_nearby(folder: Path):
    """Any later write into the folder: it removes what killed writers staged there."""
    outputs.write_atomically(folder / "later.txt", "x")
    (folder / "later.txt").unlink()


# -- the kinds of output: (name prefix, the child's write of VALUE to TARGET, how to read what TARGET holds) ---
def read_sealed_value(target: Path):
    from cnncodes.features.sealed import read_sealed

    return read_sealed(target)["value"] if target.exists() else None


def read_text_value(target: Path):
    if not target.exists():
        return None
    lines = set(target.read_text().splitlines())
    assert len(lines) == 1, "a mix of two writes"
    return int(lines.pop().split()[1])


def read_csv_value(target: Path):
    import csv

    if not target.exists():
        return None
    rows = list(csv.reader(target.open()))
    assert rows[0] == ["value"] and len(rows) == 2001 and len({r[0] for r in rows[1:]}) == 1
    return int(rows[1][0])


def read_model_and_side(target: Path):
    side = target.with_name(target.name + ".classes.json")
    assert target.exists() == side.exists(), "a model without its side file, or the other way round"
    if not target.exists():
        return None
    value = int(target.read_bytes()[:8])
    assert json.loads(side.read_text())["v"] == value, "a model with another write's side file"
    return value


def read_folder_value(target: Path):
    return int((target / "saved_model.pb").read_text()) if target.exists() else None


def read_npz_value(target: Path):
    return int(np.load(target)["value"].mean()) if target.exists() else None


FILES = {
    "sealed JSON (records, states, manifests)": (
        "state.json", "from cnncodes.features.sealed import write_sealed\n"
                      "write_sealed(TARGET, {'value': VALUE, 'pad': 'x' * 100000})", read_sealed_value),
    "text (tables, the report page)": (
        "table.md", "from cnncodes.features.outputs import write_atomically\n"
                    "write_atomically(TARGET, f'value {VALUE}\\n' * 20000)", read_text_value),
    "a CSV in the store": (
        "audit.csv", "from cnncodes.features.outputs import write_csv\n"
                     "write_csv(TARGET, ['value'], [[VALUE]] * 2000, exclusive=False)", read_csv_value),
    "a checkpoint (.npz)": (
        "checkpoint-3.npz", "import numpy as np\nfrom cnncodes.features.outputs import atomic_write\n"
                            "with atomic_write(TARGET) as (tmp,):\n"
                            "    np.savez(tmp, value=np.full(100000, VALUE))", read_npz_value),
}
NEW_OUTPUTS = {  # a user's --out: nothing there before
    "--out CSV": ("p.csv", "from cnncodes.features.outputs import write_csv\n"
                           "write_csv(TARGET, ['value'], [[VALUE]] * 2000)", read_csv_value),
    "a model and its side file": (
        "m.tflite", "import json\nfrom cnncodes.features.outputs import atomic_write\n"
                    "with atomic_write(TARGET, TARGET.with_name(TARGET.name + '.classes.json'), exclusive=True) "
                    "as (m, side):\n    m.write_bytes(b'%08d' % VALUE + bytes(100000))\n"
                    "    side.write_text(json.dumps({'v': VALUE}))", read_model_and_side),
    "a folder (SavedModel)": (
        "saved_model", "from cnncodes.features.outputs import atomic_write\n"
                       "with atomic_write(TARGET, exclusive=True) as (tmp,):\n    tmp.mkdir()\n"
                       "    (tmp / 'saved_model.pb').write_text(str(VALUE))\n"
                       "    (tmp / 'variables.data').write_bytes(bytes(100000))", read_folder_value),
}


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("kind", list(FILES) + list(NEW_OUTPUTS))
def test_a_killed_writer_leaves_the_old_output_or_the_new_never_part_of_one(kind, point, tmp_path):
    name, code, read = {**FILES, **NEW_OUTPUTS}[kind]
    target = tmp_path / "out" / name
    target.parent.mkdir()

    def script(value):
        return f"from pathlib import Path\nTARGET, VALUE = Path({str(target)!r}), {value}\n{code}\n"

    if kind in FILES:
        exec(script(1), {})  # the old output, written whole
        assert read(target) == 1
    kill_at(point, name, script(2), tmp_path)
    old = 1 if kind in FILES else None
    cut_short = kind == "a model and its side file" and point == "after-move"  # its side file out, the model not
    expected = old if point != "after-move" or cut_short else 2
    if not cut_short:
        assert read(target) == expected
    assert staged_leftovers(target.parent), "the writer was killed before it staged anything"
    write_nearby(target.parent)
    assert read(target) == expected and not staged_leftovers(target.parent)


# -- the store's own files: data.h5, a feature set's chunks and .h5, fold assignments, a fit's run folder ------
@pytest.fixture
def store(tmp_path) -> Path:
    path = tmp_path / "s"
    ingest(path, IngestConfig("digits", limit=20, seed=1), progress=False, log=lambda m: None)
    return path


def images_of(store: Path) -> np.ndarray:
    with h5py.File(store / "data.h5", "r") as f:
        return f["images"][:]


@pytest.mark.parametrize("point", POINTS)
def test_a_killed_ingest_leaves_the_old_data_file_or_the_new(store, point, tmp_path):
    old = images_of(store)
    kill_at(point, "data.h5", f"""
        from cnncodes.pipeline.sources.ingest import IngestConfig, ingest
        ingest({str(store)!r}, IngestConfig("digits", limit=20, seed=2), reingest=True, progress=False,
               log=lambda m: None)
        """, tmp_path)
    FeatureStore.open(store)  # opens: whole, checksums sound
    assert np.array_equal(images_of(store), old) == (point != "after-move")
    write_nearby(store)
    assert not staged_leftovers(store)


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("what", ["chunk", "set"])
def test_a_killed_feature_writer_leaves_a_chunk_or_set_whole_or_absent(store, what, point, tmp_path):
    from cnncodes.features.writers import FeatureSetWriter

    writer = FeatureSetWriter(store, "f", "fp", {}, 40, 8, None, chunk_size=40)
    pooled = np.arange(320, dtype=np.float32).reshape(40, 8)
    if what == "set":
        writer.commit(0, pooled, None)
    kill_at(point, "pooled-" if what == "chunk" else "f.h5", f"""
        import numpy as np
        from cnncodes.features.writers import FeatureSetWriter
        writer = FeatureSetWriter.existing({str(store)!r}, "f", "fp")
        {"writer.commit(0, np.arange(320, dtype=np.float32).reshape(40, 8), None)" if what == "chunk" else
         "writer.assemble({})"}
        """, tmp_path)
    features = store / "features"
    folder = features / "f.parts" if what == "chunk" else features
    if what == "chunk":
        assert writer.committed() == ({} if point != "after-move" else {0: 40})
        assert not writer.drop_damaged_chunks(log=lambda m: None)  # what is there reads back whole
    else:
        done = (features / "f.h5").exists()
        assert done == (point == "after-move")
        if done:
            np.testing.assert_array_equal(FeatureStore.open(store).features("f"), pooled)
    write_nearby(folder)
    assert not staged_leftovers(folder)


@pytest.mark.parametrize("point", POINTS)
def test_a_killed_export_leaves_no_file_or_a_whole_one(store, point, tmp_path):
    """`cnncodes export`'s own writer, its codes streamed into the staged .npz."""
    from cnncodes.features.writers import FeatureSetWriter

    writer = FeatureSetWriter(store, "f", "fp", {}, 40, 8, None, chunk_size=40)
    writer.commit(0, np.arange(320, dtype=np.float32).reshape(40, 8), None)
    writer.assemble({})
    out = tmp_path / "codes.npz"
    kill_at(point, "codes.npz", f"""
        from cnncodes.features.export import export_feature_set
        export_feature_set({str(store)!r}, {str(out)!r}, "f")
        """, tmp_path)
    if point == "after-move":
        with np.load(out, allow_pickle=False) as codes:
            assert codes["codes"].shape == (40, 8) and len(codes["split"]) == 40  # every member reads whole
    else:
        assert not out.exists()
    write_nearby(tmp_path)
    assert not staged_leftovers(tmp_path)


@pytest.mark.parametrize("point", POINTS)
def test_a_killed_fold_writer_leaves_the_old_assignment_or_the_new(store, point, tmp_path):
    from cnncodes.features import schema
    from cnncodes.features.folds import fold_assignment, read_kept_folds

    s = FeatureStore.open(store)
    old = fold_assignment(s, "train", 2)
    new = np.where(old >= 0, 1 - old, old)
    kill_at(point, "train-k2", f"""
        import numpy as np
        from cnncodes.features.folds import save_folds
        from cnncodes.features.store import FeatureStore
        save_folds(FeatureStore.open({str(store)!r}), "train", 2, np.asarray({new.tolist()!r}))
        """, tmp_path)
    kept = [read_kept_folds(s, path, 2) for path in schema.fold_files(store)[("train", 2)]]  # each one whole
    assert [a.tolist() for a in kept] == ([old.tolist()] if point != "after-move" else
                                          sorted([old.tolist(), new.tolist()], key=lambda a: a != kept[0].tolist()))
    folder = store / schema.FOLDS_DIR
    write_nearby(folder)
    assert not staged_leftovers(folder)


@pytest.mark.parametrize("point", POINTS)
def test_a_killed_fit_leaves_no_run_or_a_whole_one(store, point, tmp_path):
    from cnncodes.classifiers.runs.records import all_runs, damaged_runs

    kill_at(point, "2", f"""
        import numpy as np
        from cnncodes.classifiers.runs.records import classification_record, new_run_dir, save_run
        run = new_run_dir({str(store)!r}, "fit", "logreg", "class")
        y = np.arange(6) % 3
        save_run(run, {{"kind": "fit", "head": "logreg", "label": "class", "features": "codes", "params": {{}},
                       "feature_config": {{"weights": "none"}}, "image_shape": [8, 8, 3],
                       "class_names": ["a", "b", "c"], **classification_record(y, y, 3)}})
        """, tmp_path)
    runs = store / "runs"
    assert len(all_runs(store)) == (0 if point != "after-move" else 1) and not damaged_runs(store)
    write_nearby(runs)
    assert not staged_leftovers(runs)


KERAS_MODEL = """
import keras
def tiny(value):
    dense = keras.layers.Dense(3, kernel_initializer=keras.initializers.Constant(value))
    model = keras.Sequential([keras.Input((4,)), dense])
    model.compile(optimizer="sgd", loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model
"""


def kernel_value(model) -> int:
    return int(round(float(model.weights[0].numpy()[0, 0])))


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("what", ["weights", "checkpoint"])
def test_a_killed_keras_writer_leaves_weights_and_checkpoints_that_belong_together(what, point, tmp_path):
    """A baseline's model.weights.h5 (Keras writes it in place) and its per-epoch checkpoint with state.json."""
    from cnncodes.classifiers.baselines.train import save_weights_atomically
    from cnncodes.classifiers.training.checkpoint import Checkpoint

    namespace = {}
    exec(textwrap.dedent(KERAS_MODEL), namespace)
    folder, weights = tmp_path / "run", tmp_path / "run" / "model.weights.h5"
    folder.mkdir()
    write = {"weights": f"save_weights_atomically(tiny(VALUE), Path({str(weights)!r}))",
             "checkpoint": f"Checkpoint(Path({str(folder)!r})).save(tiny(VALUE), {{'epoch': VALUE}})"}[what]
    save_weights_atomically(namespace["tiny"](1), weights) if what == "weights" else \
        Checkpoint(folder).save(namespace["tiny"](1), {"epoch": 1})
    kill_at(point, "model.weights.h5" if what == "weights" else "checkpoint-", textwrap.dedent(KERAS_MODEL) + f"""
from pathlib import Path
from cnncodes.classifiers.baselines.train import save_weights_atomically
from cnncodes.classifiers.training.checkpoint import Checkpoint
VALUE = 2
{write}
""", tmp_path)
    model = namespace["tiny"](0)
    if what == "weights":
        model.load_weights(weights)
        assert kernel_value(model) == (1 if point != "after-move" else 2)
    else:  # state.json is replaced after the new checkpoint is in: the state still names the old one, whole
        checkpoint = Checkpoint(folder)
        checkpoint.restore(model)
        assert checkpoint.state()["epoch"] == 1 == kernel_value(model)
    write_nearby(folder)
    assert not staged_leftovers(folder)


def test_every_rename_in_the_code_is_the_atomic_writes_own():
    """A writer that renames files itself bypasses the flush and the cleanup: only outputs.py renames."""
    root = Path(outputs.__file__).resolve().parents[1]
    calls = ("os.replace(", "os.rename(", "os.link(", ".rename(", "shutil.move(")
    renaming = [str(p.relative_to(root)) for p in root.rglob("*.py")
                if not {"tests", "bench", "build", ".venv"} & set(p.relative_to(root).parts)
                and any(call in p.read_text() for call in calls)]
    assert renaming == ["features/outputs.py"]
