class UserError(Exception):
    """Bad input a person can fix. The CLI prints it as one line and exits non-zero."""
