"""Whether a folder takes new files, found by making one: os.access cannot tell (it says yes to root, whatever
the file system allows), and a long job should learn it before its work, not when it writes its answer."""
import tempfile
from pathlib import Path


def cannot_write(folder: Path) -> str | None:
    """None when a file can be made (and is removed again) in `folder`, else the reason it cannot."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".cnncodes-", suffix=".probe"):
            return None
    except OSError as e:
        return e.strerror or str(e)
