"""Files handed to people (features/outputs.py): cells a spreadsheet shows as text, names that are not UTF-8
escaped, outputs created exclusively and published together or not at all, what killed writers left removed."""
import csv
import subprocess
import sys
from pathlib import Path

import pytest

from cnncodes.features import outputs
from cnncodes.features.errors import UserError
from cnncodes.features.outputs import atomic_write, safe_cell, write_csv

EVIL = ['=HYPERLINK("http:evil","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\rx",
        "-inf", "+NaN"]  # no numbers to a spreadsheet: text


@pytest.mark.parametrize("cell", EVIL)
def test_cells_a_spreadsheet_would_evaluate_become_text(cell):
    assert safe_cell(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["-0.5", "+3", "1e-05", "-1.5E+3", "0.123", "cat", "a=b", ""])
def test_numbers_and_plain_text_stay_as_they_are(cell):
    assert safe_cell(cell) == cell


def test_numbers_stay_numbers_and_undecodable_names_are_escaped_as_ingest_does():
    assert safe_cell(3) == "3" and safe_cell(-0.25) == "-0.25" and safe_cell(None) == ""
    name = b"caf\xe9-=1.jpg".decode("utf-8", "surrogateescape")  # as Python lists such a file
    assert safe_cell(name) == "caf\\xe9-=1.jpg"
    assert safe_cell(b"=\xff".decode("utf-8", "surrogateescape")) == "'=\\xff"


def test_write_csv_round_trips_through_a_csv_reader(tmp_path):
    out = tmp_path / "t.csv"
    write_csv(out, ["name", "score"], [[EVIL[0], "-0.5"], [b"\xff.png".decode("utf-8", "surrogateescape"), 1]])
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert rows == [["name", "score"], ["'" + EVIL[0], "-0.5"], ["\\xff.png", "1"]]
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # nothing staged is left


def test_a_path_taken_while_the_output_was_staged_is_refused_and_left_as_it_was(tmp_path):
    out = tmp_path / "p.csv"
    with pytest.raises(UserError, match=r"^--out .*p.csv: it appeared while this command ran .* nothing written"):
        with atomic_write(out, exclusive=True) as (staged,):
            staged.write_text("mine")
            out.write_text("theirs")  # another command wrote it meanwhile
    assert out.read_text() == "theirs" and [p.name for p in tmp_path.iterdir()] == ["p.csv"]


def test_two_writers_of_one_path_one_wins_the_other_is_refused(tmp_path):
    out = tmp_path / "p.csv"
    with pytest.raises(UserError, match="it appeared while this command ran"):
        with atomic_write(out, exclusive=True) as (first,):  # both staged at once, under names of their own
            first.write_text("first")
            with atomic_write(out, exclusive=True) as (second,):
                second.write_text("second")
    assert out.read_text() == "second" and [p.name for p in tmp_path.iterdir()] == ["p.csv"]


def test_a_model_and_its_side_file_land_together_or_not_at_all(tmp_path):
    model, side = tmp_path / "m.tflite", tmp_path / "m.tflite.classes.json"
    with pytest.raises(UserError):
        with atomic_write(model, side, exclusive=True) as (staged, beside):
            staged.write_bytes(b"model")
            beside.write_text("classes")
            side.write_text("another run's classes")
    assert not model.exists() and side.read_text() == "another run's classes"
    side.unlink()
    with pytest.raises(UserError):
        with atomic_write(model, side, exclusive=True) as (staged, beside):
            staged.write_bytes(b"model")
            beside.write_text("classes")
            model.write_bytes(b"another run's model")
    assert not side.exists() and model.read_bytes() == b"another run's model"  # its side file was taken back
    model.unlink()
    with atomic_write(model, side, exclusive=True) as (staged, beside):
        staged.write_bytes(b"model")
        beside.write_text("classes")
    assert model.read_bytes() == b"model" and side.read_text() == "classes"


def test_a_folder_output_is_claimed_whole(tmp_path):
    out = tmp_path / "saved_model"
    with atomic_write(out, exclusive=True) as (staged,):
        staged.mkdir()
        (staged / "a.pb").write_text("graph")
    assert (out / "a.pb").read_text() == "graph"
    with pytest.raises(UserError, match="it appeared"):
        with atomic_write(tmp_path / "again", exclusive=True) as (staged,):
            staged.mkdir()
            (tmp_path / "again").mkdir()
            (tmp_path / "again" / "theirs").write_text("x")
    assert [p.name for p in (tmp_path / "again").iterdir()] == ["theirs"]


