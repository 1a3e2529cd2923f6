"""The one error type the CLI turns into a one-line message and exit status 2."""


class BenchError(Exception):
    """Bad input or state, reported to the user as one line naming the culprit (file, key or option)."""
