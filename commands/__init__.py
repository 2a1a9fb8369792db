"""One module a command, loaded by cli.py only when that command runs."""
