"""Names that become file names inside a store (feature sets, runs, label sets) are checked here, so
nothing a user types can reach outside the store or make a file the store cannot list back."""
import re

from .errors import UserError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]*")
MAX_LENGTH = 120


def check_name(value: str, what: str = "--name") -> str:
    if not NAME.fullmatch(value or "") or ".." in value or len(value) > MAX_LENGTH:
        raise UserError(f"{what} {value!r} is not a usable name: use up to {MAX_LENGTH} letters, digits and _ . + = -, "
                        f"starting with a letter or digit (no path separators, no '..')")
    return value
