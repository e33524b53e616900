"""The project's own error types.

Every error a user can cause (a bad file, a bad option) is a :class:`TemtrackError`: the CLI prints
its one-line message and exits with code 2; the GUI shows it in a dialog. Anything else is a bug.
"""
from __future__ import annotations

import os


class TemtrackError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


class MovieReadError(TemtrackError):
    """A movie file that cannot be read; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        # One line whatever the library said: the CLI and the GUI promise a one-line message.
        self.problem = "; ".join(line.strip() for line in str(problem).splitlines() if line.strip())
        super().__init__(f"{self.path}: {self.problem}" if self.path else self.problem)


class ParameterError(TemtrackError, ValueError):
    """An option or recipe value outside what the analysis accepts; says what was expected."""


class AnalysisError(TemtrackError):
    """The data do not support the requested measurement (e.g. no reaction front detected)."""


class Cancelled(TemtrackError):
    """The user cancelled a long computation (Cancel button, Ctrl-C)."""
