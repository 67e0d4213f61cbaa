"""The one exception type the CLI turns into a one-line message instead of a traceback."""


class GenzooError(Exception):
    """A problem the user can fix: bad input, missing data, a faulty plugin."""


def one_line(message: str) -> str:
    """Join a multi-line message (some come from torch or plugins) into one line."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())
