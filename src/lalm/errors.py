"""Errors for bad input. Each names the file (and manifest line) it came from, so a researcher can fix
the data without a debugger."""

from __future__ import annotations


class LalmInputError(ValueError):
    """Base class of every 'your input is wrong' error raised by lalm."""


class ManifestError(LalmInputError):
    """A manifest line that cannot be used: bad JSON, a missing field, an unknown task, a missing file."""

    def __init__(self, path: str, line: int, message: str) -> None:
        self.path = str(path)
        self.line = line
        super().__init__(f"{path}:{line}: {message}")


class AudioLoadError(LalmInputError):
    """An audio file that is missing, unreadable, empty, or shorter than the requested offset."""

    def __init__(self, audio_path: str, message: str, source: str | None = None) -> None:
        self.audio_path = str(audio_path)
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}audio file {audio_path}: {message}")
