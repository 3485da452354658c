"""The exceptions likeflow raises for bad input.

Every problem a user can cause (a missing file, a damaged dataset, NaNs, a bad option) is a
:class:`LikeflowError` with a one-line message naming the file, the dataset and what is wrong. The
CLI prints that line and exits with code 2; anything else is a bug and exits with code 1.
"""

from __future__ import annotations


class LikeflowError(Exception):
    """Bad input that the user can fix; the message is the whole explanation."""

    exit_code = 2


class FileError(LikeflowError):
    """A file (and, where it matters, one of its datasets) that cannot be used: the message is
    ``path[: dataset 'name']: problem``."""

    def __init__(self, path, problem: str, dataset: str | None = None):
        where = f"{path}" if dataset is None else f"{path}: dataset '{dataset}'"
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.dataset = dataset
        self.problem = problem


class SampleFileError(FileError):
    """A sample file cannot be read or fails an input check."""


class SurrogateFileError(FileError):
    """A surrogate file is missing, foreign, damaged or of an unsupported version."""


class FileIOError(FileError):
    """A file cannot be read or written (missing folder, permissions, full disk, lock)."""


class ReportError(FileIOError):
    """A validation report that could not be written (a full disk, a folder gone read-only).

    ``surrogate`` is the validated surrogate when the report belonged to a fit: it is saved
    before the report is written, so the message says where it is.
    """

    def __init__(self, path, problem: str, surrogate=None):
        super().__init__(path, problem)
        self.surrogate = surrogate
