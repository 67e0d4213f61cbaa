"""The one exception type the CLI turns into a one-line message instead of a traceback."""


class GenzooError(Exception):
    """A problem the user can fix: bad input, missing data, a faulty plugin."""
