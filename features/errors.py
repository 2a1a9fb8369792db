"""The errors cnncodes raises for people (what is wrong, and how to fix it, in one line), and the limits of what a
person may give, declared once: the most a setting may be (the command line's option ranges and the checks Python
callers meet both read them, so the two never disagree), and what a name that becomes a file in the store may be
(so nothing typed reaches outside the store, or makes a file the store cannot list back)."""
import re


class UserError(Exception):
    """Bad input a person can fix. The CLI prints it as one line and exits non-zero."""


class DamagedError(UserError):
    """A stored file that fails its checksums or cannot be parsed: named, with how to rebuild it."""


class BadParameter(UserError, ValueError):
    """A head's parameter with a value it cannot take: one line on the command line, and the ValueError
    scikit-learn callers expect from an estimator's fit."""


MAX_IMAGE_SIDE = 1024  # ingest's square side and the device resize: 1024 already needs 20x the memory of 224
MAX_BATCH = 4096       # the most --batch-size auto tries: beyond it throughput stops growing and host memory runs out
MAX_CHUNK = 65536      # a chunk's images and codes are held in memory whole (2048 float32 a row: 512 MB)
MAX_SEED = 2**32 - 1   # what numpy's, scikit-learn's and Keras's seeding take, and an HDF5 attribute holds
MAX_VIEWS = 64         # views are stored beside the codes: 64 views of 50,000 rows of 1280 floats are 16 GB

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]*")
MAX_LENGTH = 120


def check_name(value: str, what: str = "--name") -> str:
    if not NAME.fullmatch(value or "") or ".." in value or len(value) > MAX_LENGTH:
        raise UserError(f"{what} {value!r} is not a usable name: use up to {MAX_LENGTH} letters, digits and _ . + = -, "
                        f"starting with a letter or digit (no path separators, no '..')")
    return value
