"""The one error type the CLI turns into a one-line message and an exit code."""

from __future__ import annotations


class PagerefError(Exception):
    """A failure the user can act on: the message says the cause and what to do."""

    exit_code = 2


class TraceError(PagerefError):
    """A trace file that cannot be read: names the file and the line or row."""

    def __init__(self, path: object, message: str, where: str | None = None) -> None:
        location = f"{path}:{where}" if where else str(path)
        super().__init__(f"{location}: {message}")
        self.path = path
        self.where = where
