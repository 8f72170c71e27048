"""User-facing errors: bad input files, unknown formats, missing models.

The CLI prints these as one line and exits with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class LimaError(Exception):
    """An error caused by the user's input or environment, not by a bug in lima-align."""


class DataError(LimaError):
    """A record or file that cannot be read; the message names the file, line and field."""

    def __init__(self, problem: str, path: str | Path | None = None, line: int | None = None,
                 field: str | None = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        super().__init__(self._render())

    def __reduce__(self):  # a worker process's error reaches the parent with its fields, not re-rendered
        return type(self), (self.problem, self.path, self.line, self.field)

    def _render(self) -> str:
        where = self.path or "<input>"
        if self.line is not None:
            where += f":{self.line}"
        if self.field:
            where += f": field '{self.field}'"
        return f"{where}: {self.problem}"
