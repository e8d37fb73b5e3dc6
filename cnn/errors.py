"""Typed errors for everything a user can get wrong.

Every failure a user can cause (a bad file, URL, model file or argument)
becomes one of these, with a plain message that the UI and the CLI show
as is: never a traceback.
"""


class UserError(ValueError):
    """Base class: `str(error)` is a plain message fit to show a user."""


class DataError(UserError):
    """The CIFAR-10 data is missing, incomplete or corrupt."""


class ModelFileError(UserError):
    """A model file is missing, outside `models/`, tampered with or unreadable."""


class ImageError(UserError):
    """Bytes that are not a supported, safe image."""


class FetchError(UserError):
    """A URL that may not be fetched, or whose download failed."""


class TrainingError(UserError):
    """A training run that cannot start, resume or finish."""
