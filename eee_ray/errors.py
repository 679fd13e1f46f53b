"""The one exception type for expected user mistakes.

The CLI prints a ``UserError`` as a single line and exits non-zero; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A bad argument, a missing input, a malformed file: something the user can fix."""
