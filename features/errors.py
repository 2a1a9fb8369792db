"""The errors cnncodes raises for people: what is wrong, and how to fix it, in one line."""


class UserError(Exception):
    """Bad input a person can fix. The CLI prints it as one line and exits non-zero."""


class DamagedError(UserError):
    """A stored file that fails its checksums or cannot be parsed: named, with how to rebuild it."""


class BadParameter(UserError, ValueError):
    """A head's parameter with a value it cannot take: one line on the command line, and the ValueError
    scikit-learn callers expect from an estimator's fit."""
