"""User-facing errors.

Anything the user can fix (a config value, a missing file) raises a :class:`BnbenchError`.
The CLI prints it as one line naming the key, file or value, and exits with status 2; no
record is written. Everything else is a bug or a training failure and keeps its traceback.
"""


class BnbenchError(Exception):
    """A problem with the user's input, reported as one line."""


class ConfigError(BnbenchError):
    """A config key holds a value bnbench cannot run with."""


class DataError(BnbenchError):
    """A data file is missing, unreadable or not what its name says."""
