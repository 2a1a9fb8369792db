"""The files of a class-folder data set by name, read into memory: a directory, a .tar or a .zip.

Nothing is ever extracted. Archive members outside the root (an absolute name, or a `..` part) are
never read: their names are kept in `skipped` so the user hears about them. Every reader's `read`
raises UnreadableFile, never the archive library's own error, so one damaged member is one bad image.
A name that several members share is never read either (which of them is meant cannot be told), and a
tar that ends before its end-of-archive marker is refused whole: it was cut short.
"""
import lzma
import os
import re
import tarfile
import zipfile
import zlib
from pathlib import Path

from cnncodes.features.errors import UserError
from cnncodes.features.outputs import utf8_name

# No image under the pixel limit needs more bytes than this; a bigger file is not read into memory.
MAX_FILE_BYTES = 256 << 20


class UnreadableFile(Exception):
    """A file or member that cannot be read; the message says why."""


class SharedName(UnreadableFile):
    """A name that several archive members have: extracting would keep the last, silently."""


def members_by_name(members, name_of) -> tuple[dict, dict]:
    """name -> member, and name -> count for the names more than one member has."""
    by_name, counts = {}, {}
    for member in members:
        name = name_of(member)
        counts[name] = counts.get(name, 0) + 1
        by_name[name] = member
    return by_name, {name: n for name, n in counts.items() if n > 1}


def check_unshared(shared: dict, name: str):
    if name in shared:
        raise SharedName(f"a name {shared[name]} members of the archive share (which one is meant cannot be told)")


def outside_root(name: str) -> bool:
    """Whether an archive member's name points outside the archive's root if it were extracted."""
    return name.startswith(("/", "\\")) or ".." in re.split(r"[\\/]", name)


def check_size(size: int):
    if size > MAX_FILE_BYTES:
        raise UnreadableFile(f"{size / 2**20:.0f} MiB, more than any image under the pixel limit needs")


def walk(folder: str, prefix: str = "", ancestors: frozenset = frozenset()):
    """Names below `folder`, folders ending in "/"; symlinked folders are followed (a class folder may
    live elsewhere), except into one of their own ancestors, which would loop forever."""
    ancestors = ancestors | {os.path.realpath(folder)}
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        name = prefix + entry.name
        if not entry.is_dir():
            yield name
        elif os.path.realpath(entry.path) not in ancestors:
            yield name + "/"
            yield from walk(entry.path, name + "/", ancestors)


class DirectoryFiles:
    def __init__(self, root: Path):
        self.root = root
        self.skipped = []  # a directory has no members outside itself

    def names(self):
        return walk(os.fspath(self.root))

    def read(self, name):
        path = self.root / name
        try:
            check_size(path.stat().st_size)
            return path.read_bytes()
        except OSError as e:
            raise UnreadableFile(e.strerror or type(e).__name__) from None

    def close(self):
        pass


class EndMarkedInfo(tarfile.TarInfo):
    """Notes on its tar that the zero block marking the archive's end was read."""

    @classmethod
    def fromtarfile(cls, tar):
        try:
            return super().fromtarfile(tar)
        except tarfile.EOFHeaderError:
            tar.reached_end_marker = True
            raise


class EndCheckedTar(tarfile.TarFile):
    """A tar that knows how its listing ended. tarfile stops without a word at the end of the file and at a
    damaged header, just as at the zero block that marks the archive's end; only the last is a whole tar."""
    tarinfo = EndMarkedInfo
    reached_end_marker = False


class TarFiles:
    def __init__(self, path: Path):
        self.tar = EndCheckedTar.open(path)
        wanted, self.skipped = [], []
        for m in self.tar.getmembers():
            if not (m.isfile() or m.isdir()):
                continue  # links and devices: nothing a class folder needs
            if outside_root(m.name):
                self.skipped.append(utf8_name(m.name))
                continue
            wanted.append(m)
        if not self.tar.reached_end_marker:
            self.tar.close()
            raise UserError(f"{utf8_name(str(path))} ends before its end-of-archive marker, after "
                            f"{len(self.tar.members)} members: it was cut short (an interrupted download or copy) "
                            f"or damaged; pack or download the archive again")
        name_of = lambda m: m.name.removeprefix("./") + ("/" if m.isdir() else "")
        self.members, self.shared = members_by_name(wanted, name_of)

    def names(self):
        return iter(self.members)

    def read(self, name):
        check_unshared(self.shared, name)
        member = self.members[name]
        check_size(member.size)
        try:
            with self.tar.extractfile(member) as f:
                return f.read()
        except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as e:
            raise UnreadableFile(f"a damaged tar member ({type(e).__name__}: {e})") from None

    def close(self):
        self.tar.close()


class ZipFiles:
    def __init__(self, path: Path):
        self.zip = zipfile.ZipFile(path)
        self.skipped = [utf8_name(i.filename) for i in self.zip.infolist() if outside_root(i.filename)]
        wanted = [i for i in self.zip.infolist() if not outside_root(i.filename)]
        self.members, self.shared = members_by_name(wanted, lambda info: info.filename)

    def names(self):
        return iter(self.members)

    def read(self, name):
        check_unshared(self.shared, name)
        info = self.members[name]
        check_size(info.file_size)
        try:
            return self.zip.read(info)
        # BadZipFile: a failed CRC check; RuntimeError: an encrypted member; NotImplementedError: an
        # unsupported compression method.
        except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, RuntimeError,
                NotImplementedError, ValueError) as e:
            raise UnreadableFile(f"a damaged zip member ({type(e).__name__}: {e})") from None

    def close(self):
        self.zip.close()


def open_files(path: Path):
    if not path.exists():
        raise UserError(f"{utf8_name(str(path))} does not exist: give folder:PATH a directory, .tar or .zip of "
                        f"class folders")
    try:
        if path.is_dir():
            return DirectoryFiles(path)
        if zipfile.is_zipfile(path):
            return ZipFiles(path)
        return TarFiles(path)
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error, lzma.LZMAError,
            UnicodeDecodeError) as e:
        why = str(e).split("\n")[0].rstrip(":")  # tarfile lists each compression it tried, one a line
        raise UserError(f"{utf8_name(str(path))} is not a readable .tar or .zip archive ({type(e).__name__}: {why}): "
                        f"give a folder of class folders, or pack or download the archive again") from None
