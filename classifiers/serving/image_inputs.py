"""What IMAGE arguments name (`predict`, `neighbors`): files, folders, glob patterns and .txt lists of paths, as one
`Input` per image found or per thing that gave none (an unmatched pattern, an empty folder, a broken or looping
link), so that every answer has exactly one row per input and says why where there is no image; and reading one
at the store's size by the ingest rule."""
import errno
import glob
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnncodes.pipeline.images import IMAGE_EXTENSIONS, BadImage, decode_image, fit_square

LIST_SUFFIX = ".txt"
NOT_A_FILE = "not a regular file (a pipe, socket or device): give the image file itself"


@dataclass(frozen=True)
class Input:
    path: str
    problem: str | None = None  # why no image can come from it (it is still a row of the answer)


def expand_inputs(items: list[str]) -> list[Input]:
    """The inputs `items` name, in order: a folder gives every image under it (sorted, each folder visited once
    however links lead back to it), a glob pattern every file it matches (sorted; `**` never follows a link to a
    folder, so it cannot loop), a .txt list its paths (one a line, relative to the list's folder). A name that is
    none of these stays, and is reported as not found when read."""
    out = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            out += folder_inputs(path)
        elif path.is_file() and path.suffix.lower() == LIST_SUFFIX:
            lines = [os.fsdecode(line.strip()) for line in path.read_bytes().splitlines()]  # names as ls writes
            # them, bytes that are not UTF-8 included
            out += [Input(str(path.parent / line)) for line in lines if line and not line.startswith("#")]
        elif not path.exists() and not path.is_symlink() and glob.has_magic(item):
            out += pattern_inputs(item) if not item.endswith(os.sep) else folder_pattern_inputs(item)
        else:
            out.append(Input(item, link_problem(path)))
    return out


def images_in(inputs: list[Input]) -> int:
    """How many of the inputs can give an image (have no problem yet)."""
    return sum(i.problem is None for i in inputs)


def folder_inputs(root: Path, *more: Path) -> list[Input]:
    """Every image file under `root` and `more` (links to files and folders followed, a folder reached twice walked
    once), and a row for each broken or looping link and unreadable folder on the way; one row when none is found."""
    found, seen = [], set()
    # folders by their own names are walked before any link to a folder, so a file is named by its own path
    folders = [p for p in (root, *more) if not p.is_symlink()]
    linked = [p for p in (root, *more) if p.is_symlink()]
    while folders or linked:
        folder = folders.pop() if folders else linked.pop(0)
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in seen:  # a link back up the tree, or a second link to one folder
                continue
            seen.add((st.st_dev, st.st_ino))
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            found.append(Input(str(folder), f"folder cannot be read ({e.strerror or e})"))
            continue
        for entry in entries:
            path = Path(entry.path)
            if problem := link_problem(path):
                if path.suffix.lower() in IMAGE_EXTENSIONS or not path.suffix:  # what might have been an image
                    found.append(Input(str(path), problem))
            elif path.is_dir():
                (linked if entry.is_symlink() else folders).append(path)
            elif path.suffix.lower() in IMAGE_EXTENSIONS:
                found.append(Input(str(path), None if path.is_file() else NOT_A_FILE))
    found.sort(key=lambda i: i.path)
    return found or [Input(str(root), f"a folder holding no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")]


def pattern_inputs(pattern: str) -> list[Input]:
    """The files a glob pattern matches (with `**` for any depth), sorted; one row when it matches none."""
    parts = Path(pattern).parts
    if parts and parts[-1] == "**":  # glob.glob's `dir/**`: every file under dir, where pathlib's gives folders
        parts = (*parts, "*")
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    root, rest = Path(*parts[:fixed]) if fixed else Path("."), str(Path(*parts[fixed:]))
    matches = []
    try:  # pathlib's `**` skips links to folders (os.walk's rule), where glob.glob's follows them round a loop
        for path in root.glob(rest):
            problem = link_problem(path)
            if problem or path.is_file():
                matches.append(Input(str(path) if fixed else str(path).removeprefix("./"), problem))
    except OSError as e:
        return [Input(pattern, f"cannot be searched ({e.strerror or e})")]
    matches = sorted(set(matches), key=lambda i: i.path)
    return matches or [Input(pattern, "no file matches this pattern")]


def folder_pattern_inputs(pattern: str) -> list[Input]:
    """`photos/*/`: the folders the pattern matches, each walked as a folder is; one row when it matches none."""
    folders = [Path(p) for p in glob.glob(pattern) if Path(p).is_dir()]
    return folder_inputs(*folders) if folders else [Input(pattern, "no folder matches this pattern")]


def link_problem(path: Path) -> str | None:
    """Why a link cannot be followed (its target is missing, or links lead round in a loop); None otherwise."""
    if not path.is_symlink():
        return None
    try:
        path.stat()
    except FileNotFoundError:
        return f"a broken link (to {os.readlink(path)}, which does not exist)"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a link that leads round in a loop"
        return f"a link that cannot be followed ({e.strerror or e})"
    return None


def read_input(given: Input, side: int) -> tuple[np.ndarray | None, str | None]:
    """(the image at the store's size, None) or (None, why it cannot be used)."""
    if given.problem:
        return None, given.problem
    try:
        if not stat.S_ISREG(os.stat(given.path).st_mode):  # a pipe would block the read, a folder fail it
            return None, "a folder" if os.path.isdir(given.path) else NOT_A_FILE
        data = Path(given.path).read_bytes()
    except FileNotFoundError:
        return None, "not found"
    except OSError as e:
        return None, f"cannot be read ({e.strerror or e})"
    try:
        return fit_square(decode_image(data), side), None  # the same ingest rule the store's images went through
    except BadImage as e:
        return None, f"not a readable image ({e})"


def as_inputs(paths: list) -> list[Input]:
    """Paths (str or Path) as Inputs; Inputs stay as they are."""
    return [p if isinstance(p, Input) else Input(str(p)) for p in paths]
