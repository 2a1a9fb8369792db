"""Files handed to people (`--out`): checked before any work, staged under a name of this process's own, and
published only where nothing is yet, a model and its side files together or not at all; tables as CSV whose
cells a spreadsheet shows as text, never evaluates."""
import contextlib
import csv
import errno
import glob
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


@contextlib.contextmanager
def new_outputs(*paths: Path, option: str = "--out"):
    """Yields a staged path for each of `paths` (the main output first, then its side files), in a folder of
    this process's own beside them; when the block ends without error they are published together (see
    `publish`); otherwise, or when one of them appeared meanwhile, nothing is left behind. A process killed
    outright leaves its folder: the next output to the same path removes it."""
    paths = [Path(p) for p in paths]
    remove_leftovers(paths[0])
    staging = Path(tempfile.mkdtemp(dir=paths[0].parent, prefix=staging_prefix(paths[0], os.getpid()),
                                    suffix=STAGED))
    try:
        yield [staging / p.name for p in paths]
        publish([(staging / p.name, p) for p in paths], option)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


STAGED = ".partial"
HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"
PID_MAX = 1 << 22  # the most Linux allows; a larger number in a file name is no process id


def staging_prefix(out: Path, pid: int, host: str = HOST) -> str:
    """.NAME.HOST.PID. : whose staging folder it is, so that a killed one's can be told from a running one's."""
    return f".{out.name}.{host}.{pid}."


def remove_leftovers(out: Path):
    """Removes what outputs to `out` staged on this host and left when their process was killed (it is gone);
    another host's (a shared folder), or a running one's, are left alone."""
    start = f".{out.name}.{HOST}."
    for staged in out.parent.glob(f"{glob.escape(start)}*{STAGED}"):
        pid = staged.name[len(start):].partition(".")[0]
        if pid.isdigit() and 0 < int(pid) <= PID_MAX and not process_alive(int(pid)):
            remove(staged)


def process_alive(pid: int) -> bool:
    """Whether a process of this machine has this id (another user's too: signalling it is refused)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: an id no process can have
        return False
    except PermissionError:
        pass
    return True


def publish(moves: list[tuple[Path, Path]], option: str = "--out"):
    """Moves each staged file or folder to its path, side files first and the main output (the first) last, each
    only where nothing is: a path that another command took meanwhile is one UserError, and those already moved
    are taken back, so the outputs land together or not at all."""
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


def claim(staged: Path, final: Path):
    """Renames `staged` to `final` only if `final` does not exist (FileExistsError if it does). A file is hard-
    linked (atomic, never over another); a folder takes `final` by creating it first, then is renamed onto it."""
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
    if exclusive:
        with new_outputs(path, option=option) as (staged,):
            _write_rows(staged, header, rows)
        return
    staged = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        _write_rows(staged, header, rows)
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)


def _write_rows(path: Path, header: list[str], rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([safe_cell(c) for c in header])
        for row in rows:
            writer.writerow([safe_cell(c) for c in row])
