"""Errors raised for bad data: they name the file, the problem and the fix."""

from __future__ import annotations

from pathlib import Path


class DataError(Exception):
    """A dataset that cannot be used as laid out (missing folders, bad split lists, bad YAML)."""


class BadSampleError(DataError):
    """One image/mask pair that cannot be used.

    Attributes:
        path: the file at fault.
        problem: what is wrong with it, including the fix where there is one.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DownloadError(DataError):
    """An archive could not be fetched or failed its checksum."""
