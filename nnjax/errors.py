"""Errors a user can cause and fix; the CLI prints them as one line and exits with code 2."""


class NnjaxError(Exception):
    """Base class of known, user-facing errors."""


class ConfigError(NnjaxError, ValueError):
    """A configuration field has a value that cannot work (names the field and what was expected)."""


class DataUnavailableError(NnjaxError):
    """A data set is not available offline; the message says how to get it."""


class ShapeError(NnjaxError, ValueError):
    """An input array does not have the shape a model or step expects."""


class TrainingDivergedError(NnjaxError):
    """The loss became NaN or infinite; the message names the first bad step."""


class WorkdirError(NnjaxError):
    """The run directory cannot be used as asked: not writable, in use by another run, or holding a different run."""


class FileFormatError(NnjaxError, ValueError):
    """A file given by the user is not in the format expected (names the file and the format)."""


class WeightsError(NnjaxError, ValueError):
    """Weights do not fit the model they are loaded into (names the first missing, extra or mis-shaped entry)."""
