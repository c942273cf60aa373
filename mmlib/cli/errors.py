"""The command line's one error type: what was asked for cannot be done, said in one line.

`mmlib.cli.main` prints it (and the library's own ValueError, DataError, ... that reach it) as one line on
stderr and exits non-zero; nothing the library raises in a notebook is of this type.
"""


class CLIError(Exception):
    """A problem with what was asked for, said in one line."""
