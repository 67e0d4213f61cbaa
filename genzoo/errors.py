"""The one exception type the CLI turns into a one-line message instead of a traceback."""

import sys


class GenzooError(Exception):
    """A problem the user can fix: bad input, missing data, a faulty plugin."""


def one_line(message: str) -> str:
    """Join a multi-line message (some come from torch or plugins) into one line."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def warn(message: str) -> None:
    """One ``genzoo: warning:`` line on stderr, even when the message (a plugin's, torch's) spans several."""
    print(f"genzoo: warning: {one_line(message)}", file=sys.stderr)
