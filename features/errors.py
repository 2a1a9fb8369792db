class UserError(Exception):
    """Bad input a person can fix. The CLI prints it as one line and exits non-zero."""


class DamagedError(UserError):
    """A stored file that fails its checksums or cannot be parsed: named, with how to rebuild it."""
