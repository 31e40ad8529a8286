"""The one exception type that means "the user gave us something wrong".

The CLI turns it into a single line on stderr and exit code 2; everything else is
a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the config or the input files; the message names the culprit."""


class RunFailed(Exception):
    """A run that computed but cannot publish an honest answer (a proxy failed for every candidate,
    or every candidate failed). The CLI prints its one line and exits 1: a re-run resumes from
    what was committed."""
