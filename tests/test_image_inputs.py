"""What IMAGE arguments name (classifiers/image_inputs.py): one input per image found and one, with its reason, per
thing that gave none; no folder walked twice, however links lead; no glob that loops."""
import os
from pathlib import Path

import pytest

from cnncodes.classifiers.serving.image_inputs import Input, expand_inputs, images_in, read_input


@pytest.fixture
def tree(tmp_path) -> Path:
    """photos/ with images at two depths, a text file, an empty folder, a broken link, two links that loop into
    each other, a link back up the tree and a second link to a folder already walked."""
    root = tmp_path / "photos"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty").mkdir()
    for name in ("a.jpg", "b.png", "sub/c.jpg", "sub/deeper/d.bmp"):
        (root / name).write_bytes(b"not decoded here")
    (root / "notes.txt").write_text("not an image")
    (root / "gone.jpg").symlink_to(root / "nowhere.jpg")
    (root / "loop1.jpg").symlink_to(root / "loop2.jpg")
    (root / "loop2.jpg").symlink_to(root / "loop1.jpg")
    (root / "sub" / "deeper" / "up").symlink_to(root)  # a directory loop
    (root / "again").symlink_to(root / "sub")  # the same folder by another name
    return root


def problems(inputs):
    return {Path(i.path).name: i.problem for i in inputs if i.problem}


def test_a_folder_gives_each_image_once_and_a_row_for_each_link_that_leads_nowhere(tree):
    inputs = expand_inputs([str(tree)])
    found = sorted(Path(i.path).relative_to(tree).as_posix() for i in inputs if i.problem is None)
    # sub/ is reached as photos/again too, and up/ leads back to photos/: each folder is walked once
    assert found == ["a.jpg", "b.png", "sub/c.jpg", "sub/deeper/d.bmp"]  # by its own name, before any link
    said = problems(inputs)
    assert said.keys() == {"gone.jpg", "loop1.jpg", "loop2.jpg"}
    assert said["gone.jpg"].startswith("a broken link (to ") and "nowhere.jpg" in said["gone.jpg"]
    assert said["loop1.jpg"] == said["loop2.jpg"] == "a link that leads round in a loop"
    assert [i.path for i in inputs] == sorted(i.path for i in inputs)  # sorted, as before


def test_an_empty_folder_and_an_unmatched_pattern_are_rows_with_their_reason(tree):
    inputs = expand_inputs([str(tree / "empty"), str(tree / "*.gif"), str(tree / "a.jpg")])
    assert (inputs[0] == Input(str(tree / "empty"), inputs[0].problem)
            and "a folder holding no images" in inputs[0].problem)
    assert inputs[1] == Input(str(tree / "*.gif"), "no file matches this pattern")
    assert inputs[2] == Input(str(tree / "a.jpg")) and images_in(inputs) == 1


def test_a_recursive_glob_never_follows_a_folder_loop(tree):
    inputs = expand_inputs([f"{tree}/**/*.jpg"])
    names = [Path(i.path).relative_to(tree).as_posix() for i in inputs]
    # `**` does not descend links to folders (photos/again, sub/deeper/up): each file once, at its own path
    assert names == ["a.jpg", "gone.jpg", "loop1.jpg", "loop2.jpg", "sub/c.jpg"]
    assert [i.problem is None for i in inputs] == [True, False, False, False, True]
    every = expand_inputs([f"{tree}/sub/**"])  # glob.glob's `dir/**`: the files under it
    assert [Path(i.path).name for i in every] == ["c.jpg", "d.bmp"]


def test_a_relative_pattern_keeps_relative_paths(tree, monkeypatch):
    monkeypatch.chdir(tree)
    assert [i.path for i in expand_inputs(["*.png", "sub/*.jpg"])] == ["b.png", "sub/c.jpg"]


def test_a_named_broken_link_and_a_missing_file_say_why(tree):
    inputs = expand_inputs([str(tree / "gone.jpg"), str(tree / "missing.jpg")])
    assert inputs[0].problem.startswith("a broken link")
    assert inputs[1].problem is None and read_input(inputs[1], 8) == (None, "not found")
    assert read_input(inputs[0], 8) == (None, inputs[0].problem)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_an_unreadable_folder_is_a_row(tree):
    (tree / "sub" / "deeper").chmod(0)
    try:
        said = problems(expand_inputs([str(tree)]))
        assert said["deeper"].startswith("folder cannot be read")
    finally:
        (tree / "sub" / "deeper").chmod(0o755)


def test_a_list_keeps_names_that_are_not_utf8_and_a_folder_pattern_walks_folders(tree, tmp_path):
    raw = os.fsencode(tree) + b"/caf\xe9.png"
    Path(os.fsdecode(raw)).write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_bytes(raw + b"\n")  # as `ls > list.txt` writes it
    (given,) = expand_inputs([str(listing)])
    assert given.path == os.fsdecode(raw) and read_input(given, 8)[1].startswith("not a readable image")
    folders = expand_inputs([f"{tree}/*/"])  # folders only: photos/again (a link to sub), empty, sub
    found = [i.path for i in folders if i.problem is None]
    assert str(tree / "sub" / "c.jpg") in found  # by its own name, before the link's
    assert len({os.path.realpath(p) for p in found}) == len(found)  # each once, though again/ is sub/
    assert expand_inputs([f"{tree}/nothing*/"])[0].problem == "no folder matches this pattern"


def test_a_pipe_is_a_row_never_a_read_that_blocks(tree):
    os.mkfifo(tree / "pipe.png")
    said = problems(expand_inputs([str(tree)]))
    assert said["pipe.png"].startswith("not a regular file")
    assert read_input(Input(str(tree / "pipe.png")), 8)[1].startswith("not a regular file")