def test_an_error_while_staging_leaves_nothing(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with atomic_write(tmp_path / "p.csv", exclusive=True) as (staged,):
            staged.write_text("half")
            1 / 0
    assert list(tmp_path.iterdir()) == []


STAGE = "import sys; from pathlib import Path; from cnncodes.features.outputs import new_staging; " \
        "print(new_staging(Path(sys.argv[1])), flush=True); input()"


def staged_by_another_process(target):
    """A staging folder another writer made (its new_staging sweeps the folder first), and that writer."""
    writer = subprocess.Popen([sys.executable, "-c", STAGE, str(target)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    return Path(writer.stdout.readline().strip()), writer


def killed(writer):
    writer.kill()  # SIGKILL: its lock is let go, its folder stays
    writer.wait()


def test_what_a_killed_writer_left_is_removed_by_the_next_and_a_running_ones_is_not(tmp_path):
    """A SIGKILL runs no cleanup: its staging folder stays until the next write into that folder, whatever it
    writes there. A running writer's lock, not its process id, keeps its folder."""
    out = tmp_path / "codes.npz"
    (gone, a), (gone_other, b), (live, running), (moved, c) = [
        staged_by_another_process(target) for target in (out, tmp_path / "model.weights.h5", out, out)]
    for writer in (a, b, c):
        killed(writer)
    elsewhere = moved.rename(tmp_path / moved.name.replace(f".{outputs.HOST}.", ".another-host."))
    users = tmp_path / f".photos.{outputs.HOST}.4000.2024{outputs.STAGED}"  # a user's own, named alike
    users.mkdir()
    try:
        for leftover in (gone, gone_other, live, elsewhere, users):
            (leftover / out.name).write_bytes(b"half an export")
        with atomic_write(out, exclusive=True) as (staged,):
            staged.write_bytes(b"whole")
            mine = outputs.new_staging(tmp_path / "other")  # this process's own, while it writes: kept too
            outputs.remove_leftovers(tmp_path)
            assert mine.exists() and staged.exists()
        outputs.release(mine)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, elsewhere.name, users.name,
                                                                    "codes.npz"])
    finally:
        running.communicate("\n")


def test_a_publish_cut_short_by_a_kill_is_taken_back_by_the_next_write(tmp_path):
    """Killed after the side file was moved out, before the model: the next write takes the side file back."""
    model, side = tmp_path / "m.tflite", tmp_path / "m.tflite.classes.json"
    folder, writer = staged_by_another_process(model)
    killed(writer)
    (folder / model.name).write_bytes(b"model")
    (folder / outputs.PUBLISHING).write_bytes(b"\0".join([model.name.encode(), side.name.encode()]))
    side.write_text("classes")  # moved out (renamed: no longer in the staging folder)
    theirs = tmp_path / "theirs.txt"
    theirs.write_text("x")
    outputs.write_atomically(tmp_path / "later.txt", "y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["later.txt", "theirs.txt"]


@pytest.mark.parametrize("name, owner", [
    (f".a.b.c.npz.{outputs.HOST}.123.x_9{outputs.STAGED}", (outputs.HOST, 123)),  # dots in the target's name
    (f".x.h-1.7.q{outputs.STAGED}", ("h-1", 7)),
    (f".x.h.0.q{outputs.STAGED}", None), (f".x.h.{1 << 40}.q{outputs.STAGED}", None),  # no process has these
    (f".x.h.12{outputs.STAGED}", None), (f"x.h.12.q{outputs.STAGED}", None), (".x.h.12.q.tmp", None)])
def test_only_staging_folders_names_are_read_as_an_owner(name, owner):
    assert outputs.staging_owner(name) == owner


def test_a_replacing_write_keeps_the_old_file_until_it_succeeds_and_leaves_nothing_staged(tmp_path):
    path = tmp_path / "state.json"
    outputs.write_atomically(path, "old")
    with pytest.raises(ZeroDivisionError):
        with atomic_write(path) as (staged,):
            staged.write_text("half")
            1 / 0
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["state.json"]
    outputs.write_atomically(path, b"new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["state.json"]


@pytest.mark.parametrize("name", ["n" * 250, "猫" * 84])  # 250 and 252 bytes: the most a name may hold
def test_a_long_name_is_staged_under_a_legal_name(tmp_path, name):
    path = tmp_path / name
    outputs.write_atomically(path, "x")
    write_csv(tmp_path / (name[:-4] + ".csv"), ["a"], [[1]])  # a user's --out, published exclusively
    assert path.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == sorted([name, name[:-4] + ".csv"])


def test_check_new_output_refuses_what_exists_or_cannot_be_written_in_one_line(tmp_path):
    (tmp_path / "taken.csv").write_text("x")
    (tmp_path / "link.csv").symlink_to(tmp_path / "nowhere")
    for out, says in ((tmp_path / "taken.csv", "it already exists"), (tmp_path / "link.csv", "it already exists"),
                      (tmp_path / "no" / "p.csv", "its folder does not exist"),
                      (tmp_path.parent / "/proc/p.csv", "its folder cannot be written")):
        with pytest.raises(UserError, match=says):
            outputs.check_new_output(out)


def test_writers_in_one_folder_at_once_never_touch_each_others_staging(tmp_path):
    """The extractor commits chunks from several threads into one folder: each write flushes its own staged
    file and the folder's names, never what another write has staged meanwhile."""
    from concurrent.futures import ThreadPoolExecutor

    def write(i):
        for j in range(30):
            outputs.write_atomically(tmp_path / f"chunk-{i}-{j}.npy", bytes(1000) + bytes([i, j]))

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(write, range(6)))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"chunk-{i}-{j}.npy" for i in range(6)
                                                                for j in range(30))
    assert (tmp_path / "chunk-5-29.npy").read_bytes()[-2:] == bytes([5, 29])
