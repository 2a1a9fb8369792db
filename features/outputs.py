"""Every file cnncodes writes: written through one atomic write (staged beside its target under a name of this
process's own, flushed, renamed into place); a user's --out checked before any work and published only where
nothing is yet, a model and its side files together or not at all; tables as CSV whose cells a spreadsheet shows
as text, never evaluates."""
import csv
import ctypes
import errno
import fcntl
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

from .errors import UserError


def cannot_write(folder: Path) -> str | None:
    """None when a file can be made (and is removed again) in `folder`, else the reason it cannot."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".cnncodes-", suffix=".probe"):
            return None
    except OSError as e:
        return e.strerror or str(e)


def utf8_name(name: str) -> str:
    """A file or member name as valid UTF-8 text: bytes that are not UTF-8 (which Python keeps as surrogates)
    become visible escapes, so b'caf\\xe9' is named 'caf\\\\xe9' instead of failing when written."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no undecodable byte made
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def check_new_output(out: Path | None, option: str = "--out"):
    """`out` names a path still to be written, in a folder that exists and takes new files: checked before any
    work, so a long job never ends unable to write its answer. (Another command may still take the path
    meanwhile: `publish` refuses then, and nothing is lost.)"""
    if out is None:
        return
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise UserError(f"{option} {utf8_name(str(out))}: it already exists; remove it or give another path")
    if not out.parent.is_dir():
        raise UserError(f"{option} {utf8_name(str(out))}: its folder does not exist; create it, or give another path")
    if why := cannot_write(out.parent):
        raise UserError(f"{option} {utf8_name(str(out))}: its folder cannot be written ({why}); give a path in a "
                        f"folder you can write")


# -- the one atomic write ------------------------------------------------------------------------------------
# Every file cnncodes writes, and every folder it publishes whole (a run, a SavedModel), is written through
# `atomic_write`: the new content goes into a staging folder beside its target (.NAME.HOST.PID.RANDOM.partial),
# is flushed to disk and renamed into place. A reader finds the old content or the new, never part of it; an
# error removes the staging folder. Its writer holds a lock file inside it for its whole life: a process killed
# outright (SIGKILL: no cleanup runs) leaves the folder with its lock free, and the next write into the same
# folder removes it, undoing a publish the kill cut short. A lock (not a process id, which another PID namespace
# or a later process may reuse) tells a running writer's folder from a dead one's; a folder without the lock file
# (a user's own, named alike) is never touched, nor one of another host (a shared disk, where locks may be local).
STAGED = ".partial"
LOCK = ".cnncodes-staging.lock"        # in every staging folder: flock-ed by its writer while it lives
PUBLISHING = ".cnncodes-publishing"    # in a staging folder while its outputs are moved out: their names
HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:60] or "host"
PID_MAX = 1 << 22  # the most Linux allows; a larger number in a file name is no process id
_locks: dict[Path, int] = {}  # this process's staging folders -> their lock's file descriptor


class atomic_write:  # a context manager, named as contextlib names its own
    """`with atomic_write(path, *side_files) as (staged, *side):` yields a temporary path for each, with the
    same name as its target (a writer that wants a suffix, as Keras does, gets it), for the block to write a
    file or a folder at. When the block ends without error each is flushed to disk and renamed into place, in
    the order given; `exclusive` (a user's --out) publishes them only where nothing is yet, together or not at
    all (`publish`). Side files live in the first path's folder. Writers that span several calls (ingest's
    data.h5) use `commit` and `discard` themselves."""

    def __init__(self, *paths, exclusive: bool = False, option: str = "--out"):
        self.finals = [Path(p) for p in paths]
        if len({p.name for p in self.finals}) < len(self.finals) or any(
                p.parent != self.finals[0].parent for p in self.finals):
            raise ValueError(f"side files are named apart in the first path's folder: {self.finals}")
        self.exclusive, self.option = exclusive, option
        self.staging = new_staging(self.finals[0])
        self.paths = [self.staging / p.name for p in self.finals]

    def __enter__(self) -> list[Path]:
        return self.paths

    def __exit__(self, kind, *_):
        try:
            if kind is None:
                self.commit()
        finally:
            self.discard()

    def commit(self):
        for staged in self.paths:
            if not (staged.exists() or staged.is_symlink()):
                raise FileNotFoundError(errno.ENOENT, "nothing was written at the staged path", str(staged))
            sync(staged)
        moves = list(zip(self.paths, self.finals))
        if self.exclusive:
            publish(moves, self.option)
        else:
            for staged, final in moves:
                os.replace(staged, final)
        sync_entry(self.finals[0].parent)  # the renames themselves, not the folder's other files

    def discard(self):
        release(self.staging)


