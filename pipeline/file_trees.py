"""The files of a class-folder data set by name, read into memory: a directory, a .tar or a .zip.

Nothing is ever extracted. Archive members outside the root (an absolute name, or a `..` part) are
never read: their names are kept in `skipped` so the user hears about them. Every reader's `read`
raises UnreadableFile, never the archive library's own error, so one damaged member is one bad image.
"""
import lzma
import os
import re
import tarfile
import zipfile
import zlib
from pathlib import Path

from cnncodes.features.errors import UserError
from .source import utf8_name

# No image under the pixel limit needs more bytes than this; a bigger file is not read into memory.
MAX_FILE_BYTES = 256 << 20


class UnreadableFile(Exception):
    """A file or member that cannot be read; the message says why."""


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


class TarFiles:
    def __init__(self, path: Path):
        self.tar = tarfile.open(path)
        self.members, self.skipped = {}, []
        for m in self.tar.getmembers():
            if not (m.isfile() or m.isdir()):
                continue  # links and devices: nothing a class folder needs
            if outside_root(m.name):
                self.skipped.append(utf8_name(m.name))
                continue
            self.members[m.name.removeprefix("./") + ("/" if m.isdir() else "")] = m

    def names(self):
        return iter(self.members)

    def read(self, name):
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
        self.members, self.skipped = {}, []
        for info in self.zip.infolist():
            if outside_root(info.filename):
                self.skipped.append(utf8_name(info.filename))
            else:
                self.members[info.filename] = info

    def names(self):
        return iter(self.members)

    def read(self, name):
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
