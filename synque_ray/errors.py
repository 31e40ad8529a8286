"""The one exception type that means "the user gave us something wrong".

The CLI turns it into a single line on stderr and exit code 2; everything else is
a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the config or the input files; the message names the culprit."""
