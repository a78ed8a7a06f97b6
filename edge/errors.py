"""The one base class for mistakes a user can fix (bad input, not bugs).

The CLI prints such an error as one line and exits with code 2; anything else is a bug and
keeps its traceback.
"""


class MatEdgeError(ValueError):
    """Bad input: the message names the thing, the value, and what would be accepted."""
