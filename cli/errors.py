"""The one error type command modules raise: said to the user in one line, no traceback."""

from __future__ import annotations


class CommandError(Exception):
    """An error to report to the user in one line (no traceback), with an exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
