"""User-facing errors.

Every mistake a user can make (bad config, missing data, corrupt file) raises a subclass of
``SnnbpError`` whose message is one sentence saying what was wrong and what to do. The CLI prints
that sentence without a traceback; anything else is a bug and keeps its traceback.
"""


class SnnbpError(Exception):
    """Base class of errors caused by user input rather than by a bug."""


class ConfigError(SnnbpError):
    """A configuration key is unknown, has the wrong type, or an invalid value."""


class DataError(SnnbpError):
    """Data is missing, corrupt, truncated, or fails a checksum."""


class TrainingDiverged(SnnbpError):
    """Training produced NaN or runaway activity; the last good checkpoint is kept."""


class RunFinished(SnnbpError):
    """``--resume`` was given a run that has already finished; it is left untouched."""
