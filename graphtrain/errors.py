"""Exceptions that carry data and survive pickling across Ray processes."""

from __future__ import annotations


class GraphtrainError(Exception):
    """Base class for graphtrain's own errors."""


class ConfigError(GraphtrainError, ValueError):
    """A config field holds a value graphtrain cannot use.

    The message names the field, shows the value and says how to fix it.
    """

    def __init__(self, field: str, value: object, fix: str):
        self.field = field
        self.value = value
        self.fix = fix
        super().__init__(f"{field}={value!r}: {fix}")

    def __reduce__(self):
        return (type(self), (self.field, self.value, self.fix))


class DataContractError(GraphtrainError, ValueError):
    """Input logs break the data contract (DESIGN.md) before any work starts."""


class ArtifactError(GraphtrainError, FileNotFoundError):
    """An artifact is missing or was never committed (no marker file)."""


class GraphServerError(GraphtrainError, RuntimeError):
    """A DGL graph server could not start or died; the message holds its log tail."""


class ServeError(GraphtrainError, RuntimeError):
    """The Serve app is not where an operation expects it (e.g. reload with none running)."""
