"""Errors of the ``skyport`` command that mean bad input (exit code 2). Pure and light."""

from __future__ import annotations


class UsageError(ValueError):
    """Bad input on the command line or in a file it names (exit code 2)."""


class DirectiveError(UsageError):
    """A directive or option is unknown or malformed; ``where`` names the line."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message
