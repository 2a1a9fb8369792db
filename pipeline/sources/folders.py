"""`folder:PATH`: a directory, .tar or .zip of class subfolders, with train/ and test/ (or val/)
subtrees or a single tree that ingest splits. Images of any size are brought to one square size."""
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np

from cnncodes.features.errors import UserError
from cnncodes.features.outputs import utf8_name
from cnncodes.pipeline.images import IMAGE_EXTENSIONS, BadImage, decode_image, fit_square

from .contract import Source
from .file_trees import SharedName, UnreadableFile, open_files

SPLIT_FOLDERS = {"train": 0, "test": 1, "val": 1}


def layout(names: list[str]):
    """Split mode, the images as (split code or None, class, archive name), and the image count of
    every class folder seen (0 for an empty one). Class names are valid UTF-8 (see utf8_name); archive
    names stay as the reader knows them."""
    hidden = lambda parts: any(p.startswith(".") or p == "__MACOSX" for p in parts)
    entries = [(PurePosixPath(n).parts, n) for n in names]
    entries = [(p, n) for p, n in entries if p and not hidden(p)]
    # A single wrapping folder (archive.tar -> archive/...) is not part of the layout; a single folder
    # with no folder inside is not a wrapper but the one class folder there is.
    has_subfolder = lambda: any(len(p) > 2 or (len(p) == 2 and n.endswith("/")) for p, n in entries)
    while len({p[0] for p, _ in entries}) == 1 and entries[0][0][0] not in SPLIT_FOLDERS and has_subfolder():
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
        if len(parts) == depth + 1 and not name.endswith("/"):
            continue  # a loose file beside the class folders has no class
        folder = utf8_name("/".join(parts[:depth + 1]))
        classes.setdefault(folder, 0)
        if len(parts) > depth + 1 and not name.endswith("/") and parts[-1].lower().endswith(IMAGE_EXTENSIONS):
            classes[folder] += 1
            files.append((split, utf8_name(parts[depth]), name))
    return split_mode, files, classes


def why_bad(e: Exception) -> str:
    """What a sample is that could not be read, as in "PATH is ...": a shared name, or not a readable image."""
    return str(e) if isinstance(e, SharedName) else f"not a readable image ({e})"


def first_readable_side(reader, paths: list[str], shown: str, tries: int = 16) -> int:
    """The default ingest size: the shorter side of the first image that decodes among the first few."""
    first = None
    for name in paths[:tries]:
        try:
            return min(decode_image(reader.read(name)).shape[:2])
        except (UnreadableFile, BadImage) as e:
            first = first or (name, e)
    raise UserError(f"{shown}/{utf8_name(first[0])} is {why_bad(first[1])}: fix it, or pass "
                    f"--image-size and --skip-bad")


def folder_source(path: str, image_size: int | None = None) -> Source:
    root = Path(path)
    reader = open_files(root)
    try:
        return tree_source(root, reader, image_size)
    except BaseException:
        reader.close()
        raise


def tree_source(root: Path, reader, image_size: int | None) -> Source:
    shown = utf8_name(str(root))  # names in messages and the store are valid UTF-8, whatever the file system holds
    names = list(reader.names())
    split_mode, files, classes = layout(names)
    empty = sorted(c for c, n in classes.items() if n == 0)
    if empty:
        raise UserError(f"class folder {empty[0]!r} in {shown} has no images ({' '.join(IMAGE_EXTENSIONS)}): "
                        "add images or remove it")
    if not files:
        outside = f" ({len(reader.skipped)} members outside the archive's root were skipped)" if reader.skipped else ""
        raise UserError(f"no images in class folders under {shown}{outside}: expected CLASS/IMAGE or "
                        f"train/CLASS/IMAGE and test/CLASS/IMAGE")
    class_names = sorted({c for s, c, _ in files if s in (None, 0)})
    if len(class_names) == 1:
        raise UserError(f"{shown} has one class folder, {class_names[0]!r}: a classifier needs at least two "
                        f"classes; add a folder of images for each other class")
    unknown = sorted({c for s, c, _ in files} - set(class_names))
    if unknown:
        raise UserError(f"test classes {unknown} in {shown} have no train folder: "
                        "make both trees hold the same classes")
    files.sort(key=lambda f: (f[0] or 0, f[1], f[2]))
    paths = [name for _, _, name in files]
    index = {c: i for i, c in enumerate(class_names)}
    labels = np.array([index[c] for _, c, _ in files], dtype=np.int64)
    split = np.array([s for s, _, _ in files], dtype=np.uint8) if split_mode else None
    if image_size is None:
        image_size = first_readable_side(reader, paths, shown)
    read, bad_reason, pool = image_reader(reader, paths, image_size)

    def close():
        pool.shutdown()
        reader.close()

    return Source(name=f"folder:{utf8_name(root.name)}", labels={"class": labels}, class_names={"class": class_names},
                  split=split, read=read, sample_names=lambda i: f"{shown}/{utf8_name(paths[i])}",
                  origin=lambda i: utf8_name(paths[i]), description=utf8_name(str(root.resolve())),
                  skipped_members=reader.skipped, bad_reason=bad_reason, close=close)


def image_reader(reader, paths: list[str], image_size: int):
    """read(indices) -> (size x size images, bad indices); bad_reason(i), why sample i was bad; and the
    decoding pool to shut down."""
    pool = ThreadPoolExecutor(2)  # cv2 decoding and resizing release the GIL
    reasons: dict[int, str] = {}

    def fetch(i: int) -> bytes | None:
        try:
            return reader.read(paths[i])
        except UnreadableFile as e:
            reasons[i] = why_bad(e)
            return None

    def decode(i: int, data: bytes | None) -> np.ndarray | None:
        try:
            return None if data is None else fit_square(decode_image(data), image_size)
        except BadImage as e:
            reasons[i] = why_bad(e)
            return None

    def read(indices):
        indices = [int(i) for i in indices]
        data = [fetch(i) for i in indices]  # archive reads stay on one thread
        decoded = list(pool.map(decode, indices, data))
        bad = [i for i, img in zip(indices, decoded) if img is None]
        good = [img for img in decoded if img is not None]
        return (np.stack(good) if good else np.zeros((0, image_size, image_size, 3), np.uint8)), bad

    def bad_reason(i: int) -> str:
        return reasons.get(i, "not a readable image")

    return read, bad_reason, pool
