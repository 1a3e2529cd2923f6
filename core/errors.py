"""The error types the CLI turns into one-line messages: bad input (exit status 2) and an interrupted run (130)."""


class BenchError(Exception):
    """Bad input or state, reported to the user as one line naming the culprit (file, key or option)."""


class Interrupted(Exception):
    """A run stopped by Ctrl-C or SIGTERM; the message says what was kept."""
