"""One exception family, so the CLI can turn any user-facing failure into one clear line."""


class GankitError(Exception):
    """A problem the user can fix; the message says what is wrong and how to fix it."""


class ConfigError(GankitError):
    """A config key or value is unknown or out of range."""


class DataError(GankitError):
    """A dataset is missing, corrupt, or does not fit the model."""


class CheckpointError(GankitError):
    """A checkpoint or run folder is missing, incomplete, or of another model."""


class TrainingDiverged(GankitError):
    """A loss became NaN or Inf; the last good checkpoint is left in place."""


class TrainingInterrupted(GankitError):
    """Training was stopped by Ctrl-C after saving a checkpoint; the message says where."""