def write_atomically(path: Path, content: str | bytes):
    """`path` holds its old content or `content`, never part of it (text is written as UTF-8)."""
    with atomic_write(path) as (staged,):
        staged.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)


def new_staging(target: Path) -> Path:
    """A new folder of this process's own beside `target`, for its next content, its lock held until `release`;
    what killed writers left in that folder is removed first."""
    remove_leftovers(target.parent)
    name = os.fsdecode(os.fsencode(target.name)[:80])  # bytes, not characters: the folder's name stays legal
    # made under another name and renamed once its lock is held: a sweep never sees it unlocked
    new = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}.{HOST}.{os.getpid()}.", suffix=STAGED + ".new"))
    try:
        fd = os.open(new / LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        folder = new.with_name(new.name.removesuffix(".new"))
        os.rename(new, folder)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    _locks[folder] = fd
    return folder


def release(folder: Path):
    """Removes a staging folder of this process, then lets go of its lock (so no sweep starts on it meanwhile)."""
    shutil.rmtree(folder, ignore_errors=True)
    fd = _locks.pop(folder, None)
    if fd is not None:
        os.close(fd)


def discard(staged: Path):
    """Removes a staged path's whole staging folder (a run that failed before it was published)."""
    if staging_owner(staged.parent.name):
        release(staged.parent)


def staging_owner(name: str) -> tuple[str, int] | None:
    """(host, process id) of a staging folder's name, None for any other name."""
    if not (name.startswith(".") and name.endswith(STAGED)):
        return None
    fields = name[:-len(STAGED)].rsplit(".", 3)  # .NAME (dots allowed), HOST, PID, RANDOM
    if len(fields) < 4 or not fields[2].isdigit() or not 0 < int(fields[2]) <= PID_MAX:
        return None
    return fields[1], int(fields[2])


def remove_leftovers(folder: Path):
    """Removes the staging folders in `folder` that this host's writers left when they were killed (their lock
    is free), undoing a publish cut short; a running writer's, another host's, and any folder without a lock
    file are left alone."""
    try:
        entries = [e for e in os.scandir(folder) if e.name.endswith(STAGED)]
    except OSError:
        return  # a folder that cannot be listed cannot be written either: the write itself says so
    for entry in entries:
        owner = staging_owner(entry.name)
        if not owner or owner[0] != HOST or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            fd = os.open(Path(entry.path) / LOCK, os.O_RDWR | os.O_NOFOLLOW)  # never created here: ours only
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            undo_publishing(Path(entry.path))
            shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:
            pass  # held: its writer runs
        finally:
            os.close(fd)


def undo_publishing(staging: Path):
    """Takes back what a publish cut short by a kill had moved out, so outputs land together or not at all; a
    publish that had moved every output out was whole, and stays."""
    try:
        names = [os.fsdecode(n) for n in (staging / PUBLISHING).read_bytes().split(b"\0") if n]
    except OSError:
        return
    moved = [staging.parent / name for name in names if was_moved(staging / name, staging.parent / name)]
    if len(moved) < len(names):
        for final in moved:
            remove(final)


def was_moved(staged: Path, final: Path) -> bool:
    """Whether a publish put `staged` at `final`: renamed where nothing was (the staged name is gone), or hard-
    linked (the same file under both names)."""
    if not (final.exists() or final.is_symlink()):
        return False
    if not (staged.exists() or staged.is_symlink()):
        return True
    return staged.is_file() and os.path.samefile(staged, final)


def sync(path: Path):
    """Flushes a staged file, or a staged folder and everything in it, to the disk, so that a rename is never
    seen before the content it names (a power cut)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        for inner in path.iterdir():
            sync(inner)
    if not path.is_symlink():
        sync_entry(path)


def sync_entry(path: Path):
    """Flushes one file or one folder's list of names (not what it holds: a rename into it is made durable).
    A file system that cannot sync a folder is left to its own order."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EROFS, errno.EBADF):
            raise
    finally:
        os.close(fd)


def publish(moves: list[tuple[Path, Path]], option: str = "--out"):
    """Moves each staged file or folder to its path, side files first and the main output (the first) last, each
    only where nothing is: a path that another command took meanwhile is one UserError, and those already moved
    are taken back, so the outputs land together or not at all (after a kill, the next write takes them back:
    the names being moved are kept in the staging folder until all are out)."""
    staging = moves[0][0].parent
    (staging / PUBLISHING).write_bytes(b"\0".join(os.fsencode(final.name) for _, final in moves))
    done = []
    try:
        for staged, final in moves[1:] + moves[:1]:
            claim(staged, final)
            done.append(final)
    except BaseException as e:
        for final in done:
            remove(final)
        if not isinstance(e, FileExistsError):
            raise
        taken = utf8_name(str(moves[0][1]))
        raise UserError(f"{option} {taken}: it appeared while this command ran (another command wrote it?): "
                        f"nothing written; remove it or give another path, and run again") from None
    (staging / PUBLISHING).unlink()


def claim(staged: Path, final: Path):
    """Renames `staged` to `final` only if `final` does not exist (FileExistsError if it does), in one step where
    the kernel and file system can (renameat2's RENAME_NOREPLACE). Else a file is hard-linked (atomic, never over
    another); a folder takes `final` by creating it first, then is renamed onto it."""
    if rename_noreplace(staged, final):
        return
    if staged.is_dir():
        os.mkdir(final)  # FileExistsError when taken: the claim, exclusive
        try:
            os.rename(staged, final)  # onto the empty folder it claimed
        except OSError:
            os.rmdir(final)
            raise
        return
    try:
        os.link(staged, final)
    except OSError as e:
        if e.errno == errno.EEXIST:
            raise FileExistsError(e.errno, e.strerror, str(final)) from None
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        # a file system without hard links: an empty file claims the name, then the staged one replaces it
        os.close(os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        os.replace(staged, final)


_LIBC = ctypes.CDLL(None, use_errno=True)
_RENAMEAT2 = getattr(_LIBC, "renameat2", None)  # glibc 2.28 and later
if _RENAMEAT2 is not None:
    _RENAMEAT2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
AT_FDCWD, RENAME_NOREPLACE = -100, 1


def rename_noreplace(source: Path, target: Path) -> bool:
    """Renames only where nothing is, in one step; False where the C library, kernel or file system lacks it."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(AT_FDCWD, os.fsencode(source), AT_FDCWD, os.fsencode(target), RENAME_NOREPLACE) == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.EEXIST:
        raise FileExistsError(err, os.strerror(err), str(target))
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(target))


def remove(path: Path):
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)


# -- tables ---------------------------------------------------------------------------------------------------
# A spreadsheet evaluates a cell that starts with one of these (a formula, or a DDE call after + - @), and tab
# and carriage return start one in some; such text cells get a leading apostrophe, which shows them as text
# (OWASP's "CSV injection" advice). Numbers, negative ones included, stay numbers.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value) -> str:
    """A cell as text a spreadsheet will not evaluate, in valid UTF-8 (undecodable file names escaped as ingest
    escapes them); None is an empty cell."""
    if value is None:
        return ""
    if not isinstance(value, str):
        return str(value)
    text = utf8_name(value)
    if text.startswith(FORMULA_START) and not NUMBER.fullmatch(text):
        return "'" + text
    return text


def write_csv(path: Path, header: list[str], rows, *, exclusive: bool = True, option: str = "--out"):
    """The rows (iterables of cells) as a CSV with `header`, every cell through `safe_cell`. Staged and renamed:
    a killed run leaves no half file. `exclusive` (a user's --out): published only where nothing is yet; else
    (a file inside the store) it replaces the previous one."""
    path = Path(path)
    with atomic_write(path, exclusive=exclusive, option=option) as (staged,):
        _write_rows(staged, header, rows)


def _write_rows(path: Path, header: list[str], rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([safe_cell(c) for c in header])
        for row in rows:
            writer.writerow([safe_cell(c) for c in row])
