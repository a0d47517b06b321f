"""Errors for bad input. Each names the file (and manifest line) it came from, so a researcher can fix
the data without a debugger."""

from __future__ import annotations


class LalmInputError(ValueError):
    """Base class of every 'your input is wrong' error raised by lalm."""


class ManifestError(LalmInputError):
    """Manifest lines that cannot be used: bad JSON, a missing field, an unknown task, a missing file.

    `line` is the first bad line (0: the file as a whole); `lines` the (line, message) pairs listed in
    the message and `bad_lines` how many bad lines the file has in all (see `of_lines`).
    """

    MAX_LISTED = 20  # a file of the wrong format has a bad line per example: the first ones say why

    def __init__(self, path: str, line: int, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.lines = [(line, message)]
        self.bad_lines = 1
        super().__init__(f"{path}:{line}: {message}")

    @classmethod
    def of_lines(cls, path: str, lines: list[tuple[int, str]], bad_lines: int) -> ManifestError:
        """One error for every bad line of a file, so that all are fixed in one go: the first
        MAX_LISTED of `lines` as `file:line: message`, then how many more there are."""
        error = cls(path, *lines[0])
        if bad_lines > 1:
            error.lines = lines[: cls.MAX_LISTED]
            error.bad_lines = bad_lines
            listed = [f"  {path}:{line}: {message}" for line, message in error.lines]
            if bad_lines > len(error.lines):
                listed.append(f"  ... and {bad_lines - len(error.lines)} more bad lines")
            error.args = (f"{path}: {bad_lines} bad lines\n" + "\n".join(listed),)
        return error


class ConfigError(LalmInputError):
    """A config (or a config that does not fit its data) that cannot work: every problem found, one a
    line under `title`, so that all of them are fixed before the next launch."""

    def __init__(self, title: str, problems: list[str]) -> None:
        self.title = title
        self.problems = list(problems)
        super().__init__(f"{title}:\n  - " + "\n  - ".join(self.problems))


class AudioLoadError(LalmInputError):
    """An audio file that cannot be used. `reason` is the snake_case drop reason the data pipeline counts
    it under (missing_audio, empty_audio, unreadable_audio, truncated_audio, nonfinite_audio,
    duration_mismatch) and `detail` the human-readable why, without the file and manifest line."""

    def __init__(
        self, audio_path: str, message: str, source: str | None = None, reason: str = "unreadable_audio"
    ) -> None:
        self.audio_path = str(audio_path)
        self.source = source
        self.reason = reason
        self.detail = message
        where = f"{source}: " if source else ""
        super().__init__(f"{where}audio file {audio_path}: {message}")
