"""Errors a user can act on. The command line prints them as one line, never a traceback."""

from __future__ import annotations


class EdgeclsError(Exception):
    """Base class: the message says what happened, to which file, and what to do next."""


class ModelError(EdgeclsError):
    """A model file that cannot be read, loaded or run."""


class BundleError(EdgeclsError):
    """A bundle whose files, checksums or format version do not check out."""


class LabelError(EdgeclsError):
    """A label file that is missing, unreadable or does not fit the model."""


class ImageError(EdgeclsError):
    """An image that cannot be decoded."""


class BackendUnavailable(EdgeclsError):
    """A backend (or interpreter package) that cannot start on this machine."""


class MissingExtra(EdgeclsError):
    """An optional dependency is not installed; the message names the extra."""

    def __init__(self, what: str, extra: str, module: str):
        super().__init__(
            f"{what} needs the '{module}' package, which is not installed; "
            f"install it with: pip install 'edgecls[{extra}]'"
        )
        self.extra = extra
        self.module = module
