"""`folder:PATH`: a directory, .tar or .zip of class subfolders, with train/ and test/ (or val/)
subtrees or a single tree that ingest splits. Images of any size are brought to one square size."""
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np

from features.errors import UserError
from .images import IMAGE_EXTENSIONS, decode_rgb, fit_square
from .sources import Source

SPLIT_FOLDERS = {"train": 0, "test": 1, "val": 1}


class DirectoryFiles:
    def __init__(self, root: Path):
        self.root = root

    def names(self):
        for p in sorted(self.root.rglob("*")):
            yield p.relative_to(self.root).as_posix() + ("/" if p.is_dir() else "")

    def read(self, name):
        return (self.root / name).read_bytes()

    def close(self):
        pass


class TarFiles:
    def __init__(self, path: Path):
        self.tar = tarfile.open(path)
        self.members = {m.name.removeprefix("./") + ("/" if m.isdir() else ""): m for m in self.tar.getmembers()
                        if m.isfile() or m.isdir()}

    def names(self):
        return iter(self.members)

    def read(self, name):
        with self.tar.extractfile(self.members[name]) as f:
            return f.read()

    def close(self):
        self.tar.close()


class ZipFiles:
    def __init__(self, path: Path):
        self.zip = zipfile.ZipFile(path)

    def names(self):
        return iter(self.zip.namelist())

    def read(self, name):
        return self.zip.read(name)

    def close(self):
        self.zip.close()


def open_files(path: Path):
    if not path.exists():
        raise UserError(f"{path} does not exist: give folder:PATH a directory, .tar or .zip of class folders")
    try:
        if path.is_dir():
            return DirectoryFiles(path)
        if zipfile.is_zipfile(path):
            return ZipFiles(path)
        return TarFiles(path)
    except (tarfile.TarError, OSError) as e:
        raise UserError(f"{path} is neither a folder, a .tar nor a .zip archive ({e})") from None


def layout(names: list[str]):
    """Split mode, the images as (split code or None, class, archive name), and the image count of
    every class folder seen (0 for an empty one)."""
    hidden = lambda parts: any(p.startswith(".") or p == "__MACOSX" for p in parts)
    entries = [(PurePosixPath(n).parts, n) for n in names]
    entries = [(p, n) for p, n in entries if p and not hidden(p)]
    # A single wrapping folder (archive.tar -> archive/...) is not part of the layout.
    while len({p[0] for p, _ in entries}) == 1 and entries[0][0][0] not in SPLIT_FOLDERS \
            and any(len(p) > 1 for p, _ in entries):
        entries = [(p[1:], n) for p, n in entries if len(p) > 1]
    is_dir = lambda p, n: n.endswith("/") or len(p) > 1
    tops = {p[0] for p, n in entries if is_dir(p, n)}
    split_mode = "train" in tops and ("test" in tops or "val" in tops)
    depth = 1 if split_mode else 0
    files, classes = [], {}
    for parts, name in entries:
        split = SPLIT_FOLDERS.get(parts[0]) if split_mode else None
        if len(parts) <= depth or (split_mode and split is None):
            continue
        folder = "/".join(parts[:depth + 1])
        if len(parts) == depth + 1 and not name.endswith("/"):
            continue  # a loose file beside the class folders has no class
        classes.setdefault(folder, 0)
        if len(parts) > depth + 1 and not name.endswith("/") and parts[-1].lower().endswith(IMAGE_EXTENSIONS):
            classes[folder] += 1
            files.append((split, parts[depth], name))
    return split_mode, files, classes


def folder_source(path: str, image_size: int | None = None) -> Source:
    root = Path(path)
    reader = open_files(root)
    names = list(reader.names())
    split_mode, files, classes = layout(names)
    empty = sorted(c for c, n in classes.items() if n == 0)
    if empty:
        raise UserError(f"class folder {empty[0]!r} in {root} has no images ({' '.join(IMAGE_EXTENSIONS)}): add images or remove it")
    if not files:
        raise UserError(f"no images in class folders under {root}: expected CLASS/IMAGE or train/CLASS/IMAGE and test/CLASS/IMAGE")
    class_names = sorted({c for s, c, _ in files if s in (None, 0)})
    unknown = sorted({c for s, c, _ in files} - set(class_names))
    if unknown:
        raise UserError(f"test classes {unknown} in {root} have no train folder: make both trees hold the same classes")
    files.sort(key=lambda f: (f[0] or 0, f[1], f[2]))
    paths = [name for _, _, name in files]
    index = {c: i for i, c in enumerate(class_names)}
    labels = np.array([index[c] for _, c, _ in files], dtype=np.int64)
    split = np.array([s for s, _, _ in files], dtype=np.uint8) if split_mode else None

    if image_size is None:
        first = decode_rgb(reader.read(paths[0]))
        if first is None:
            raise UserError(f"{root}/{paths[0]} is not a readable image: fix it, or pass --image-size and --skip-bad")
        image_size = min(first.shape[:2])
    pool = ThreadPoolExecutor(2)  # cv2 decoding releases the GIL

    def read(indices):
        data = [reader.read(paths[i]) for i in indices]  # archive reads stay on one thread
        decoded = list(pool.map(decode_rgb, data))
        bad = [int(i) for i, img in zip(indices, decoded) if img is None]
        good = [fit_square(img, image_size) for img in decoded if img is not None]
        return (np.stack(good) if good else np.zeros((0, image_size, image_size, 3), np.uint8)), bad

    def close():
        pool.shutdown()
        reader.close()

    return Source(name=f"folder:{root.name}", labels={"label": labels}, class_names={"label": class_names},
                  split=split, read=read, sample_names=lambda i: f"{root}/{paths[i]}",
                  description=str(root.resolve()), close=close)
