"""What is wrong with a topology, at which line of its file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from stream_orch.errors import UserError

__all__ = ["Problem", "Severity", "SpecError", "YAMLRefused"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a topology, at a line of its file."""

    file: str
    line: int
    message: str
    hint: str = ""
    severity: Severity = "error"

    def __str__(self) -> str:
        level = "warning: " if self.severity == "warning" else ""
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{self.file}:{self.line}: {level}{self.message}{hint}"


class SpecError(UserError):
    """A topology that cannot be loaded; ``problems`` lists each one with its line."""

    exit_code = 1

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class YAMLRefused(UserError):
    """A file refused before it is read as a topology: too large, nested too deep, aliases that
    expand too far, or a tag outside the YAML core schema. Like a file that cannot be read, it is
    one line on stderr (``file:line: message``) and exit code 2."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file, self.line = file, line
        super().__init__(f"{file}:{line}: {message}" if line is not None else f"{file}: {message}")
