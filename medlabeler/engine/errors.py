"""Errors the engine raises for bad input: each names the file and the problem."""

from __future__ import annotations

from pathlib import Path


class MedlabelerError(Exception):
    """Base class of every error meant to be shown to the user as it is."""


class InputError(MedlabelerError):
    """A file could not be used; the message names the file and what is wrong with it."""

    #: Files the problem covers: a skipped DICOM series counts all of its files.
    files: int = 1

    def __init__(self, path: str | Path | None, problem: str):
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class ImageReadError(InputError):
    """An image, volume or series could not be read."""


class MissingDecoderError(ImageReadError):
    """Compressed pixel data whose decoder package is not installed."""


class ProjectError(MedlabelerError):
    """The project folder is missing, damaged, or used by another app."""


class ProjectReadOnlyError(ProjectError):
    """The project cannot be written (a read-only disk or share, no permission, a full disk): it can
    be opened read-only."""


class ProjectLockedError(ProjectError):
    """Another app holds the project open for writing. `holder`: who, as far as the lock file
    says ("pid 123 on host", or "")."""

    def __init__(self, message: str, holder: str = ""):
        super().__init__(message)
        self.holder = holder


class TrainingError(MedlabelerError):
    """A training run stopped (NaN loss, out of memory, ...); the previous model stays active."""


class InitMismatchError(TrainingError):
    """The model a run was to start from does not fit its network (architecture, channels)."""


def error_text(exc: BaseException) -> str:
    """An error as a notification or a status line of a few lines shows it: the file's name, the
    problem, then the folder. A notification shows its first line only, and "/tmp/projects/em…"
    had hidden both the file and what was wrong with it."""
    if isinstance(exc, InputError) and exc.path:
        path = Path(exc.path)
        return f"{path.name}: {exc.problem} (in {path.parent})"
    return str(exc)


def unexpected_error(path: str | Path, exc: BaseException) -> ImageReadError:
    """An ImageReadError for a failure no reader foresaw (a library's own exception type)."""
    if isinstance(exc, MemoryError):
        return ImageReadError(path, "could not be read: it needs more memory than is available (MemoryError)")
    return ImageReadError(path, f"could not be read ({type(exc).__name__}: {exc})")
