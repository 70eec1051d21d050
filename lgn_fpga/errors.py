"""User-facing errors: the CLI prints them as one line and exits non-zero, never a traceback."""


class LgnError(Exception):
    """A problem the user can fix; the message says what is wrong and what to do."""

    exit_code = 2


class DataError(LgnError):
    """Dataset missing, truncated or malformed."""


class ConfigError(LgnError):
    """Unknown or ill-typed configuration key or value."""


class CheckpointError(LgnError):
    """A checkpoint or run directory that cannot be read."""


class TrainingError(LgnError):
    """Training cannot go on (e.g. the loss stopped being finite)."""
