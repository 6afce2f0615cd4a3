"""The version of edgecls (one place: pyproject.toml reads it, so do the runtime and the device's reports)."""

__version__ = "0.2.0"
